//! DHCP servers on the host: one `dnsmasq` per `qdhcp-` namespace, its files and pid file in
//! `<state dir>/dhcp/<namespace>/`. Observation reads the files back and checks that the pid
//! file names a live dnsmasq started with that configuration; application writes files,
//! starts, HUPs and stops processes.

use std::collections::BTreeMap;
use std::path::Path;

use neutrino_dataplane::dhcp::{DhcpFiles, DhcpOp, ObservedDhcp};

use crate::daemon::{
    apply_all, io_error, read, running_pid, signal, spawn_in, state_dirs, stop, write,
};
use crate::AgentError;

const PROGRAM: &str = "dnsmasq";

/// The servers found under `root`, by namespace (only this agent's namespaces).
pub fn observe(root: &Path, netns_prefix: &str) -> BTreeMap<String, ObservedDhcp> {
    state_dirs(root, netns_prefix)
        .into_iter()
        .map(|(name, dir)| {
            let files = DhcpFiles {
                conf: read(&dir, "conf"),
                hosts: read(&dir, "hosts"),
                opts: read(&dir, "opts"),
            };
            let running = running_pid(&dir, PROGRAM, "conf").is_some();
            (name, ObservedDhcp { files, running })
        })
        .collect()
}

fn apply_one(op: &DhcpOp) -> Result<(), AgentError> {
    match op {
        DhcpOp::Start { netns, dir, files } => {
            let dir = Path::new(dir);
            stop(dir, PROGRAM, "conf");
            std::fs::create_dir_all(dir).map_err(|e| io_error("mkdir", e))?;
            write(dir, "hosts", &files.hosts)?;
            write(dir, "opts", &files.opts)?;
            write(dir, "conf", &files.conf)?;
            let conf = format!("--conf-file={}", dir.join("conf").display());
            spawn_in(netns, dir, PROGRAM, &[&conf])?;
            tracing::info!(%netns, "started dnsmasq");
        }
        DhcpOp::Reload { netns, dir, files } => {
            let dir = Path::new(dir);
            write(dir, "hosts", &files.hosts)?;
            write(dir, "opts", &files.opts)?;
            if let Some(pid) = running_pid(dir, PROGRAM, "conf") {
                signal(pid, "-HUP");
            }
            tracing::info!(%netns, "reloaded dnsmasq");
        }
        DhcpOp::Stop { netns, dir } => {
            let dir = Path::new(dir);
            stop(dir, PROGRAM, "conf");
            std::fs::remove_dir_all(dir).map_err(|e| io_error("rm", e))?;
            tracing::info!(%netns, "stopped dnsmasq");
        }
    }
    Ok(())
}

/// Applies the operations in order; returns the errors (the next reconcile retries).
pub fn apply(ops: &[DhcpOp]) -> Vec<String> {
    apply_all(ops, apply_one)
}
