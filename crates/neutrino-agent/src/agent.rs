//! The agent's main loop: report in, snapshot, follow the feed, reconcile.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use neutrino_dataplane::cluster::text;
use neutrino_dataplane::desired::{Desired, PortOutcome};
use neutrino_dataplane::observe::{observe, Unread};
use neutrino_dataplane::security::firewall_model;
use neutrino_dataplane::{desired, plan, Cluster, HostConfig, HostState, Target};
use serde_json::{json, Value};
use tokio::sync::mpsc;

use crate::client::{ServerClient, WatchEvent};
use crate::kernel::Kernel;
use crate::AgentError;

/// Settings of one agent.
#[derive(Clone, Debug)]
pub struct AgentConfig {
    /// Host identity and dataplane settings.
    pub host: HostConfig,
    /// Heartbeat interval.
    pub report_every: Duration,
    /// Full reconcile interval even without changes (repairs drift in the kernel).
    pub resync_every: Duration,
    /// Where to write a small JSON status after every reconcile (for operators and tests).
    pub status_file: Option<PathBuf>,
    /// Directory for the agent's own files (DHCP servers' and radvd's configuration, leases,
    /// pid files).
    pub state_dir: PathBuf,
    /// Pause between the switch of a live chain change and the removal of the old paths
    /// (see `neutrino_sfc::transition`).
    pub sfc_grace: Duration,
    /// Longest wait, before a live chain change switches, for the other hosts of the chain
    /// to acknowledge its revision (they have the new paths).
    pub sfc_switch_wait: Duration,
    /// Where the agent publishes its metrics (served by `--metrics-listen`).
    pub metrics: crate::metrics::AgentMetrics,
    /// This host can speak BGP: reported as `configurations.bgp`, so the server lists a
    /// "BGP dynamic routing agent" for it and schedules BGP speakers there; the agent runs
    /// `bird` for the speakers bound to it.
    pub bgp: bool,
    /// The availability zone this host is in (Neutron's `availability_zone` of its agents).
    pub availability_zone: String,
    /// BGP router id of the speakers (default: the tunnel address, when it is IPv4).
    pub bgp_router_id: Option<std::net::Ipv4Addr>,
    /// The namespace the dataplane (and `bird`) lives in (`--dataplane-netns`).
    pub dataplane_netns: Option<String>,
    /// Hardware VTEPs this agent programs (`--vtep NAME=REMOTE`): gateway device name and
    /// OVSDB remote of each physical switch.
    pub vteps: Vec<(String, String)>,
    /// How often each hardware VTEP's tables are read whole again (`--vtep-resync-interval`):
    /// between, the agent follows them through its OVSDB `monitor`.
    pub vtep_resync_every: Duration,
    /// The TLS configuration of the `ssl:` VTEP remotes (`--vtep-ca-cert`, `--vtep-cert`,
    /// `--vtep-key`; see [`crate::vtep_tls`]).
    pub vtep_tls: Option<Arc<rustls::ClientConfig>>,
    /// Encrypt host-to-host VXLAN through a userspace WireGuard device (`--encrypt-overlay`,
    /// see [`crate::overlay`]).
    pub encrypt_overlay: bool,
    /// The WireGuard UDP port (`--overlay-port`).
    pub overlay_port: u16,
    /// Make a new overlay key pair at start (`--rotate-overlay-key`).
    pub rotate_overlay_key: bool,
    /// On a gateway host: exchange MACs with the remote gateways of its borders
    /// (`--l2gw-exchange-macs`, see [`crate::mac_exchange`]).
    pub l2gw_exchange_macs: bool,
}

/// Counters the status file shows.
#[derive(Default)]
struct Stats {
    reconciles: u64,
    /// Reconciles that read the whole host (the others read only what changed).
    full_reconciles: u64,
    ops_total: u64,
    last_ops: usize,
    errors_total: u64,
    firewall_ops: u64,
    dhcp_ops: u64,
    ra_ops: u64,
    connections_cut: u64,
    sfc_ops: u64,
    bgp_ops: u64,
    /// Snapshots loaded: one at start, then one per revision the server no longer had.
    snapshots: u64,
    /// Watch streams opened: a broken stream resumes from the agent's revision.
    watch_streams: u64,
}

struct Agent {
    cfg: AgentConfig,
    client: Arc<ServerClient>,
    kernel: Arc<dyn Kernel>,
    stats: Stats,
    /// The security-group input last applied (connections it allowed may need cutting).
    firewall: Option<neutrino_firewall::FirewallModel>,
    /// The security-group tables as the last listing found them or the last plan, applied
    /// without an error, made them: a targeted reconcile plans against this.
    firewall_tables: Option<neutrino_firewall::ObservedTables>,
    /// No functions and no steering table: reconciles skip steering until a pair appears.
    sfc_idle: bool,
    /// The steering table last applied (the first step of a change keeps its entries), and
    /// what the next change is planned against while `sfc_checked` vouches for it.
    sfc_applied: Option<neutrino_sfc::Table>,
    /// The last full listing of the kernel's table and its handle since.
    sfc_checked: Option<Checked>,
    /// The steering ports in place (kept while their network's bridge is here).
    sfc_steering_ports: BTreeMap<String, neutrino_sfc::SteeringPort>,
    /// The revision the status file shows.
    status_revision: i64,
    /// Ports bound here by the status the last reconcile found.
    port_statuses: BTreeMap<&'static str, i64>,
    /// The container namespaces of the last reconcile: (mount name, runtime's path), watched
    /// so that a container removed without a DEL is cleaned up within seconds.
    containers: Vec<(String, String)>,
    /// Trunk subports whose VLAN device the kernel refused: not tried again until their
    /// wiring (tap, VLAN id) changes or the agent restarts.
    refused_subports: crate::trunk_report::Refused,
    /// The last full reconcile applied everything (firewall, plan, steering).
    healthy: bool,
    /// Nothing is served as a Local IP here, and the kernel was found or made so.
    local_ips_idle: bool,
    /// The QoS model the last reconcile applied without an error.
    qos_applied: Option<neutrino_dataplane::qos::QosState>,
    /// The revision last acknowledged to the server, and when.
    acked: (i64, std::time::Instant),
    /// The latest steering report (every pair, every chain), for the status file.
    sfc_report: Value,
    /// The chain counters the server last accepted, and when (unchanged ones are not sent
    /// again before [`COUNTERS_REFRESH`]).
    sfc_chains_sent: (Value, std::time::Instant),
    /// What the counters of each router namespace's metering table count (the last
    /// reconcile's desired state).
    meters: BTreeMap<String, BTreeMap<String, neutrino_dataplane::meter::Counted>>,
    /// The metering report the server last accepted, and when.
    meter_sent: (Value, std::time::Instant),
    /// The enabled security-group logs of each port plugged here, for the log reader.
    sg_log_covers: crate::sg_log::Covers,
    /// The table last applied steered chains that span hosts.
    sfc_spanned: bool,
    /// The bridge FDB of the last observation (a gateway host reports what it learned).
    fdb: Value,
    /// What the last observation found, and the desired state the kernel was brought to
    /// by the last reconcile that applied everything: a targeted reconcile reads only the
    /// namespaces whose desired state changed since and takes the others from here.
    believed: Option<(HostState, HostState)>,
    /// The learned MACs the server last accepted from this gateway host.
    l2gw_sent: Option<Value>,
    /// The MAC exchange with other clouds' gateways, when enabled on a gateway host.
    mac_exchange: Option<crate::mac_exchange::MacExchange>,
    /// Told when what the exchange learned changes.
    exchange_rx: Option<tokio::sync::mpsc::UnboundedReceiver<()>>,
    /// The MACs the exchange taught, per network (reported with the gateway's learned MACs).
    exchange_learned: BTreeMap<String, BTreeSet<String>>,
    /// Health prober of the functions plugged here.
    prober: crate::prober::Prober,
    /// Its verdicts as they change (taken by the watch loop while it runs).
    health_rx: Option<tokio::sync::mpsc::UnboundedReceiver<Vec<crate::prober::Health>>>,
    /// The latest verdict per pair: healthy, detail.
    health: std::collections::BTreeMap<String, (bool, String)>,
    /// The last steering model, its compilation and the links then: the counters are
    /// reported from it between reconciles.
    sfc_last: Option<(
        neutrino_sfc::SfcModel,
        neutrino_sfc::Compiled,
        std::collections::BTreeMap<String, crate::kernel::LinkInfo>,
    )>,
    /// The state of each BGP session when last looked at (changes are logged).
    bgp_sessions: BTreeMap<String, String>,
    /// Whether `bird` was looked at since the agent started (the first look adopts one).
    bgp_looked: bool,
    /// What the heartbeats report in the BGP agent entry's `configurations` (counts and
    /// each peer's session state; `null` until the first BGP pass).
    bgp_status: tokio::sync::watch::Sender<Value>,
    /// The hardware VTEPs this agent programs.
    vteps: Vec<crate::vtep::Vtep>,
    /// The learned MACs the server last accepted, per VTEP.
    vtep_sent: BTreeMap<String, Value>,
    /// What the heartbeats report as `configurations.vteps`: each switch's tunnel IP.
    vtep_status: tokio::sync::watch::Sender<Value>,
    /// The encrypted overlay (with `--encrypt-overlay`); `None` while a reconcile of it runs
    /// on a blocking thread.
    overlay: Option<crate::overlay::Overlay>,
}

/// Runs the agent until `stop` resolves.
pub async fn run(
    cfg: AgentConfig,
    client: ServerClient,
    kernel: Arc<dyn Kernel>,
    stop: impl std::future::Future<Output = ()>,
) -> Result<(), AgentError> {
    let client = Arc::new(client);
    let overlay_keys = cfg.encrypt_overlay.then(|| {
        if cfg.rotate_overlay_key {
            crate::overlay::rotate_keys(&cfg.state_dir)
        } else {
            crate::overlay::load_or_create_keys(&cfg.state_dir)
        }
        .map_err(|e| {
            tracing::error!(error = %e, "no overlay key: VXLAN to the other hosts is blackholed");
            e.to_string()
        })
    });
    let public_key = overlay_keys
        .as_ref()
        .and_then(|k| k.as_ref().ok())
        .map(|k| k.public.clone());
    let overlay = overlay_keys.map(|keys| {
        crate::overlay::Overlay::new(
            cfg.dataplane_netns.clone(),
            &cfg.state_dir,
            &format!(
                "{}/{}/{}",
                cfg.host.host,
                cfg.host.netns_prefix,
                cfg.dataplane_netns.as_deref().unwrap_or_default()
            ),
            keys,
            cfg.overlay_port,
            cfg.host.tunnel_ip,
            cfg.host.vxlan_port,
        )
    });
    let (bgp_status, bgp_status_rx) = tokio::sync::watch::channel(Value::Null);
    let (vtep_status, vtep_status_rx) = tokio::sync::watch::channel(Value::Null);
    let heartbeat = tokio::spawn(heartbeats(
        cfg.clone(),
        public_key,
        client.clone(),
        bgp_status_rx,
        vtep_status_rx,
    ));
    let vteps = cfg
        .vteps
        .iter()
        .map(|(name, remote)| {
            crate::vtep::Vtep::new(name, remote)
                .resync_every(cfg.vtep_resync_every)
                .tls(cfg.vtep_tls.clone())
        })
        .collect();
    let (prober, health_rx) = crate::prober::Prober::start(kernel.clone(), probe_netns(&cfg));
    let sg_log_covers = crate::sg_log::Covers::default();
    if let Err(e) = std::fs::create_dir_all(&cfg.state_dir) {
        tracing::warn!(error = %e, "cannot create the state directory");
    }
    crate::sg_log::start(
        cfg.dataplane_netns.clone(),
        cfg.state_dir.join(crate::sg_log::FILE),
        sg_log_covers.clone(),
    );
    let (mac_exchange, exchange_rx) = match &cfg.host.l2gw_device {
        Some(_) if cfg.l2gw_exchange_macs => {
            let (x, rx) = crate::mac_exchange::MacExchange::start(
                cfg.dataplane_netns.clone(),
                cfg.host.tunnel_ip,
            );
            (Some(x), Some(rx))
        }
        _ => (None, None),
    };
    let mut agent = Agent {
        cfg,
        client,
        kernel,
        stats: Stats::default(),
        firewall: None,
        firewall_tables: None,
        qos_applied: None,
        sfc_idle: false,
        sfc_applied: None,
        sfc_checked: None,
        sfc_steering_ports: BTreeMap::new(),
        sfc_spanned: false,
        meters: BTreeMap::new(),
        sg_log_covers: sg_log_covers.clone(),
        meter_sent: (Value::Null, std::time::Instant::now()),
        fdb: Value::Null,
        believed: None,
        l2gw_sent: None,
        mac_exchange,
        exchange_rx,
        exchange_learned: BTreeMap::new(),
        status_revision: 0,
        port_statuses: BTreeMap::new(),
        containers: Vec::new(),
        refused_subports: BTreeMap::new(),
        healthy: false,
        local_ips_idle: false,
        acked: (-1, std::time::Instant::now()),
        sfc_report: Value::Null,
        sfc_chains_sent: (Value::Null, std::time::Instant::now()),
        prober,
        health_rx: Some(health_rx),
        health: Default::default(),
        sfc_last: None,
        bgp_sessions: BTreeMap::new(),
        bgp_looked: false,
        bgp_status,
        vteps,
        vtep_sent: BTreeMap::new(),
        vtep_status,
        overlay,
    };
    if !agent.cfg.encrypt_overlay {
        let (netns, dir) = (
            agent.cfg.dataplane_netns.clone(),
            agent.cfg.state_dir.clone(),
        );
        let _ = tokio::task::spawn_blocking(move || {
            crate::overlay::remove_leftovers(netns.as_deref(), &dir)
        })
        .await;
    }
    if !agent.cfg.bgp {
        // A `bird` an earlier run with --bgp left behind (bird outlives the agent).
        let bird = agent.bird();
        if bird.dir.exists() {
            tracing::info!("not a BGP agent: stopping the bird an earlier run left");
            let _ = tokio::task::spawn_blocking(move || bird.stop()).await;
        }
    }
    tokio::select! {
        _ = agent.follow() => {}
        _ = stop => tracing::info!("agent stopping"),
    }
    heartbeat.abort();
    // `bird` keeps running: its sessions and announcements survive an agent restart (the
    // next agent adopts it); it stops when no speaker is bound here any more.
    Ok(())
}

/// An unchanged applied revision is acknowledged again after this long (a server that lost
/// it, e.g. a database restored from a backup, learns it again).
const ACK_REFRESH: Duration = Duration::from_secs(60);

/// The first pause before a failed reconcile is tried again; it doubles up to [`RETRY_MAX`].
const RETRY_FIRST: Duration = Duration::from_secs(1);
const RETRY_MAX: Duration = Duration::from_secs(30);

/// How often a BGP agent asks for its speakers besides after feed lines (a binding to an
/// agent is not a resource of the feed).
const BGP_EVERY: Duration = Duration::from_secs(5);

/// How often the runtimes' namespaces of the containers here are checked (a `stat` each).
const CONTAINERS_EVERY: Duration = Duration::from_secs(2);

/// How often chain counters go to the server between reconciles (when they moved).
const COUNTERS_EVERY: Duration = Duration::from_secs(2);

/// Counters that did not move are sent again after this long.
const COUNTERS_REFRESH: Duration = Duration::from_secs(60);

/// The namespace the health prober sends from.
fn probe_netns(cfg: &AgentConfig) -> String {
    format!("{}sfc-probe", cfg.host.netns_prefix)
}

pub(crate) fn agent_doc(cfg: &AgentConfig, started_at: &str) -> Value {
    let mut doc = json!({
        "host": cfg.host.host,
        "agent_type": "Neutrino agent",
        "binary": "neutrino-agent",
        "started_at": started_at,
        "availability_zone": cfg.availability_zone,
        "configurations": {
            "tunnel_ip": cfg.host.tunnel_ip.to_string(),
            "tunnel_types": ["vxlan"],
            "vxlan_port": cfg.host.vxlan_port,
            "netns_prefix": cfg.host.netns_prefix,
            // As the Linux bridge agent: the server binds flat/VLAN ports only where mapped.
            "interface_mappings": cfg.host.interface_mappings,
        },
    });
    if let Some(device) = &cfg.host.l2gw_device {
        // The L2 gateway device this host is: the other hosts flood to it.
        doc["configurations"]["l2gw_device"] = json!(device);
    }
    if cfg.bgp {
        doc["configurations"]["bgp"] = json!(true);
    }
    doc
}

/// What the prober watches: every pair with a port here, and its probe if it has one.
fn watched(
    model: &neutrino_sfc::SfcModel,
    compiled: &neutrino_sfc::Compiled,
) -> Vec<crate::prober::Watched> {
    model
        .functions
        .iter()
        .map(|p| crate::prober::Watched {
            pair: p.id.clone(),
            taps: [("ingress", &p.ingress), ("egress", &p.egress)]
                .into_iter()
                .filter_map(|(role, port)| {
                    Some((role, port.id.clone(), port.local_tap()?.to_string()))
                })
                .collect(),
            probe: compiled.probes.iter().find(|pr| pr.pair == p.id).cloned(),
        })
        .collect()
}

/// The next verdicts of the prober (never, without one).
async fn next_verdicts(
    rx: &mut Option<tokio::sync::mpsc::UnboundedReceiver<Vec<crate::prober::Health>>>,
) -> Option<Vec<crate::prober::Health>> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// The next change of what the MAC exchange learned (never, without one).
async fn next_learned(rx: &mut Option<tokio::sync::mpsc::UnboundedReceiver<()>>) -> Option<()> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// Reports the agent every `report_every`, and at once when the BGP status changes (the
/// server shows it in the BGP dynamic routing agent entry's `configurations`).
async fn heartbeats(
    cfg: AgentConfig,
    overlay_key: Option<String>,
    client: Arc<ServerClient>,
    mut bgp_status: tokio::sync::watch::Receiver<Value>,
    mut vtep_status: tokio::sync::watch::Receiver<Value>,
) {
    let started = now();
    let mut base = agent_doc(&cfg, &started);
    if let Some(key) = overlay_key {
        // The other agents make this host a peer of their encrypted overlay.
        base["configurations"]["wireguard"] = json!({"public_key": key, "port": cfg.overlay_port});
    }
    let (mut open, mut vtep_open) = (true, true);
    loop {
        let mut doc = base.clone();
        let status = bgp_status.borrow_and_update().clone();
        if !status.is_null() {
            doc["configurations"]["bgp_dragent"] = status;
        }
        let vteps = vtep_status.borrow_and_update().clone();
        if !vteps.is_null() {
            // The hosts flood to these switches and reach what they learnt through them.
            doc["configurations"]["vteps"] = vteps;
        }
        if let Err(e) = client.report(&doc).await {
            tracing::warn!(error = %e, "heartbeat failed");
        }
        tokio::select! {
            () = tokio::time::sleep(cfg.report_every) => {}
            changed = bgp_status.changed(), if open => open = changed.is_ok(),
            changed = vtep_status.changed(), if vtep_open => vtep_open = changed.is_ok(),
        }
    }
}

/// Addresses to announce once a plan is applied: `(namespace, interface, address)` for every
/// address the plan adds inside a router namespace, and every desired address of a router
/// interface whose link it (re)sets (a router that moved here keeps its addresses; one that
/// became centralized keeps them under a new MAC). Neighbours then learn the new path at once
/// instead of waiting for their stale entries to fail.
fn router_addresses(
    prefix: &str,
    want: &neutrino_dataplane::HostState,
    ops: &[neutrino_dataplane::Op],
) -> Vec<(String, String, std::net::IpAddr)> {
    use neutrino_dataplane::Op;
    let mut out: Vec<(String, String, std::net::IpAddr)> = Vec::new();
    for op in ops {
        match op {
            Op::AddAddr { netns, dev, addr }
                if neutrino_dataplane::names::is_router_netns(prefix, netns) =>
            {
                out.push((netns.clone(), dev.clone(), addr.addr()));
            }
            Op::SetNsLink { netns, name, .. }
                if neutrino_dataplane::names::is_router_netns(prefix, netns) =>
            {
                let addrs = want.namespaces.get(netns).map(|ns| &ns.addrs);
                for (dev, addr) in addrs.into_iter().flatten() {
                    if dev == name {
                        out.push((netns.clone(), dev.clone(), addr.addr()));
                    }
                }
            }
            _ => {}
        }
    }
    out.sort();
    out.dedup();
    out
}

/// Pauses before each announcement of moved router addresses: at once, then twice more, so a
/// host whose own update lands a moment later (and drops gateway ARP until then) still hears
/// one, as keepalived and Neutron's L3 agent repeat theirs.
const ANNOUNCE_PAUSES: [Duration; 3] = [
    Duration::ZERO,
    Duration::from_secs(1),
    Duration::from_secs(2),
];

/// Announces `addrs` in the background, [`ANNOUNCE_PAUSES`] apart.
fn announce(kernel: Arc<dyn Kernel>, addrs: Vec<(String, String, std::net::IpAddr)>) {
    tracing::info!(addresses = addrs.len(), "announcing router addresses");
    tokio::spawn(async move {
        for (i, pause) in ANNOUNCE_PAUSES.into_iter().enumerate() {
            tokio::time::sleep(pause).await;
            let kernel = kernel.clone();
            let addrs = addrs.clone();
            match tokio::task::spawn_blocking(move || kernel.announce(&addrs)).await {
                // A repeat may find the address gone again (a floating IP moved on): quiet.
                Ok(errors) if i > 0 => {
                    for e in errors {
                        tracing::debug!(error = %e, "repeating a router announcement failed");
                    }
                }
                Ok(errors) => {
                    for e in errors {
                        tracing::warn!(error = %e, "announcing a router address failed");
                    }
                }
                Err(e) => tracing::warn!(error = %e, "announcing router addresses panicked"),
            }
        }
    });
}

fn now() -> String {
    chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Kinds only the steering step reads.
const STEERING_KINDS: &[&str] = &[
    "port_pair",
    "port_pair_group",
    "port_chain",
    "flow_classifier",
    "service_graph",
];

/// A feed page changes chain resources only (see [`STEERING_KINDS`]).
fn steering_only(page: &Value) -> bool {
    page["changes"].as_array().is_some_and(|changes| {
        changes.iter().all(|c| {
            c["kind"]
                .as_str()
                .is_some_and(|kind| STEERING_KINDS.contains(&kind))
        })
    })
}

/// The server already stores this pair health report (`{"id", "health", "detail"}`), as
/// the mirrored port pair shows: sending it again would change nothing.
fn stored(cluster: &Cluster, report: &Value) -> bool {
    let Some(pair) = report["id"]
        .as_str()
        .and_then(|id| cluster.get("port_pair", id))
    else {
        return false;
    };
    text(pair, "neutrino:health") == report["health"].as_str().unwrap_or_default()
        && text(pair, "neutrino:health_detail") == report["detail"].as_str().unwrap_or_default()
}

/// A full listing of the steering table is trusted this long; then the kernel is listed
/// again (drift made by hand: a rule deleted, a chain flushed).
const SFC_DRIFT_CHECK: Duration = Duration::from_secs(60);

/// When the kernel's steering table was last listed in full, and its handle since.
#[derive(Clone, Copy, Debug)]
struct Checked {
    /// The table's handle (`None`: no table).
    handle: Option<u64>,
    /// The last full listing.
    listed_at: std::time::Instant,
}

/// The kernel's steering table when the table applied last cannot be trusted (`trusted`
/// is `None`, or the table's handle changed: deleted or made again behind the agent's
/// back): `(Some(listing), check)`; else `(None, check)`, the applied table holds.
fn base_table(
    kernel: &dyn Kernel,
    trusted: Option<Checked>,
) -> Result<(Option<neutrino_sfc::Table>, Checked), AgentError> {
    let handle = kernel.sfc_table_handle()?;
    if let Some(c) = trusted.filter(|c| c.handle == handle) {
        return Ok((None, c));
    }
    let listing = list_sfc_table(kernel)?;
    tracing::debug!(chains = listing.chains.len(), "listed the steering table");
    let checked = Checked {
        handle: kernel.sfc_table_handle()?,
        listed_at: std::time::Instant::now(),
    };
    Ok((Some(listing), checked))
}

/// The kernel's steering table, listed and parsed (the whole table: slow when large).
fn list_sfc_table(kernel: &dyn Kernel) -> Result<neutrino_sfc::Table, AgentError> {
    neutrino_sfc::observe(&kernel.observe_sfc()?).map_err(|e| AgentError::Command {
        command: "nft list table netdev neutrino_sfc".into(),
        message: e.to_string(),
    })
}

/// Retries `f` until it succeeds: after the server's `Retry-After` when it is letting a crowd
/// in, else after a pause that grows; both with jitter, so that the hosts of a site that
/// failed together do not come back together.
async fn retry<T, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, AgentError>>,
{
    let mut pause = Duration::from_millis(200);
    loop {
        match f().await {
            Ok(v) => return v,
            Err(e) => {
                let wait = pause_after(&e, pause);
                tracing::warn!(error = %e, "{what} failed; retrying in {wait:?}");
                tokio::time::sleep(wait).await;
                pause = (pause * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// The pause after a server whose agent protocol version this agent does not follow.
const INCOMPATIBLE_PAUSE: Duration = Duration::from_secs(60);

/// How long to wait after `error`: the server's `Retry-After` stretched by up to a half, or
/// `pause` shrunk by up to a half.
fn pause_after(error: &AgentError, pause: Duration) -> Duration {
    match error {
        AgentError::Busy { after } => crate::client::jittered(*after, 1.0, 1.5),
        // Nothing changes until someone upgrades the servers or this agent.
        AgentError::Incompatible { .. } => crate::client::jittered(INCOMPATIBLE_PAUSE, 1.0, 1.5),
        _ => crate::client::jittered(pause, 0.5, 1.0),
    }
}

impl Agent {
    /// Snapshot, then follow the feed; resume from the last revision after a broken stream,
    /// snapshot again only when the server says the revision is gone.
    async fn follow(&mut self) {
        loop {
            let client = self.client.clone();
            let snap = retry("snapshot", || client.snapshot()).await;
            let mut cluster = Cluster::from_snapshot(&snap);
            self.stats.snapshots += 1;
            tracing::info!(revision = cluster.revision, "snapshot loaded");
            self.reconcile(&cluster).await;
            loop {
                match self.watch(&mut cluster).await {
                    Ok(true) => break,
                    Ok(false) => {
                        tracing::info!(revision = cluster.revision, "watch ended; resuming")
                    }
                    Err(e) => {
                        let wait = pause_after(&e, Duration::from_millis(500));
                        tracing::warn!(error = %e, revision = cluster.revision, "watch failed; resuming in {wait:?}");
                        tokio::time::sleep(wait).await;
                    }
                }
            }
            tracing::info!("revision compacted on the server: fetching a new snapshot");
        }
    }

    /// Follows one watch stream. Ok(true): a new snapshot is needed.
    async fn watch(&mut self, cluster: &mut Cluster) -> Result<bool, AgentError> {
        let (events, mut rx) = mpsc::unbounded_channel();
        let client = self.client.clone();
        let since = cluster.revision;
        self.stats.watch_streams += 1;
        let stream = tokio::spawn(async move {
            client
                .watch(since, Duration::from_secs(35), move |ev| {
                    events.send(ev).is_ok()
                })
                .await
        });
        // Batches the pages of one client's burst of calls (a chain's classifier replaced:
        // detach, delete, create, attach) into one reconcile, so steering does not flap.
        let debounce = Duration::from_millis(30);
        // Changes wait to be reconciled; `full`: some concern more than steering.
        let (mut dirty, mut full) = (false, false);
        let mut periodic = tokio::time::interval(self.cfg.resync_every);
        periodic.tick().await;
        let mut health_rx = self.health_rx.take();
        let mut exchange_rx = self.exchange_rx.take();
        let mut counters = tokio::time::interval(COUNTERS_EVERY);
        counters.tick().await;
        let mut bgp_every = tokio::time::interval(BGP_EVERY);
        bgp_every.tick().await;
        let mut containers_every = tokio::time::interval(CONTAINERS_EVERY);
        containers_every.tick().await;
        // A feed line came: the speakers, their peers or their routes may have changed.
        let mut bgp_dirty = false;
        let mut retry = RETRY_FIRST;
        let outcome = loop {
            // A hardware VTEP's backoff ended, or its periodic full read is due.
            let vtep_wake = self.vteps.iter().map(crate::vtep::Vtep::deadline).min();
            tokio::select! {
                _ = counters.tick() => {
                    self.report_counters(cluster).await;
                    self.report_meters().await;
                }
                Some(changed) = next_verdicts(&mut health_rx) => {
                    self.health_changed(cluster, changed).await
                }
                Some(()) = next_learned(&mut exchange_rx) => (dirty, full) = (true, true),
                ev = rx.recv() => match ev {
                    Some(WatchEvent::Page(page)) => {
                        bgp_dirty |= self.cfg.bgp;
                        if cluster.apply_page(&page) {
                            dirty = true;
                            full |= !steering_only(&page);
                        } else if !dirty && self.healthy {
                            // Nothing here changed: the kernel already holds this revision.
                            self.acknowledge(cluster.revision).await;
                            self.write_status(cluster);
                        }
                    }
                    Some(WatchEvent::Resync) => break Ok(true),
                    None => break Ok(false),
                },
                _ = tokio::time::sleep(debounce), if dirty => {
                    if full {
                        self.reconcile_targeted(cluster).await;
                    } else {
                        self.reconcile_steering(cluster).await;
                    }
                    (dirty, full) = (false, false);
                }
                _ = periodic.tick() => self.reconcile(cluster).await,
                _ = tokio::time::sleep(debounce), if bgp_dirty && !dirty => {
                    bgp_dirty = false;
                    self.reconcile_bgp().await;
                }
                _ = bgp_every.tick(), if self.cfg.bgp => self.reconcile_bgp().await,
                _ = tokio::time::sleep_until(
                        vtep_wake.unwrap_or_else(std::time::Instant::now).into()
                    ), if vtep_wake.is_some() => self.sync_vteps(cluster).await,
                // A switch's rows changed (what it learnt): report, and repair, at once.
                (name, change) = next_vtep_change(&mut self.vteps) => match change {
                    crate::vtep::Change::Updated => self.sync_vteps(cluster).await,
                    crate::vtep::Change::Lost(e) => {
                        tracing::warn!(switch = %name, error = %e, "lost the VTEP's connection");
                    }
                },
                _ = containers_every.tick(), if !self.containers.is_empty() => {
                    let gone = self.containers.iter().any(|(name, path)| {
                        let mounted = std::path::Path::new(&format!("/run/netns/{name}")).exists();
                        runtime_namespace_gone(name, path, mounted)
                    });
                    if gone {
                        self.reconcile(cluster).await;
                    }
                }
                // A reconcile that did not apply everything holds the barrier: try again
                // soon, backing off while it keeps failing.
                _ = tokio::time::sleep(retry), if !self.healthy && !dirty => {
                    tracing::info!(pause = ?retry, "reconciling again after a failure");
                    self.reconcile(cluster).await;
                    retry = (retry * 2).min(RETRY_MAX);
                }
            }
            if self.healthy {
                retry = RETRY_FIRST;
            }
        };
        self.health_rx = health_rx;
        self.exchange_rx = exchange_rx;
        if dirty {
            self.reconcile(cluster).await;
        }
        match stream.await {
            Ok(Err(e)) if outcome.as_ref().is_ok_and(|resync| !resync) => Err(e),
            _ => outcome,
        }
    }

    /// Reads the kernel; what `unread` names is taken from `believed` instead.
    async fn observe(
        &mut self,
        believed: Option<&HostState>,
        unread: &Unread,
    ) -> Result<HostState, AgentError> {
        let kernel = self.kernel.clone();
        let prefix = self.cfg.host.netns_prefix.clone();
        let skipping = unread.clone();
        let raw = tokio::task::spawn_blocking(move || kernel.observe(&prefix, &skipping))
            .await
            .map_err(|e| AgentError::Command {
                command: "observe".into(),
                message: e.to_string(),
            })??;
        let mut state = observe(&raw);
        if let Some(believed) = believed {
            neutrino_dataplane::observe::complete_from(&mut state, believed, &raw.listed, unread);
        }
        if !unread.fdb {
            self.fdb = raw.fdb;
        }
        Ok(state)
    }

    /// With the MAC exchange on: announces this cloud's MACs of each border (from `want`) and
    /// adds what the other clouds' gateways announced to `want`.
    fn exchange_macs(&mut self, cluster: &Cluster, want: &mut Desired) {
        let (Some(exchange), Some(device)) = (&self.mac_exchange, &self.cfg.host.l2gw_device)
        else {
            return;
        };
        let behind = neutrino_dataplane::l2gw::learned_macs(cluster, device, &self.fdb);
        exchange.announce(neutrino_dataplane::l2gw::announcements(
            cluster, want, &behind,
        ));
        self.exchange_learned =
            neutrino_dataplane::l2gw::add_learned_remote(want, &exchange.learned());
    }

    /// On a gateway host: sends what the bridges learned behind the gateway interfaces (and
    /// what the MAC exchange taught) when it differs from what the server last accepted.
    async fn report_l2gw_macs(&mut self, cluster: &Cluster) {
        let Some(device) = &self.cfg.host.l2gw_device else {
            return;
        };
        let mut learned = neutrino_dataplane::l2gw::learned_macs(cluster, device, &self.fdb);
        for (network, macs) in &self.exchange_learned {
            learned
                .entry(network.clone())
                .or_default()
                .extend(macs.iter().cloned());
        }
        let doc = json!({"host": self.cfg.host.host, "networks": learned});
        if self.l2gw_sent.as_ref() == Some(&doc) {
            return;
        }
        match self.client.l2gw_macs(&doc).await {
            Ok(_) => self.l2gw_sent = Some(doc),
            Err(e) => tracing::warn!(error = %e, "cannot report the gateway's learned MACs"),
        }
    }

    /// Programs each hardware VTEP for `cluster` (a switch that was unreachable gets
    /// everything again), reports what each learnt locally as the learned MACs of host
    /// `vtep:<NAME>` when that changed, and publishes the switches' tunnel IPs.
    async fn sync_vteps(&mut self, cluster: &Cluster) {
        let mut status = self.vtep_status.borrow().clone();
        for i in 0..self.vteps.len() {
            if !self.vteps[i].due() {
                continue;
            }
            let name = self.vteps[i].name.clone();
            let synced = match self.vteps[i].sync(cluster).await {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(switch = %name, error = %e, "cannot program the VTEP");
                    continue;
                }
            };
            if synced.written > 0 {
                tracing::info!(switch = %name, ops = synced.written, "VTEP programmed");
            }
            if synced.missing_changed && !synced.missing_ports.is_empty() {
                let ports = synced.missing_ports.join(", ");
                tracing::warn!(switch = %name, %ports, "the VTEP lacks ports its gateways name");
            }
            if let Some(ip) = synced.tunnel_ips.first() {
                status[&name] = json!(ip);
            }
            // Networks no longer connected are cleared on the server too.
            let mut learned = synced.learned;
            if let Some(old) = self.vtep_sent.get(&name) {
                for network in old["networks"]
                    .as_object()
                    .into_iter()
                    .flatten()
                    .map(|(n, _)| n)
                {
                    learned.entry(network.clone()).or_default();
                }
            }
            let doc = json!({"host": crate::vtep::report_host(&name), "networks": learned});
            if self.vtep_sent.get(&name) == Some(&doc) {
                continue;
            }
            match self.client.l2gw_macs(&doc).await {
                Ok(_) => {
                    self.vtep_sent.insert(name, doc);
                }
                Err(e) => tracing::warn!(error = %e, "cannot report the VTEP's learned MACs"),
            }
        }
        self.vtep_status.send_if_modified(|old| {
            let changed = *old != status;
            *old = status;
            changed
        });
    }

    /// Brings the kernel to the desired state of `cluster` and reports port status, reading
    /// the whole host (the start, the periodic repair, after a failure).
    async fn reconcile(&mut self, cluster: &Cluster) {
        let started = std::time::Instant::now();
        self.reconcile_kernel(cluster, false).await;
        self.cfg.metrics.reconciled_in(started.elapsed());
    }

    /// [`Agent::reconcile`] for changes from the feed: reads only the namespaces whose
    /// desired state changed (all of them when the last reconcile did not apply everything).
    async fn reconcile_targeted(&mut self, cluster: &Cluster) {
        let started = std::time::Instant::now();
        self.reconcile_kernel(cluster, true).await;
        self.cfg.metrics.reconciled_in(started.elapsed());
    }

    /// [`Agent::reconcile`] without its timing.
    async fn reconcile_kernel(&mut self, cluster: &Cluster, targeted: bool) {
        let mut phases = crate::phases::Phases::start();
        let mut want = desired(cluster, &self.cfg.host);
        self.exchange_macs(cluster, &mut want);
        self.refused_subports
            .retain(|id, _| want.subports.contains_key(id));
        neutrino_dataplane::trunk::drop_failed_subports(&mut want, &self.refused_subports);
        self.update_log_covers(cluster, &want);
        phases.mark("desired");
        // The encrypted overlay before any tunnel: VXLAN never leaves in clear.
        let overlay_ok = self.reconcile_overlay(cluster).await;
        // Filters first: a port is never plugged before its rules exist.
        let mut ok = self.reconcile_firewall(cluster, &want, targeted).await;
        let filtered = ok;
        phases.mark("firewall");
        let believed = self.believed.take().filter(|_| targeted && self.healthy);
        if believed.is_none() {
            self.stats.full_reconciles += 1;
        }
        // A gateway host reports the MACs its bridges learned: it reads them every time.
        let gateway = self.cfg.host.l2gw_device.is_some();
        let unread = match &believed {
            Some((found, brought_to)) => {
                let mut unread = Unread::unchanged(brought_to, &want.state, found);
                unread.fdb &= !gateway;
                unread
            }
            None => Unread::default(),
        };
        let mut have = match &believed {
            // Nothing here changed: the kernel is as the last reconcile left it.
            Some((found, brought_to)) if *brought_to == want.state && !gateway => found.clone(),
            _ => match self.observe(believed.as_ref().map(|b| &b.0), &unread).await {
                Ok(h) => h,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot observe the kernel");
                    self.healthy = false;
                    return;
                }
            },
        };
        let gone = neutrino_dataplane::desired::drop_vanished_containers(
            &mut want.state,
            &|name, path| runtime_namespace_gone(name, path, have.namespaces.contains_key(name)),
        );
        if !gone.is_empty() {
            self.report_containers_gone(&want, &gone).await;
        }
        // The live ones are watched (a gone one's report is retried by later reconciles).
        self.containers = want
            .state
            .namespaces
            .iter()
            .filter_map(|(name, ns)| Some((name.clone(), ns.external.clone()?)))
            .collect();
        phases.mark("observe");
        let ops = plan(&want.state, &have);
        phases.mark("plan");
        self.stats.reconciles += 1;
        self.stats.last_ops = ops.len();
        if !ops.is_empty() {
            self.stats.ops_total += ops.len() as u64;
            tracing::info!(
                revision = cluster.revision,
                ops = ops.len(),
                "applying plan"
            );
            for op in &ops {
                tracing::debug!(%op, "op");
            }
            let moved = router_addresses(&self.cfg.host.netns_prefix, &want.state, &ops);
            // What the plan touched is read again, unread before or not.
            // (A full reconcile reads everything again: its plan is not formatted for this.)
            let mut unread = match &believed {
                Some((found, _)) => {
                    let touched: String = ops.iter().map(|op| format!("{op}\n")).collect();
                    unread.after_plan(&touched, &want.state, found)
                }
                None => Unread::default(),
            };
            unread.fdb &= !ops.iter().any(|op| op.target() == Target::Bridge);
            unread.arp_guard &= !ops.iter().any(|op| op.target() == Target::HostNft);
            let kernel = self.kernel.clone();
            let applied = tokio::task::spawn_blocking(move || kernel.apply(&ops)).await;
            if !moved.is_empty() {
                announce(self.kernel.clone(), moved);
            }
            let mut apply_errors = Vec::new();
            match applied {
                Ok(Ok(errors)) => {
                    ok &= errors.is_empty();
                    apply_errors.clone_from(&errors);
                    self.stats.errors_total += errors.len() as u64;
                    for e in errors {
                        tracing::warn!(error = %e, "kernel refused an operation");
                    }
                }
                Ok(Err(e)) => {
                    ok = false;
                    tracing::warn!(error = %e, "applying the plan failed")
                }
                Err(e) => {
                    ok = false;
                    tracing::warn!(error = %e, "applying the plan panicked")
                }
            }
            phases.mark("apply");
            match self.observe(believed.as_ref().map(|b| &b.0), &unread).await {
                Ok(h) => have = h,
                Err(e) => {
                    ok = false;
                    tracing::warn!(error = %e, "cannot observe the kernel")
                }
            }
            phases.mark("observe again");
            let refused = crate::trunk_report::record_refused(
                &want,
                &have,
                &apply_errors,
                &mut self.refused_subports,
            );
            if !refused.is_empty() {
                for id in &refused {
                    tracing::warn!(subport = %id, reason = %self.refused_subports[id].1, "cannot wire trunk subport");
                }
                neutrino_dataplane::trunk::drop_failed_subports(&mut want, &self.refused_subports);
            }
        }
        ok &= overlay_ok;
        ok &= self.reconcile_qos(cluster, &want, targeted).await;
        phases.mark("qos");
        ok &= self.reconcile_local_ips(cluster, &want).await;
        phases.mark("local ips");
        ok &= self.reconcile_sfc(cluster, &want, false, ok).await;
        phases.mark("sfc");
        self.meters = want.meters.clone();
        self.report_meters().await;
        phases.mark("meters");
        // DHCP and RA daemons are retried on their own and do not hold the barrier.
        self.reconcile_services(&want).await;
        phases.mark("services");
        self.report_ports(cluster, &want, &have, filtered).await;
        self.report_trunks(cluster, &want, &have).await;
        phases.mark("report");
        self.healthy = ok;
        if ok {
            self.believed = Some((have, want.state.clone()));
            self.acknowledge(cluster.revision).await;
        }
        phases.mark("acknowledge");
        self.report_l2gw_macs(cluster).await;
        self.sync_vteps(cluster).await;
        self.reconcile_bgp().await;
        self.write_status(cluster);
        phases.mark("rest");
        tracing::debug!(target: "reconcile_phases", revision = cluster.revision, "{phases}");
    }

    /// Brings the encrypted overlay (device, peers, routes, filter) to the cluster's agents;
    /// false when some of it failed (the status file says what).
    async fn reconcile_overlay(&mut self, cluster: &Cluster) -> bool {
        let Some(mut overlay) = self.overlay.take() else {
            return true;
        };
        let want = neutrino_dataplane::overlay::desired(cluster, &self.cfg.host);
        let joined = tokio::task::spawn_blocking(move || {
            let result = overlay.reconcile(&want);
            (overlay, result)
        })
        .await;
        match joined {
            Ok((overlay, result)) => {
                self.overlay = Some(overlay);
                if let Err(e) = &result {
                    self.stats.errors_total += 1;
                    tracing::error!(error = %e, "encrypted overlay");
                }
                result.is_ok()
            }
            Err(e) => {
                tracing::error!(error = %e, "encrypted overlay reconcile panicked");
                false
            }
        }
    }

    fn bird(&self) -> crate::bird::Bird {
        crate::bird::Bird {
            dir: crate::bird::dir(&self.cfg.state_dir),
            netns: self.cfg.dataplane_netns.clone(),
        }
    }

    /// The BGP speakers bound here: fetched from the server (speakers, peers, the routes the
    /// server computes), rendered as BIRD's configuration, `bird` started, reloaded or
    /// stopped to match; then the sessions' states, logged when they change. Not part of
    /// the barrier (it realises no port).
    async fn reconcile_bgp(&mut self) {
        if !self.cfg.bgp {
            return;
        }
        let doc = match self.client.bgp_speakers(&self.cfg.host.host).await {
            Ok(doc) => doc,
            Err(e) => {
                tracing::warn!(error = %e, "cannot fetch the BGP speakers bound here");
                return;
            }
        };
        let speakers = neutrino_dataplane::bgp::speakers_from_json(&doc);
        let router_id = self.cfg.bgp_router_id.or(match self.cfg.host.tunnel_ip {
            std::net::IpAddr::V4(ip) => Some(ip),
            std::net::IpAddr::V6(_) => None,
        });
        let bird = self.bird();
        let want = match router_id {
            _ if speakers.is_empty() => None,
            Some(id) => Some(neutrino_dataplane::bgp::render(
                id,
                &bird.log_path(),
                &speakers,
            )),
            None => {
                tracing::warn!("BGP speakers need an IPv4 router id: set --bgp-router-id");
                None
            }
        };
        let first = !self.bgp_looked;
        self.bgp_looked = true;
        let result = tokio::task::spawn_blocking(move || {
            let have = bird.observe();
            if first && have.running {
                // An earlier run's bird (it outlives the agent): adopted, reconfigured only
                // when the configuration differs.
                tracing::info!(
                    dir = %bird.dir.display(),
                    same = want.as_deref() == Some(have.conf.as_str()),
                    "adopting the running bird"
                );
            }
            let ops = neutrino_dataplane::bgp::plan_bird(want.as_deref(), &have);
            let errors = bird.apply(&ops);
            let states = if want.is_some() {
                bird.birdc(&["show", "protocols"])
                    .map(|out| neutrino_dataplane::bgp::session_states(&out))
                    .unwrap_or_default()
            } else {
                BTreeMap::new()
            };
            (ops.len(), errors, states)
        })
        .await;
        let Ok((n, errors, states)) = result else {
            tracing::warn!("BGP reconcile panicked");
            return;
        };
        let status = neutrino_dataplane::bgp::dragent_status(&speakers, &states);
        self.bgp_status.send_if_modified(|old| {
            let changed = *old != status;
            *old = status;
            changed
        });
        self.stats.bgp_ops += n as u64;
        self.stats.ops_total += n as u64;
        self.stats.errors_total += errors.len() as u64;
        for e in errors {
            tracing::warn!(error = %e, "bird operation failed");
        }
        for (session, state) in &states {
            if self.bgp_sessions.get(session) != Some(state) {
                tracing::info!(%session, %state, "BGP session");
            }
        }
        for session in self.bgp_sessions.keys() {
            if !states.contains_key(session) {
                tracing::info!(%session, "BGP session removed");
            }
        }
        if self.bgp_sessions != states || n > 0 {
            self.bgp_sessions = states;
            self.rewrite_status();
        }
    }

    /// Tells the server everything up to `revision` is realised here (the barrier: ports
    /// elsewhere turn ACTIVE once this host caught up). Only after a reconcile that applied
    /// everything; a failed acknowledgement is sent again with the next one.
    async fn acknowledge(&mut self, revision: i64) {
        if revision == self.acked.0 && self.acked.1.elapsed() < ACK_REFRESH {
            return;
        }
        match self.client.applied(&self.cfg.host.host, revision).await {
            Ok(_) => {
                tracing::debug!(revision, "acknowledged the applied revision");
                self.acked = (revision, std::time::Instant::now());
            }
            Err(e) => {
                tracing::warn!(error = %e, revision, "acknowledging the applied revision failed")
            }
        }
    }

    /// After changes of chain resources only: the steering step alone. Nothing else on the
    /// host depends on them, so the host is not observed (every namespace, the firewall
    /// tables) before and after.
    async fn reconcile_steering(&mut self, cluster: &Cluster) {
        let want = desired(cluster, &self.cfg.host);
        self.stats.reconciles += 1;
        self.stats.last_ops = 0;
        // The rest of the host is as the last full reconcile left it: acknowledged only if
        // that one applied everything (and a failure here waits for the next full one).
        let ready = self.healthy;
        if !self.reconcile_sfc(cluster, &want, true, ready).await {
            self.healthy = false;
        } else if self.healthy {
            self.acknowledge(cluster.revision).await;
        }
        self.write_status(cluster);
    }

    /// Service function chaining after the plan (the taps it steers between exist by now):
    /// one atomic nft transaction with what differs, then the counters back to the server.
    async fn reconcile_sfc(
        &mut self,
        cluster: &Cluster,
        want: &Desired,
        steering_only: bool,
        ready: bool,
    ) -> bool {
        if cluster.count("port_pair") == 0 && self.sfc_idle {
            return true;
        }
        let kernel = self.kernel.clone();
        let mut links = match tokio::task::spawn_blocking(move || kernel.links()).await {
            Ok(Ok(m)) => m,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "cannot list interfaces");
                return false;
            }
            Err(e) => {
                tracing::warn!(error = %e, "listing interfaces panicked");
                return false;
            }
        };
        let ifindex = crate::kernel::indexes(&links);
        // What the kernel holds: the table applied last, while the table's handle says it is
        // still ours and the last full listing is recent; else the kernel's listing. (Taken:
        // after a failure below, the next reconcile lists the kernel again.)
        let applied = self.sfc_applied.take();
        let trusted = self
            .sfc_checked
            .take()
            .filter(|c| applied.is_some() && c.listed_at.elapsed() < SFC_DRIFT_CHECK);
        let kernel = self.kernel.clone();
        let base = tokio::task::spawn_blocking(move || base_table(kernel.as_ref(), trusted)).await;
        let (listed, checked) = match base {
            Ok(Ok(b)) => b,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "cannot read the steering table");
                return false;
            }
            Err(e) => {
                tracing::warn!(error = %e, "reading the steering table panicked");
                return false;
            }
        };
        let Some(have) = listed.as_ref().or(applied.as_ref()) else {
            return false;
        };
        let mut model = neutrino_dataplane::sfc::sfc_model(cluster, want, &self.cfg.host, &ifindex);
        // Probed pairs keep their probe numbers (and so their probe rules and counters).
        model.probe_numbers = neutrino_sfc::probe::numbers(have);
        let mut compiled = neutrino_sfc::compile(&model);
        // Steering ports and the probe port first: entry through them needs their
        // interface indexes.
        // Both outlive the chains that need them (a chain made again finds them in place):
        // a steering port while its network's bridge is here, the probe port while a
        // function has both ports here.
        let mut ports = compiled.steering.clone();
        for (dev, port) in &self.sfc_steering_ports {
            if want.state.bridges.contains_key(&port.bridge) {
                ports.entry(dev.clone()).or_insert_with(|| port.clone());
            }
        }
        let want_probe = model
            .functions
            .iter()
            .any(|p| p.ingress.local_tap().is_some() && p.egress.local_tap().is_some());
        let have_probe = ifindex.contains_key(neutrino_sfc::probe::DEVICE);
        // After chain changes only, the devices being there is enough; a full reconcile
        // also checks their addresses, forwarding entries and the probe namespace.
        let in_place = ports.keys().all(|d| ifindex.contains_key(d))
            && ifindex
                .keys()
                .filter(|d| d.starts_with("sfs"))
                .all(|d| ports.contains_key(d))
            && want_probe == have_probe;
        let mut probe_recreated = false;
        let mut ports_ok = true;
        if !(steering_only && in_place) && (!ports.is_empty() || want_probe || have_probe) {
            let kernel = self.kernel.clone();
            let ports = ports.clone();
            let netns = probe_netns(&self.cfg);
            let result = tokio::task::spawn_blocking(move || {
                let (mut n, mut errors) = kernel.steering_ports(&ports)?;
                let (created, more) = kernel.probe_port(&netns, want_probe)?;
                errors.extend(more);
                n += usize::from(created || (have_probe && !want_probe));
                Ok::<_, AgentError>((n, errors, created, kernel.links()?))
            })
            .await;
            match result {
                Ok(Ok((n, errors, created, now))) => {
                    ports_ok = errors.is_empty();
                    self.stats.errors_total += errors.len() as u64;
                    for e in &errors {
                        tracing::warn!(error = %e, "steering port change refused");
                    }
                    probe_recreated = created;
                    if n > 0 {
                        self.stats.ops_total += n as u64;
                        self.stats.sfc_ops += n as u64;
                        self.stats.last_ops += n;
                        model.ifindex = crate::kernel::indexes(&now);
                        compiled = neutrino_sfc::compile(&model);
                        links = now;
                    }
                }
                Ok(Err(e)) => {
                    ports_ok = false;
                    tracing::warn!(error = %e, "steering ports failed")
                }
                Err(e) => {
                    ports_ok = false;
                    tracing::warn!(error = %e, "steering ports panicked")
                }
            }
        }
        self.sfc_steering_ports = ports;
        self.prober
            .watch(watched(&model, &compiled), probe_recreated);
        let want_table = compiled.table.clone();
        // A change applied in three steps when another host takes part (one host alone
        // applies in one): new paths first; then, once the other hosts have theirs, the
        // switch; the old paths go after the grace period (see `neutrino_sfc::transition`).
        // Staged also when this host adds nothing (its entries still wait for the other
        // hosts, which may have to add the rest of the new path), and when nothing is new
        // but something goes only after the grace (a detached classifier's
        // re-classification at a function here).
        let staged = applied
            .as_ref()
            .filter(|_| compiled.spans_hosts || self.sfc_spanned)
            .map(|old| {
                (
                    neutrino_sfc::transition(old, &want_table),
                    neutrino_sfc::switched(old, &want_table),
                )
            })
            .filter(|(first, switch)| first != &want_table || switch != &want_table);
        let have = listed.or(applied).unwrap_or_default();
        let result = match staged {
            None => {
                self.apply_steering_step(want_table.clone(), have, checked)
                    .await
            }
            Some((first, switch)) => {
                let peers =
                    neutrino_dataplane::sfc::peer_hosts(&model, cluster, &self.cfg.host.host);
                self.apply_staged(
                    cluster.revision,
                    ready,
                    &peers,
                    have,
                    checked,
                    [first, switch, want_table.clone()],
                )
                .await
            }
        };
        let result = result.map(|(n, errors, checked)| (n, want_table, errors, checked));
        let (n, errors) = match result {
            Ok((n, applied, errors, checked)) => {
                self.sfc_spanned = compiled.spans_hosts;
                // What the kernel holds now is the desired table, unless nft refused it (then
                // the next reconcile lists the kernel).
                if errors.is_empty() {
                    // Without chains and without a table there is nothing to look at next time.
                    self.sfc_idle = model.functions.is_empty() && !applied.present;
                    self.sfc_applied = Some(applied);
                    self.sfc_checked = Some(checked);
                }
                (n, errors)
            }
            Err(e) => {
                tracing::warn!(error = %e, "steering reconcile failed");
                return false;
            }
        };
        self.stats.errors_total += errors.len() as u64;
        for e in &errors {
            tracing::warn!(error = %e, "steering update refused");
        }
        if n > 0 {
            self.stats.ops_total += n as u64;
            self.stats.sfc_ops += n as u64;
            self.stats.last_ops += n;
            tracing::info!(commands = n, "applied steering plan");
        }
        let counters = self.read_counters().await;
        self.report_sfc(cluster, &model, &compiled, &counters, &links)
            .await;
        self.sfc_last = Some((model, compiled, links));
        errors.is_empty() && ports_ok
    }

    /// Applies one steering table over `base` (the table the kernel holds) in one nft
    /// transaction: the commands run and nft's refusals.
    async fn apply_steering_step(
        &self,
        step: neutrino_sfc::Table,
        base: neutrino_sfc::Table,
        checked: Checked,
    ) -> Result<(usize, Vec<String>, Checked), AgentError> {
        let kernel = self.kernel.clone();
        let result = tokio::task::spawn_blocking(move || -> Result<_, AgentError> {
            let mut checked = checked;
            let plan = neutrino_sfc::plan(&step, &base);
            if plan.is_empty() {
                return Ok((0, Vec::new(), checked));
            }
            for command in plan.commands() {
                tracing::debug!(%command, "steering");
            }
            let errors = kernel.apply_sfc(&plan.script())?;
            // The kernel holds the step now: no listing, only its (cheap) handle.
            checked.handle = kernel.sfc_table_handle()?;
            Ok((plan.commands().len(), errors, checked))
        })
        .await;
        result.unwrap_or_else(|e| {
            Err(AgentError::Command {
                command: "steering".into(),
                message: format!("panicked: {e}"),
            })
        })
    }

    /// A live change in three steps, `[new paths, switch, final]`: after the first the host
    /// acknowledges `revision` (when everything before the steering is applied, `ready`) and
    /// waits, at most `--sfc-switch-wait-ms`, for `peers` (the other hosts of its chains) to
    /// acknowledge it too; the final step follows the switch after the grace period.
    async fn apply_staged(
        &mut self,
        revision: i64,
        ready: bool,
        peers: &BTreeSet<String>,
        have: neutrino_sfc::Table,
        checked: Checked,
        [first, switch, last]: [neutrino_sfc::Table; 3],
    ) -> Result<(usize, Vec<String>, Checked), AgentError> {
        let (mut count, errors, mut checked) = self
            .apply_steering_step(first.clone(), have, checked)
            .await?;
        if !errors.is_empty() {
            return Ok((count, errors, checked));
        }
        if ready {
            self.acknowledge(revision).await;
        }
        self.wait_for_peers(revision, peers).await;
        let mut base = first;
        if switch != last {
            let (n, errors, c) = self
                .apply_steering_step(switch.clone(), base, checked)
                .await?;
            count += n;
            checked = c;
            if !errors.is_empty() {
                return Ok((count, errors, checked));
            }
            base = switch;
            tokio::time::sleep(self.cfg.sfc_grace).await;
        }
        let (n, errors, checked) = self.apply_steering_step(last, base, checked).await?;
        Ok((count + n, errors, checked))
    }

    /// Waits until every host in `peers` that is alive has acknowledged `revision`, at most
    /// `--sfc-switch-wait-ms`; when the server cannot say, for the grace period.
    async fn wait_for_peers(&self, revision: i64, peers: &BTreeSet<String>) {
        if peers.is_empty() {
            return;
        }
        let started = std::time::Instant::now();
        let wait = self.cfg.sfc_switch_wait;
        match self.client.wait_applied(revision, peers, wait).await {
            Ok(true) => {
                tracing::debug!(revision, ?peers, waited = ?started.elapsed(), "peers have the new paths")
            }
            Ok(false) => {
                tracing::warn!(revision, ?peers, waited = ?started.elapsed(), "switching a chain change before every peer has its new paths")
            }
            Err(e) => {
                tracing::warn!(error = %e, revision, "cannot ask whether the peers have the new paths");
                tokio::time::sleep(self.cfg.sfc_grace).await;
            }
        }
    }

    /// The steering table's named counters (empty when they cannot be read).
    async fn read_counters(&self) -> BTreeMap<String, (u64, u64)> {
        let kernel = self.kernel.clone();
        match tokio::task::spawn_blocking(move || kernel.sfc_counters()).await {
            Ok(Ok(counters)) => counters,
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "cannot read the steering counters");
                BTreeMap::new()
            }
            Err(_) => BTreeMap::new(),
        }
    }

    /// The prober saw pairs change health: record it and tell the server at once (it marks
    /// the pairs, and every host's next reconcile takes a dead one out of its group).
    async fn health_changed(&mut self, cluster: &Cluster, changed: Vec<crate::prober::Health>) {
        let mut ids = Vec::new();
        for (pair, healthy, detail) in changed {
            tracing::info!(pair = %pair, healthy, detail = %detail, "port pair health changed");
            self.health.insert(pair.clone(), (healthy, detail));
            ids.push(pair);
        }
        let Some((model, _, links)) = &self.sfc_last else {
            return;
        };
        let pairs: Vec<Value> = model
            .functions
            .iter()
            .filter(|p| ids.contains(&p.id))
            .map(|p| crate::sfc_report::pair_health(p, links, &self.health))
            .filter(|report| !stored(cluster, report))
            .collect();
        if pairs.is_empty() {
            return;
        }
        let doc = json!({"host": self.cfg.host.host, "port_pairs": pairs, "chains": []});
        if let Err(e) = self.client.sfc_status(&doc).await {
            tracing::warn!(error = %e, "port pair health report failed");
        }
    }

    /// Between reconciles: the chains' counters as they are now.
    async fn report_counters(&mut self, cluster: &Cluster) {
        let Some((model, compiled, links)) = self.sfc_last.take() else {
            return;
        };
        if !model.chains.is_empty() {
            let counters = self.read_counters().await;
            self.report_sfc(cluster, &model, &compiled, &counters, &links)
                .await;
            self.rewrite_status();
        }
        self.sfc_last = Some((model, compiled, links));
    }

    /// Which enabled security-group logs cover each port plugged here (the log reader names
    /// them in its lines).
    fn update_log_covers(&self, cluster: &Cluster, want: &Desired) {
        let mut covers: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
        for id in want.ports.keys() {
            let Some(port) = cluster.get("port", id) else {
                continue;
            };
            for log in cluster.all("log") {
                if neutrino_dataplane::security::log_covers(log, port) {
                    let text = |k: &str| log[k].as_str().unwrap_or_default().to_string();
                    covers
                        .entry(id.clone())
                        .or_default()
                        .push((text("id"), text("event")));
                }
            }
        }
        if let Ok(mut shared) = self.sg_log_covers.lock() {
            *shared = covers;
        }
    }

    /// The metering counters of this host's routers: to the metrics always, to the server
    /// when they moved (or now and then, as the server keeps a report five minutes).
    async fn report_meters(&mut self) {
        if self.meters.is_empty() && self.meter_sent.0.is_null() {
            return;
        }
        let kernel = self.kernel.clone();
        let namespaces: Vec<String> = self.meters.keys().cloned().collect();
        let read = tokio::task::spawn_blocking(move || {
            namespaces
                .into_iter()
                .map(|ns| {
                    let counters = kernel.meter_counters(&ns).unwrap_or_default();
                    (ns, counters)
                })
                .collect::<BTreeMap<_, _>>()
        })
        .await
        .unwrap_or_default();
        let doc = crate::meter_report::report(&self.cfg.host.host, &self.meters, &read);
        self.cfg.metrics.publish_meter(&doc);
        let due = doc != self.meter_sent.0 || self.meter_sent.1.elapsed() >= COUNTERS_REFRESH;
        if due && !doc["labels"].as_array().is_some_and(Vec::is_empty) {
            match self.client.metering_counters(&doc).await {
                Ok(_) => self.meter_sent = (doc, std::time::Instant::now()),
                Err(e) => tracing::debug!(error = %e, "metering report failed"),
            }
        } else if due {
            self.meter_sent = (doc, std::time::Instant::now());
        }
    }

    /// Health of the functions plugged here and the counters of every chain steered here:
    /// only the pairs whose health differs from what the server stores, and nothing at all
    /// when no pair differs and no counter moved since the last report.
    async fn report_sfc(
        &mut self,
        cluster: &Cluster,
        model: &neutrino_sfc::SfcModel,
        compiled: &neutrino_sfc::Compiled,
        counters: &BTreeMap<String, (u64, u64)>,
        links: &std::collections::BTreeMap<String, crate::kernel::LinkInfo>,
    ) {
        if model.functions.is_empty() && model.chains.is_empty() {
            return;
        }
        let doc = crate::sfc_report::report(
            &self.cfg.host.host,
            model,
            compiled,
            counters,
            links,
            &self.health,
        );
        let pairs: Vec<&Value> = doc["port_pairs"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|report| !stored(cluster, report))
            .collect();
        // Unchanged counters still go out now and then: the server counts a host's report
        // for five minutes only.
        let counters_due = doc["chains"] != self.sfc_chains_sent.0
            || self.sfc_chains_sent.1.elapsed() >= COUNTERS_REFRESH;
        if !pairs.is_empty() || counters_due {
            let send = json!({"host": doc["host"], "port_pairs": pairs, "chains": doc["chains"]});
            match self.client.sfc_status(&send).await {
                Ok(_) => self.sfc_chains_sent = (doc["chains"].clone(), std::time::Instant::now()),
                Err(e) => tracing::debug!(error = %e, "steering status report failed"),
            }
        }
        self.cfg.metrics.publish_sfc(&doc);
        self.sfc_report = doc;
    }

    /// DHCP servers and router advertisements after the plan: their namespaces and
    /// interfaces exist by now.
    async fn reconcile_services(&mut self, want: &Desired) {
        let state_dir = self.cfg.state_dir.clone();
        let prefix = self.cfg.host.netns_prefix.clone();
        let (servers, adverts) = (want.dhcp.clone(), want.ra.clone());
        let result = tokio::task::spawn_blocking(move || {
            let root = state_dir.join("dhcp");
            let observed = crate::dnsmasq::observe(&root, &prefix);
            let ops =
                neutrino_dataplane::dhcp::plan_dhcp(&servers, &observed, &root.to_string_lossy());
            let mut errors = crate::dnsmasq::apply(&ops);
            let root = state_dir.join("ra");
            let observed = crate::radvd::observe(&root, &prefix);
            let ra_ops =
                neutrino_dataplane::ra::plan_ra(&adverts, &observed, &root.to_string_lossy());
            errors.extend(crate::radvd::apply(&ra_ops));
            (ops.len(), ra_ops.len(), errors)
        })
        .await;
        match result {
            Ok((dhcp, ra, errors)) => {
                let n = dhcp + ra;
                self.stats.ops_total += n as u64;
                self.stats.dhcp_ops += dhcp as u64;
                self.stats.ra_ops += ra as u64;
                self.stats.last_ops += n;
                self.stats.errors_total += errors.len() as u64;
                for e in errors {
                    tracing::warn!(error = %e, "DHCP or RA daemon operation failed");
                }
            }
            Err(e) => tracing::warn!(error = %e, "DHCP/RA reconcile panicked"),
        }
    }

    /// Returns whether the tables now hold the model (nft accepted every command).
    /// Brings the ports' QoS (shapers, `ifb` redirects, DSCP table) to what their policies
    /// ask, once the taps exist; returns whether everything took.
    /// `targeted`: nothing is read when the model is the one the last reconcile applied.
    async fn reconcile_qos(&mut self, cluster: &Cluster, want: &Desired, targeted: bool) -> bool {
        let model = neutrino_dataplane::qos::desired(cluster, &want.ports);
        let applied = self.qos_applied.take();
        if targeted && self.healthy && applied.as_ref() == Some(&model) {
            self.qos_applied = applied;
            return true;
        }
        let kernel = self.kernel.clone();
        let applying = model.clone();
        let result =
            tokio::task::spawn_blocking(move || -> Result<(usize, Vec<String>), AgentError> {
                let have = neutrino_dataplane::qos::observe(&kernel.observe_qos()?);
                let ops = neutrino_dataplane::qos::plan(&applying, &have);
                for op in &ops {
                    tracing::debug!(%op, "qos op");
                }
                Ok((ops.len(), kernel.apply_qos(&ops)?))
            })
            .await;
        match result {
            Ok(Ok((n, errors))) => {
                if n > 0 {
                    self.stats.ops_total += n as u64;
                    tracing::info!(commands = n, "applied QoS plan");
                }
                for e in &errors {
                    tracing::warn!(error = %e, "QoS command refused");
                }
                if errors.is_empty() {
                    self.qos_applied = Some(model);
                }
                errors.is_empty()
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "QoS reconcile failed");
                false
            }
            Err(e) => {
                tracing::warn!(error = %e, "QoS reconcile panicked");
                false
            }
        }
    }

    /// Brings the Local IPs served here (ARP answers, translation table) to what the
    /// associations of the ports plugged here ask; returns whether everything took. Once
    /// nothing is served and that was applied, the kernel is not read again until something is.
    async fn reconcile_local_ips(&mut self, cluster: &Cluster, want: &Desired) -> bool {
        let model = neutrino_dataplane::local_ip::desired(cluster, &want.ports, &want.arp_answers);
        if model.is_empty() && self.local_ips_idle {
            return true;
        }
        let idle = model.is_empty();
        let kernel = self.kernel.clone();
        let result =
            tokio::task::spawn_blocking(move || -> Result<(usize, Vec<String>), AgentError> {
                let raw = kernel.observe_local_ips()?;
                let have = neutrino_dataplane::local_ip::observe(&raw);
                let ops = neutrino_dataplane::local_ip::plan(&model, &have);
                for op in &ops {
                    tracing::debug!(%op, "local IP op");
                }
                Ok((ops.len(), kernel.apply_local_ips(&ops)?))
            })
            .await;
        let ok = match result {
            Ok(Ok((n, errors))) => {
                if n > 0 {
                    self.stats.ops_total += n as u64;
                    tracing::info!(commands = n, "applied Local IP plan");
                }
                for e in &errors {
                    tracing::warn!(error = %e, "Local IP command refused");
                }
                errors.is_empty()
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "Local IP reconcile failed");
                false
            }
            Err(e) => {
                tracing::warn!(error = %e, "Local IP reconcile panicked");
                false
            }
        };
        self.local_ips_idle = idle && ok;
        ok
    }

    /// Brings the security-group tables to the model of `want`; returns whether nft took
    /// everything. `targeted`: plan against the tables the last reconcile left, if it knows
    /// them, instead of listing them.
    async fn reconcile_firewall(
        &mut self,
        cluster: &Cluster,
        want: &Desired,
        targeted: bool,
    ) -> bool {
        let model = firewall_model(cluster, want);
        let previous = self.firewall.replace(model.clone());
        let known = self
            .firewall_tables
            .take()
            .filter(|_| targeted && self.healthy);
        let kernel = self.kernel.clone();
        // Commands, connections cut, all taken, the tables now.
        type Outcome = (
            usize,
            usize,
            bool,
            Option<neutrino_firewall::ObservedTables>,
        );
        let result = tokio::task::spawn_blocking(move || -> Result<Outcome, AgentError> {
            let mut phases = crate::phases::Phases::start();
            let (mut observed, listed) = match known {
                Some(tables) => (tables, false),
                None => (kernel.observe_firewall()?, true),
            };
            let mut plan = neutrino_firewall::plan(&model, &observed);
            // A rule to name whose handle the last plan did not learn: list the tables.
            if !listed && plan.uses_unknown_handle() {
                observed = kernel.observe_firewall()?;
                plan = neutrino_firewall::plan(&model, &observed);
            }
            phases.mark("plan");
            for w in plan.warnings() {
                tracing::warn!(warning = %w, "security group rule skipped");
            }
            if plan.is_empty() {
                return Ok((0, 0, true, Some(observed)));
            }
            let refused = kernel.apply_firewall(&plan.script())?;
            phases.mark("apply");
            for e in &refused {
                tracing::warn!(error = %e, "firewall update refused");
            }
            let after = refused
                .is_empty()
                .then(|| neutrino_firewall::after_apply(&model, &observed, None));
            // Then what the new rules no longer allow, established or not, goes.
            let cut = match &previous {
                Some(old) => crate::conntrack::cut_lost_connections(
                    kernel.as_ref(),
                    old,
                    &model,
                    &observed.zones(),
                )
                .unwrap_or_else(|e| {
                    tracing::warn!(error = %e, "cannot cut connections");
                    0
                }),
                None => 0,
            };
            phases.mark("cut");
            tracing::debug!(target: "reconcile_phases", "firewall {phases}");
            Ok((
                plan.commands().len(),
                cut,
                refused.is_empty(),
                after.flatten(),
            ))
        })
        .await;
        match result {
            Ok(Ok((0, _, ok, tables))) => {
                self.firewall_tables = tables;
                ok
            }
            Ok(Ok((n, cut, ok, tables))) => {
                self.stats.ops_total += n as u64;
                self.stats.firewall_ops += n as u64;
                self.stats.connections_cut += cut as u64;
                tracing::info!(commands = n, connections_cut = cut, "applied firewall plan");
                self.firewall_tables = tables;
                ok
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "firewall reconcile failed");
                false
            }
            Err(e) => {
                tracing::warn!(error = %e, "firewall reconcile panicked");
                false
            }
        }
    }

    /// Asks the server to delete the ports of containers whose runtime namespace is gone
    /// (`netns`: the namespaces dropped): the runtime removed them and their DEL never
    /// reached the server (it was down, or the runtime never sent one). Retried with every
    /// reconcile until the ports are gone.
    async fn report_containers_gone(
        &mut self,
        want: &neutrino_dataplane::desired::Desired,
        netns: &[String],
    ) {
        let ports: Vec<&String> = want
            .ports
            .iter()
            .filter(|(_, o)| matches!(o, PortOutcome::Plug { netns: n, .. } if netns.contains(n)))
            .map(|(id, _)| id)
            .collect();
        if ports.is_empty() {
            return;
        }
        match self
            .client
            .containers_gone(&self.cfg.host.host, &ports)
            .await
        {
            Ok(deleted) => {
                tracing::info!(ports = ?ports, deleted, "deleted the ports of removed containers")
            }
            Err(e) => tracing::warn!(error = %e, "cannot report removed containers"),
        }
    }

    /// Reports the ports bound here, and the ports filtered on a shared device here
    /// (bare-metal servers' at an uplink, nested containers' at their VM's tap: `ACTIVE`,
    /// vif type `other`, once the device is on its bridge and the filter applied).
    async fn report_ports(
        &mut self,
        cluster: &Cluster,
        want: &neutrino_dataplane::desired::Desired,
        have: &HostState,
        filtered: bool,
    ) {
        let mut reports = Vec::new();
        self.port_statuses.clear();
        for (id, edge) in &want.edge_ports {
            let bridge = Some(edge.bridge.as_str());
            let on_bridge = have
                .uplinks
                .get(&edge.device)
                .is_some_and(|u| u.master.as_deref() == bridge)
                || have
                    .taps
                    .get(&edge.device)
                    .is_some_and(|t| t.master.as_deref() == bridge);
            let Some(port) = cluster.get("port", id) else {
                continue;
            };
            if on_bridge && filtered && text(port, "status") != "ACTIVE" {
                reports.push(json!({"id": id, "status": "ACTIVE", "vif_type": "other"}));
            }
        }
        for (id, outcome) in &want.ports {
            let (status, vif) = match outcome {
                PortOutcome::Plug {
                    tap,
                    netns,
                    ifname,
                    up,
                } => {
                    let plugged = have
                        .taps
                        .get(tap)
                        .is_some_and(|t| t.peer == (netns.clone(), ifname.clone()));
                    match (plugged, up) {
                        (true, true) => ("ACTIVE", "bridge"),
                        (true, false) => ("DOWN", "bridge"),
                        (false, _) => ("BUILD", "bridge"),
                    }
                }
                PortOutcome::Fail(reason) => {
                    tracing::warn!(port = %id, %reason, "cannot plug port");
                    ("ERROR", "binding_failed")
                }
            };
            *self.port_statuses.entry(status).or_default() += 1;
            let Some(port) = cluster.get("port", id) else {
                continue;
            };
            if text(port, "status") != status || text(port, "binding:vif_type") != vif {
                reports.push(json!({"id": id, "status": status, "vif_type": vif}));
            }
        }
        if reports.is_empty() {
            return;
        }
        match self
            .client
            .port_status(&self.cfg.host.host, cluster.revision, &reports)
            .await
        {
            Ok(_) => tracing::info!(ports = reports.len(), "reported port status"),
            Err(e) => tracing::warn!(error = %e, "port status report failed"),
        }
    }

    /// Subport port statuses and trunk statuses, when they changed.
    async fn report_trunks(&mut self, cluster: &Cluster, want: &Desired, have: &HostState) {
        let ports = crate::trunk_report::subport_reports(cluster, want, have);
        if !ports.is_empty() {
            match self
                .client
                .port_status(&self.cfg.host.host, cluster.revision, &ports)
                .await
            {
                Ok(_) => tracing::info!(subports = ports.len(), "reported subport status"),
                Err(e) => tracing::warn!(error = %e, "subport status report failed"),
            }
        }
        let trunks = crate::trunk_report::trunk_reports(cluster, want, have);
        if !trunks.is_empty() {
            match self.client.trunk_status(&self.cfg.host.host, &trunks).await {
                Ok(_) => tracing::info!(trunks = trunks.len(), "reported trunk status"),
                Err(e) => tracing::warn!(error = %e, "trunk status report failed"),
            }
        }
    }

    fn write_status(&mut self, cluster: &Cluster) {
        self.status_revision = cluster.revision;
        self.rewrite_status();
    }

    /// The status file: counters of the agent's work and the latest steering report (pair
    /// health, per-chain hop counters).
    fn rewrite_status(&self) {
        self.cfg.metrics.publish(crate::metrics::Snapshot {
            reconciles: self.stats.reconciles,
            ops: vec![
                (
                    "kernel",
                    self.stats.ops_total
                        - self.stats.firewall_ops
                        - self.stats.dhcp_ops
                        - self.stats.ra_ops
                        - self.stats.sfc_ops
                        - self.stats.bgp_ops,
                ),
                ("firewall", self.stats.firewall_ops),
                ("dhcp", self.stats.dhcp_ops),
                ("ra", self.stats.ra_ops),
                ("sfc", self.stats.sfc_ops),
                ("bgp", self.stats.bgp_ops),
            ],
            errors: self.stats.errors_total,
            connections_cut: self.stats.connections_cut,
            revision: self.status_revision,
            applied_revision: self.acked.0,
            ports: self
                .port_statuses
                .iter()
                .map(|(s, n)| (s.to_string(), *n))
                .collect(),
        });
        let Some(path) = &self.cfg.status_file else {
            return;
        };
        let doc = json!({
            "revision": self.status_revision,
            // The revision last acknowledged as applied (-1: none yet).
            "applied_revision": self.acked.0,
            "reconciles": self.stats.reconciles,
            "full_reconciles": self.stats.full_reconciles,
            "ops_total": self.stats.ops_total,
            "last_ops": self.stats.last_ops,
            "errors_total": self.stats.errors_total,
            "firewall_ops": self.stats.firewall_ops,
            "dhcp_ops": self.stats.dhcp_ops,
            "ra_ops": self.stats.ra_ops,
            "connections_cut": self.stats.connections_cut,
            "sfc_ops": self.stats.sfc_ops,
            "sfc": self.sfc_report,
            "bgp_ops": self.stats.bgp_ops,
            // BGP session → BIRD's state and info (`up Established`).
            "bgp_sessions": self.bgp_sessions,
            "snapshots": self.stats.snapshots,
            "watch_streams": self.stats.watch_streams,
            "overlay": self.overlay.as_ref().map(crate::overlay::Overlay::status),
        });
        let tmp = path.with_extension("tmp");
        if std::fs::write(&tmp, doc.to_string()).is_ok() {
            let _ = std::fs::rename(&tmp, path);
        }
    }
}

/// The next change of any of `vteps` (see [`crate::vtep::Vtep::changed`]), with the switch's
/// name; pending forever without switches.
async fn next_vtep_change(vteps: &mut [crate::vtep::Vtep]) -> (String, crate::vtep::Change) {
    if vteps.is_empty() {
        return std::future::pending().await;
    }
    let waits = vteps.iter_mut().map(|v| {
        Box::pin(async move {
            let change = v.changed().await;
            (v.name.clone(), change)
        })
    });
    futures_util::future::select_all(waits).await.0
}

/// Whether the runtime's namespace of a container is gone: nothing at its path any more, or
/// (when the agent has it bind-mounted at `/run/netns/NAME`) another namespace than the
/// mounted one there (a reused `/proc/PID/ns/net`).
fn runtime_namespace_gone(name: &str, path: &str, mounted: bool) -> bool {
    use std::os::unix::fs::MetadataExt;
    let Ok(runtime) = std::fs::metadata(path) else {
        return true;
    };
    if !mounted {
        return false;
    }
    match std::fs::metadata(format!("/run/netns/{name}")) {
        Ok(mount) => (mount.dev(), mount.ino()) != (runtime.dev(), runtime.ino()),
        Err(_) => false,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use neutrino_dataplane::state::Namespace;
    use neutrino_dataplane::Op;

    /// A plain agent configuration for `host` (VXLAN only, no BGP, no gateway device).
    pub(crate) fn config(host: &str) -> AgentConfig {
        AgentConfig {
            host: HostConfig {
                host: host.to_string(),
                tunnel_ip: "192.0.2.10".parse().unwrap(),
                vxlan_port: 4789,
                netns_prefix: String::new(),
                interface_mappings: BTreeMap::new(),
                l2gw_device: None,
            },
            report_every: Duration::from_secs(30),
            resync_every: Duration::from_secs(300),
            status_file: None,
            state_dir: std::env::temp_dir(),
            sfc_grace: Duration::from_millis(500),
            sfc_switch_wait: Duration::from_secs(5),
            metrics: crate::metrics::AgentMetrics::new(),
            bgp: false,
            availability_zone: "nova".to_string(),
            bgp_router_id: None,
            dataplane_netns: None,
            vteps: Vec::new(),
            vtep_resync_every: Duration::from_secs(60),
            vtep_tls: None,
            encrypt_overlay: false,
            overlay_port: 51820,
            rotate_overlay_key: false,
            l2gw_exchange_macs: false,
        }
    }

    /// A server of another protocol version is not hammered: the agent waits a minute or
    /// more before trying again, whatever its current pause.
    #[test]
    fn an_incompatible_server_is_retried_only_after_a_long_pause() {
        let err = AgentError::Incompatible {
            agent: 1,
            server: "3".into(),
            advice: "upgrade this agent",
        };
        for _ in 0..50 {
            let wait = pause_after(&err, Duration::from_millis(200));
            assert!(
                wait >= INCOMPATIBLE_PAUSE && wait < INCOMPATIBLE_PAUSE * 2,
                "{wait:?}"
            );
        }
        let other = AgentError::Stalled;
        assert!(pause_after(&other, Duration::from_millis(200)) <= Duration::from_millis(200));
    }

    #[test]
    fn pages_of_chain_resources_only_are_steering_only() {
        let page = |kinds: &[&str]| {
            let changes: Vec<Value> = kinds
                .iter()
                .map(|k| json!({"kind": k, "id": "x", "body": null}))
                .collect();
            json!({"revision": 3, "changes": changes})
        };
        assert!(steering_only(&page(&["port_chain", "port_pair"])));
        assert!(steering_only(&page(&["flow_classifier", "service_graph"])));
        assert!(!steering_only(&page(&["port_chain", "port"])));
        assert!(!steering_only(&page(&["network"])));
    }

    #[test]
    fn a_health_report_the_server_stores_is_not_sent_again() {
        let mut cluster = Cluster::default();
        let doc = json!({"id": "pp", "neutrino:health": "UP", "neutrino:health_detail": ""});
        cluster.put("port_pair", "pp", Some(&doc));
        assert!(stored(
            &cluster,
            &json!({"id": "pp", "health": "UP", "detail": ""})
        ));
        assert!(!stored(
            &cluster,
            &json!({"id": "pp", "health": "DOWN", "detail": ""})
        ));
        assert!(!stored(
            &cluster,
            &json!({"id": "pp", "health": "UP", "detail": "no probe has come through it yet"})
        ));
        assert!(!stored(
            &cluster,
            &json!({"id": "other", "health": "UP", "detail": ""})
        ));
    }

    #[test]
    fn announces_added_router_addresses_and_those_of_relinked_router_interfaces() {
        let router = "p-qrouter-r1".to_string();
        let addr = |a: &str| a.parse::<ipnet::IpNet>().unwrap();
        let mut want = HostState::default();
        let mut ns = Namespace::default();
        ns.addrs.insert(("qr-a".into(), addr("10.0.1.1/24")));
        ns.addrs.insert(("qr-a".into(), addr("fd00::1/64")));
        ns.addrs.insert(("qr-b".into(), addr("10.0.2.1/24")));
        want.namespaces.insert(router.clone(), ns);
        let set_link = |netns: &str, name: &str| Op::SetNsLink {
            netns: netns.into(),
            name: name.into(),
            mac: "fa:16:3e:00:00:01".into(),
            mtu: 1450,
            up: true,
        };
        let ops = vec![
            // A new MAC on qr-a (a router that became centralized): both its addresses.
            set_link(&router, "qr-a"),
            // An address added on qr-b, and the same one again through a relink.
            Op::AddAddr {
                netns: router.clone(),
                dev: "qr-b".into(),
                addr: addr("10.0.2.1/24"),
            },
            set_link(&router, "qr-b"),
            // Instances announce nothing.
            set_link("p-vm-1", "eth0"),
            Op::AddAddr {
                netns: "p-vm-1".into(),
                dev: "eth0".into(),
                addr: addr("10.0.1.5/24"),
            },
        ];
        let got: Vec<String> = router_addresses("p-", &want, &ops)
            .into_iter()
            .map(|(netns, dev, ip)| format!("{netns} {dev} {ip}"))
            .collect();
        assert_eq!(
            got,
            [
                "p-qrouter-r1 qr-a 10.0.1.1",
                "p-qrouter-r1 qr-a fd00::1",
                "p-qrouter-r1 qr-b 10.0.2.1",
            ]
        );
    }
}
