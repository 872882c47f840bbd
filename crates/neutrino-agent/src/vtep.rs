//! The agent's side of hardware VTEPs (`--vtep NAME=REMOTE`): one [`Vtep`] per physical
//! switch keeps a connection to the switch's OVSDB server, reads its rows, and writes the
//! difference from what the cluster wants ([`neutrino_dataplane::vtep`]). Every sync reads
//! the whole database again, so after the switch (or its server) was unreachable the next
//! successful sync replays everything the switch lost.

use std::collections::{BTreeMap, BTreeSet};

use neutrino_dataplane::vtep as plan;
use neutrino_dataplane::Cluster;

use crate::ovsdb::{Ovsdb, OvsdbError};

/// One managed physical switch.
pub struct Vtep {
    /// The gateway device name (`device_name`), also the `Physical_Switch` name.
    pub name: String,
    /// `tcp:HOST:PORT` or `unix:PATH`.
    pub remote: String,
    conn: Option<Ovsdb>,
    /// Failed syncs in a row, and when the next attempt is due after them.
    failures: u32,
    retry_at: Option<std::time::Instant>,
    /// The ports found missing by the last sync.
    missing: Vec<String>,
}

/// The longest pause between attempts at an unreachable switch.
const BACKOFF_MAX: std::time::Duration = std::time::Duration::from_secs(60);

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

/// The `host` under which the MACs switch `name` learnt are reported (`l2gw_learned_macs`).
pub fn report_host(name: &str) -> String {
    neutrino_dataplane::vtep::report_host(name)
}

/// Parses `NAME=REMOTE` (`--vtep`): the switch's gateway device name and its OVSDB remote,
/// `tcp:HOST:PORT` or `unix:PATH`.
pub fn parse_spec(spec: &str) -> Result<(String, String), OvsdbError> {
    let (name, remote) = spec
        .split_once('=')
        .filter(|(n, r)| !n.is_empty() && (r.starts_with("tcp:") || r.starts_with("unix:")))
        .ok_or_else(|| OvsdbError::Remote(spec.to_string()))?;
    Ok((name.to_string(), remote.to_string()))
}

impl Vtep {
    /// A switch not yet connected.
    pub fn new(name: &str, remote: &str) -> Vtep {
        Vtep {
            name: name.to_string(),
            remote: remote.to_string(),
            conn: None,
            failures: 0,
            retry_at: None,
            missing: Vec::new(),
        }
    }

    /// Whether a sync is due: always while connected; after failures, once their backoff
    /// (2 s, 4 s, ... up to a minute) has passed, so an unreachable switch does not hold up
    /// the agent's loop every round.
    pub fn due(&self) -> bool {
        self.retry_at.is_none_or(|t| std::time::Instant::now() >= t)
    }

    /// Brings the switch to what `cluster` wants. A failure drops the connection; the next
    /// sync reconnects and starts over from the switch's rows.
    pub async fn sync(&mut self, cluster: &Cluster) -> Result<Synced, OvsdbError> {
        let mut out = self.try_sync(cluster).await;
        match &mut out {
            Ok(synced) => {
                (self.failures, self.retry_at) = (0, None);
                synced.missing_changed = synced.missing_ports != self.missing;
                self.missing.clone_from(&synced.missing_ports);
            }
            Err(_) => {
                self.conn = None;
                self.failures = self.failures.saturating_add(1);
                let pause = std::time::Duration::from_secs(1 << self.failures.min(6));
                self.retry_at = Some(std::time::Instant::now() + pause.min(BACKOFF_MAX));
            }
        }
        out
    }

    async fn try_sync(&mut self, cluster: &Cluster) -> Result<Synced, OvsdbError> {
        if self.conn.is_none() {
            self.conn = Some(Ovsdb::connect(&self.remote).await?);
            tracing::info!(switch = %self.name, remote = %self.remote, "connected to the VTEP");
        }
        let conn = self.conn.as_mut().expect("connected above");
        let want = plan::wanted(cluster, &self.name);
        let mut have = Self::read(conn, &self.name).await?;
        let ops = plan::plan(&want, &have);
        if !ops.is_empty() {
            tracing::debug!(switch = %self.name, ops = ops.len(), "writing the VTEP");
            conn.transact(plan::DATABASE, &ops).await?;
            have = Self::read(conn, &self.name).await?;
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

    async fn read(conn: &mut Ovsdb, name: &str) -> Result<plan::Observed, OvsdbError> {
        let results = conn.transact(plan::DATABASE, &plan::select_ops()).await?;
        plan::observe(name, &results)
            .ok_or_else(|| OvsdbError::Server(format!("no Physical_Switch named {name:?}")))
    }
}
