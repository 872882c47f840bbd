//! The application layer: every Neutron and Keystone use case, with policy, validation,
//! IP address management and quotas, each request in one database transaction.
//!
//! The HTTP layer parses requests into calls on [`App`] and renders what comes back; it never
//! touches storage itself. Authorisation is Neutron's policy as data (`neutrino-policy`),
//! enforced by the generic request flow for every collection. Resources are JSON documents (`serde_json::Map`) holding every
//! attribute; [`App`] strips what a caller may not see when it renders them.

pub mod admission;
pub mod agents;
pub mod barrier;
pub mod consistency;
pub mod context;
pub mod extensions;
pub mod host_credentials;
pub mod identity;
mod neutron;
mod revocation;
mod token;
pub mod topology;

use std::sync::Arc;

use neutrino_policy::Policy;
use neutrino_store::{Store, StoreError, Tx};
use neutrino_types::ApiError;

pub use context::Context;
pub use neutrino_l3::RouterRules;
pub use neutrino_store::CommitObserver;
pub use neutron::{validate_tags, Collection, ListResult, COLLECTIONS, QUOTA_RESOURCES};

/// Server settings the application layer needs.
#[derive(Clone, Debug)]
pub struct Config {
    /// Inclusive VXLAN id range for tenant networks.
    pub vni_range: (u32, u32),
    /// Physical networks that accept `flat`/`vlan` provider networks.
    pub physical_networks: Vec<String>,
    /// MTU of the underlay; VXLAN networks get 50 less.
    pub global_mtu: u32,
    /// Token lifetime in seconds.
    pub token_ttl_secs: i64,
    /// Region name put in the catalog.
    pub region: String,
    /// Fixed public base URL for the catalog (`http://host:port`); `None` = from the request.
    pub public_url: Option<String>,
    /// The first three octets of generated MAC addresses.
    pub base_mac: [u8; 3],
    /// The domain of ports' DNS names (`dns_assignment`; Neutron's `dns_domain`).
    pub dns_domain: String,
    /// Seconds without a heartbeat after which an agent is dead (Neutron's `agent_down_time`).
    pub agent_down_secs: i64,
    /// Whether new routers are highly available unless the request says otherwise
    /// (Neutron's `l3_ha`).
    pub l3_ha: bool,
    /// Whether legacy (non-HA) routers move off dead agents too (Neutron's
    /// `allow_automatic_l3agent_failover`); HA routers always do.
    pub allow_automatic_l3agent_failover: bool,
    /// Who may do what: Neutron's default rules, possibly overridden by `--policy-file`.
    pub policy: Arc<Policy>,
    /// Whether a port turns ACTIVE only once every host that must know about it has applied
    /// it (the realisation barrier, see [`barrier`]); off: as soon as its own host plugs it.
    pub active_barrier: bool,
    /// New watches of the change feed admitted per second (start-up storms, see
    /// [`admission`]); the others are told to come back later.
    pub watch_admission_rate: u32,
    /// Default quota limits replacing the built-in ones (resource → limit, -1 unlimited;
    /// see [`QUOTA_RESOURCES`]).
    pub default_quotas: std::collections::BTreeMap<String, i64>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            vni_range: (1, 16_000_000),
            physical_networks: vec!["physnet1".to_string()],
            global_mtu: 1500,
            token_ttl_secs: 3600,
            region: "RegionOne".to_string(),
            public_url: None,
            base_mac: [0xfa, 0x16, 0x3e],
            dns_domain: "openstacklocal".to_string(),
            agent_down_secs: agents::AGENT_DOWN_SECS,
            l3_ha: false,
            allow_automatic_l3agent_failover: false,
            policy: default_policy(),
            active_barrier: true,
            watch_admission_rate: 100,
            default_quotas: Default::default(),
        }
    }
}

/// Neutron's default policy, compiled once per process.
pub fn default_policy() -> Arc<Policy> {
    static DEFAULTS: std::sync::OnceLock<Arc<Policy>> = std::sync::OnceLock::new();
    DEFAULTS
        .get_or_init(|| Arc::new(Policy::defaults()))
        .clone()
}

/// The application: storage plus settings. Cheap to clone.
#[derive(Clone)]
pub struct App {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    config: Config,
    token_key: Vec<u8>,
    /// The token revocation events, in memory.
    revocations: Arc<revocation::Revocations>,
    /// The agents' snapshot, serialised once per revision.
    snapshot_cache: admission::SnapshotCache,
    /// The change feed's recent pages, shared by the watchers that ask for them.
    feed_pages: admission::FeedPageCache,
    /// The pace at which new watches of the change feed are admitted.
    watch_admission: admission::WatchAdmission,
    /// Registrations of new agents waiting for a scheduling pass, and the last one a pass
    /// covered (see `App::schedule_for_new_agents`).
    schedule_wanted: std::sync::atomic::AtomicU64,
    schedule_done: tokio::sync::Mutex<u64>,
}

/// Maps storage failures to the client's view: details go to the log, not the client.
pub(crate) fn db(err: StoreError) -> ApiError {
    tracing::error!(error = %err, source = ?std::error::Error::source(&err), "storage failure");
    ApiError::unavailable("The database is not available; retry the request.")
}

impl App {
    /// Opens the application on a store: loads (or creates) the token signing key.
    pub async fn new(store: Store, config: Config) -> Result<App, ApiError> {
        let mut tx = store.begin().await.map_err(db)?;
        let fresh = hex(&rand::random::<[u8; 32]>());
        let key = tx
            .setting_or_insert("token_key", &fresh)
            .await
            .map_err(db)?;
        tx.commit().await.map_err(db)?;
        let revocations = revocation::Revocations::start(&store).await.map_err(db)?;
        let watch_admission = admission::WatchAdmission::new(config.watch_admission_rate);
        let app = App {
            inner: Arc::new(Inner {
                store,
                config,
                token_key: key.into_bytes(),
                revocations,
                snapshot_cache: admission::SnapshotCache::default(),
                feed_pages: admission::FeedPageCache::default(),
                schedule_wanted: std::sync::atomic::AtomicU64::new(0),
                schedule_done: tokio::sync::Mutex::new(0),
                watch_admission,
            }),
        };
        app.ensure_rule_templates().await?;
        app.ensure_default_segment_ranges().await?;
        Ok(app)
    }

    /// The settings in force.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    pub(crate) async fn write(&self) -> Result<Tx, ApiError> {
        self.inner.store.begin().await.map_err(db)
    }

    pub(crate) async fn read(&self) -> Result<Tx, ApiError> {
        self.inner.store.read().await.map_err(db)
    }
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Current UTC time in Neutron's timestamp format (`2016-10-10T14:35:47Z`).
pub(crate) fn now() -> String {
    chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

pub(crate) fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}
