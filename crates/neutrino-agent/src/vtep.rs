//! The agent's side of hardware VTEPs (`--vtep NAME=REMOTE`): one [`Vtep`] per physical
//! switch keeps a connection to the switch's OVSDB server with one `monitor` on the tables
//! the planner reads ([`plan::TABLES`]), so it holds a live [`Replica`] of them, and writes
//! the difference from what the cluster wants ([`neutrino_dataplane::vtep`]), planned
//! against the replica. An `ssl:` remote is reached over TLS ([`crate::vtep_tls`]); a
//! switch whose certificate does not verify fails like an unreachable one. After a write it waits for the monitor's update carrying it, so the
//! next plan sees its own rows. [`Vtep::changed`] resolves when the switch's rows changed
//! (what it learnt, rows someone else touched), briefly debounced, for the agent to report
//! and repair at once. The replica is read whole again by a `select` every
//! [`Vtep::resync_every`] (a repair, should it have drifted). A lost connection drops the
//! replica: the next connection's monitor starts from the switch's full state, so a switch
//! that was unreachable, restarted or reset gets everything again.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use neutrino_dataplane::vtep as plan;
use neutrino_dataplane::Cluster;
use serde_json::{json, Value};

use crate::ovsdb::{Ovsdb, OvsdbError, Replica};

/// One managed physical switch.
pub struct Vtep {
    /// The gateway device name (`device_name`), also the `Physical_Switch` name.
    pub name: String,
    /// `tcp:HOST:PORT`, `ssl:HOST:PORT` or `unix:PATH`.
    pub remote: String,
    /// The TLS configuration of an `ssl:` remote.
    tls: Option<std::sync::Arc<rustls::ClientConfig>>,
    conn: Option<Ovsdb>,
    /// The monitored tables, while connected.
    replica: Option<Replica>,
    /// Notifications numbered below this are older than the replica (read by a `select`).
    floor: u64,
    /// When the replica was last read whole (the monitor's initial reply, or a `select`).
    read_at: Option<Instant>,
    /// How many times it was.
    full_reads: u64,
    /// How many re-reads found the replica different from the switch's rows.
    drifts: u64,
    /// How often the replica is read whole again while connected.
    resync_every: Duration,
    /// When the first change not yet seen by a sync arrived.
    changed_at: Option<Instant>,
    /// Failed syncs in a row, and when the next attempt is due after them.
    failures: u32,
    retry_at: Option<Instant>,
    /// The ports found missing by the last sync.
    missing: Vec<String>,
}

/// The longest pause between attempts at an unreachable switch.
const BACKOFF_MAX: Duration = Duration::from_secs(60);

/// How long a burst of the switch's changes is gathered before [`Vtep::changed`] resolves.
pub const DEBOUNCE: Duration = Duration::from_millis(200);

/// The default interval of the full re-read ([`Vtep::resync_every`]).
pub const RESYNC_EVERY: Duration = Duration::from_secs(60);

/// How long a write may take to come back through the monitor.
const CATCH_UP: Duration = Duration::from_secs(5);

/// The id of the agent's monitor on each switch.
fn monitor_id() -> Value {
    json!("neutrino-vtep")
}

/// The outcome of one successful sync.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Synced {
    /// Operations written (0: the switch already matched).
    pub written: usize,
    /// The switch's tunnel IPs.
    pub tunnel_ips: Vec<String>,
    /// MACs the switch learnt locally, per connected network.
    pub learned: BTreeMap<String, BTreeSet<String>>,
    /// Ports the gateway names that the switch does not have.
    pub missing_ports: Vec<String>,
    /// Whether `missing_ports` differs from the previous sync's.
    pub missing_changed: bool,
}

/// What [`Vtep::changed`] saw.
#[derive(Debug)]
pub enum Change {
    /// The switch's rows changed (the replica has it): time to sync.
    Updated,
    /// The connection was lost: the replica is dropped, the switch is tried again after the
    /// backoff.
    Lost(OvsdbError),
}

/// The `host` under which the MACs switch `name` learnt are reported (`l2gw_learned_macs`).
pub fn report_host(name: &str) -> String {
    neutrino_dataplane::vtep::report_host(name)
}

/// Parses `NAME=REMOTE` (`--vtep`): the switch's gateway device name and its OVSDB remote,
/// `tcp:HOST:PORT`, `ssl:HOST:PORT` or `unix:PATH`.
pub fn parse_spec(spec: &str) -> Result<(String, String), OvsdbError> {
    let (name, remote) = spec
        .split_once('=')
        .filter(|(n, r)| {
            !n.is_empty() && ["tcp:", "ssl:", "unix:"].iter().any(|p| r.starts_with(p))
        })
        .ok_or_else(|| OvsdbError::Remote(spec.to_string()))?;
    Ok((name.to_string(), remote.to_string()))
}

impl Vtep {
    /// A switch not yet connected.
    pub fn new(name: &str, remote: &str) -> Vtep {
        Vtep {
            name: name.to_string(),
            remote: remote.to_string(),
            tls: None,
            conn: None,
            replica: None,
            floor: 0,
            read_at: None,
            full_reads: 0,
            drifts: 0,
            resync_every: RESYNC_EVERY,
            changed_at: None,
            failures: 0,
            retry_at: None,
            missing: Vec::new(),
        }
    }

    /// Sets the TLS configuration for an `ssl:` remote (see [`crate::vtep_tls`]).
    pub fn tls(mut self, config: Option<std::sync::Arc<rustls::ClientConfig>>) -> Vtep {
        self.tls = config;
        self
    }

    /// Sets how often the replica is read whole again while connected.
    pub fn resync_every(mut self, every: Duration) -> Vtep {
        self.resync_every = every;
        self
    }

    /// Whether a sync is due: always while connected; after failures, once their backoff
    /// (2 s, 4 s, ... up to a minute) has passed, so an unreachable switch does not hold up
    /// the agent's loop every round.
    pub fn due(&self) -> bool {
        self.retry_at.is_none_or(|t| Instant::now() >= t)
    }

    /// When the switch next needs a sync without any change: the end of the backoff after
    /// a failure, else the next full re-read while connected, else now.
    pub fn deadline(&self) -> Instant {
        if let Some(t) = self.retry_at {
            return t;
        }
        match (self.read_at, &self.conn) {
            (Some(t), Some(_)) => t + self.resync_every,
            _ => Instant::now(),
        }
    }

    /// How many times the switch's tables were read whole (monitor starts and re-reads).
    pub fn full_reads(&self) -> u64 {
        self.full_reads
    }

    /// How many periodic re-reads found rows the monitor had not brought (each is logged).
    pub fn drifts(&self) -> u64 {
        self.drifts
    }

    /// Resolves when the switch's rows changed (at most [`DEBOUNCE`] after the first change
    /// of a burst) or the connection was lost; never while not connected. Cancel-safe: the
    /// changes already taken stay in the replica.
    pub async fn changed(&mut self) -> Change {
        loop {
            let Some(conn) = self.conn.as_mut() else {
                return std::future::pending().await;
            };
            let debounced = self.changed_at.map(|t| t + DEBOUNCE);
            let next = tokio::select! {
                u = conn.next_update() => Some(u),
                _ = tokio::time::sleep_until(debounced.unwrap_or_else(Instant::now).into()),
                    if debounced.is_some() => None,
            };
            match next {
                None => {
                    self.changed_at = None;
                    return Change::Updated;
                }
                Some(Some(update)) => {
                    if self.take(&update).is_some() && self.changed_at.is_none() {
                        self.changed_at = Some(Instant::now());
                    }
                }
                Some(None) => {
                    let err = OvsdbError::Io(std::io::Error::new(
                        std::io::ErrorKind::ConnectionAborted,
                        "the switch's OVSDB server closed the connection",
                    ));
                    self.failed();
                    return Change::Lost(err);
                }
            }
        }
    }

    /// Brings the switch to what `cluster` wants. A failure drops the connection and the
    /// replica; the next sync reconnects and starts over from the switch's rows.
    pub async fn sync(&mut self, cluster: &Cluster) -> Result<Synced, OvsdbError> {
        let mut out = self.try_sync(cluster).await;
        match &mut out {
            Ok(synced) => {
                (self.failures, self.retry_at) = (0, None);
                synced.missing_changed = synced.missing_ports != self.missing;
                self.missing.clone_from(&synced.missing_ports);
            }
            Err(_) => self.failed(),
        }
        out
    }

    fn failed(&mut self) {
        (self.conn, self.replica, self.read_at, self.changed_at) = (None, None, None, None);
        self.failures = self.failures.saturating_add(1);
        let pause = Duration::from_secs(1 << self.failures.min(6));
        self.retry_at = Some(Instant::now() + pause.min(BACKOFF_MAX));
    }

    /// Applies one notification of the agent's monitor to the replica: the uuids of the
    /// rows it names, `None` when it is not for the replica (another monitor, or older than
    /// the replica's last full read).
    fn take(&mut self, update: &crate::ovsdb::Update) -> Option<Vec<String>> {
        let replica = self.replica.as_mut()?;
        if update.monitor != monitor_id() || update.seq < self.floor {
            return None;
        }
        Some(replica.apply(&update.tables))
    }

    /// Applies the notifications already received.
    fn drain(&mut self) -> Result<(), OvsdbError> {
        loop {
            let Some(conn) = self.conn.as_mut() else {
                return Err(closed());
            };
            match conn.try_update()? {
                Some(update) => {
                    self.take(&update);
                }
                None => return Ok(()),
            }
        }
    }

    async fn connect(&mut self) -> Result<(), OvsdbError> {
        let mut conn = Ovsdb::connect_with(&self.remote, self.tls.as_ref()).await?;
        let reply = conn
            .monitor(plan::DATABASE, &monitor_id(), &plan::TABLES)
            .await?;
        let mut replica = Replica::new(&plan::TABLES);
        replica.apply(&reply.result);
        tracing::info!(switch = %self.name, remote = %self.remote, "connected to the VTEP");
        (self.conn, self.replica, self.floor) = (Some(conn), Some(replica), reply.seq);
        self.read_at = Some(Instant::now());
        self.full_reads += 1;
        Ok(())
    }

    /// Reads the monitored tables whole (`select`) into the replica: notifications that
    /// arrived before the answer are older than it (the replica had drifted if they do not
    /// bring it to the same rows), those after it newer.
    async fn reread(&mut self) -> Result<(), OvsdbError> {
        let conn = self.conn.as_mut().ok_or_else(closed)?;
        let (results, reply) = conn
            .transact_reply(plan::DATABASE, &plan::select_ops())
            .await?;
        let mut queued = Vec::new();
        while let Some(update) = conn.try_update()? {
            queued.push(update);
        }
        let (older, newer): (Vec<_>, Vec<_>) = queued.into_iter().partition(|u| u.seq < reply.seq);
        for update in &older {
            self.take(update);
        }
        let fresh = Replica::from_select(&plan::TABLES, &results);
        if self.replica.as_ref() != Some(&fresh) {
            tracing::warn!(switch = %self.name, "the VTEP's rows differed from the monitor's");
            self.drifts += 1;
        }
        (self.replica, self.floor) = (Some(fresh), reply.seq);
        for update in &newer {
            self.take(update);
        }
        self.read_at = Some(Instant::now());
        self.full_reads += 1;
        Ok(())
    }

    /// The switch's rows as the planner reads them.
    fn observed(&self) -> Result<plan::Observed, OvsdbError> {
        let rows = self.replica.as_ref().ok_or_else(closed)?;
        plan::observe(&self.name, &rows.as_select(&plan::TABLES))
            .ok_or_else(|| OvsdbError::Server(format!("no Physical_Switch named {:?}", self.name)))
    }

    async fn try_sync(&mut self, cluster: &Cluster) -> Result<Synced, OvsdbError> {
        if self.conn.is_none() {
            self.connect().await?;
        }
        self.drain()?;
        if self
            .read_at
            .is_none_or(|t| t.elapsed() >= self.resync_every)
        {
            self.reread().await?;
        }
        self.changed_at = None;
        let want = plan::wanted(cluster, &self.name);
        let mut have = self.observed()?;
        let ops = plan::plan(&want, &have);
        if !ops.is_empty() {
            tracing::debug!(switch = %self.name, ops = ops.len(), "writing the VTEP");
            let conn = self.conn.as_mut().ok_or_else(closed)?;
            let (results, reply) = conn.transact_reply(plan::DATABASE, &ops).await?;
            self.catch_up(&ops, &results, reply.sent_after).await?;
            have = self.observed()?;
        }
        Ok(Synced {
            written: ops.len(),
            tunnel_ips: have.tunnel_ips.clone(),
            learned: plan::learned(&want, &have),
            missing_ports: plan::missing_ports(&want, &have)
                .into_iter()
                .map(str::to_string)
                .collect(),
            missing_changed: false,
        })
    }

    /// Waits until the monitor brought the transaction `ops` (answered `results`) into the
    /// replica: a notification received after the request went out that names a row the
    /// transaction inserted, updated or deleted (a transaction's changes come in one
    /// notification). Nothing to wait for when it changed no row.
    async fn catch_up(
        &mut self,
        ops: &[Value],
        results: &[Value],
        sent_after: u64,
    ) -> Result<(), OvsdbError> {
        let touched: BTreeSet<String> = ops
            .iter()
            .zip(results)
            .filter_map(|(op, result)| match op["op"].as_str() {
                Some("insert") => result["uuid"][1].as_str().map(str::to_string),
                Some("update" | "delete") if result["count"].as_u64().unwrap_or(0) > 0 => {
                    op["where"][0][2][1].as_str().map(str::to_string)
                }
                _ => None,
            })
            .collect();
        if touched.is_empty() {
            return Ok(());
        }
        let deadline = tokio::time::Instant::now() + CATCH_UP;
        loop {
            let conn = self.conn.as_mut().ok_or_else(closed)?;
            let update = tokio::time::timeout_at(deadline, conn.next_update())
                .await
                .map_err(|_| OvsdbError::Timeout(CATCH_UP))?
                .ok_or_else(closed)?;
            let seq = update.seq;
            let named = self.take(&update).unwrap_or_default();
            if seq > sent_after && named.iter().any(|u| touched.contains(u)) {
                return Ok(());
            }
            // Someone else's change meanwhile: the next round looks at it.
            if !named.is_empty() {
                self.changed_at.get_or_insert_with(Instant::now);
            }
        }
    }
}

fn closed() -> OvsdbError {
    OvsdbError::Io(std::io::Error::new(
        std::io::ErrorKind::NotConnected,
        "not connected to the switch",
    ))
}
