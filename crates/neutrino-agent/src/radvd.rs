//! Router advertisements on the host: one `radvd` per router namespace with IPv6 interfaces,
//! its `radvd.conf`, pid file and log in `<state dir>/ra/<namespace>/`. Observation reads the
//! configuration back and checks that the pid file names a live radvd started with it;
//! application writes the file (mode 0644: radvd refuses one others may write), starts,
//! HUPs and stops processes.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use neutrino_dataplane::ra::{ObservedRa, RaOp};

use crate::daemon::{
    apply_all, io_error, read, running_pid, signal, spawn_in, state_dirs, stop, write,
};
use crate::AgentError;

const PROGRAM: &str = "radvd";
const CONF: &str = "radvd.conf";

/// The radvd processes found under `root`, by namespace (only this agent's namespaces).
pub fn observe(root: &Path, netns_prefix: &str) -> BTreeMap<String, ObservedRa> {
    state_dirs(root, netns_prefix)
        .into_iter()
        .map(|(name, dir)| {
            let observed = ObservedRa {
                conf: read(&dir, CONF),
                running: running_pid(&dir, PROGRAM, CONF).is_some(),
            };
            (name, observed)
        })
        .collect()
}

fn write_conf(dir: &Path, conf: &str) -> Result<(), AgentError> {
    write(dir, CONF, conf)?;
    std::fs::set_permissions(dir.join(CONF), std::fs::Permissions::from_mode(0o644))
        .map_err(|e| io_error("chmod radvd.conf", e))
}

fn apply_one(op: &RaOp) -> Result<(), AgentError> {
    match op {
        RaOp::Start { netns, dir, conf } => {
            let dir = Path::new(dir);
            stop(dir, PROGRAM, CONF);
            std::fs::create_dir_all(dir).map_err(|e| io_error("mkdir", e))?;
            write_conf(dir, conf)?;
            let _ = std::fs::remove_file(dir.join("pid"));
            let (conf, pid, log) = (dir.join(CONF), dir.join("pid"), dir.join("log"));
            let args = [
                "-C",
                &conf.to_string_lossy(),
                "-p",
                &pid.to_string_lossy(),
                "-m",
                "logfile",
                "-l",
                &log.to_string_lossy(),
            ]
            .map(|a| a.to_string());
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            spawn_in(netns, dir, PROGRAM, &args)?;
            tracing::info!(%netns, "started radvd");
        }
        RaOp::Reload { netns, dir, conf } => {
            let dir = Path::new(dir);
            write_conf(dir, conf)?;
            if let Some(pid) = running_pid(dir, PROGRAM, CONF) {
                signal(pid, "-HUP");
            }
            tracing::info!(%netns, "reloaded radvd");
        }
        RaOp::Stop { netns, dir } => {
            let dir = Path::new(dir);
            stop(dir, PROGRAM, CONF);
            std::fs::remove_dir_all(dir).map_err(|e| io_error("rm", e))?;
            tracing::info!(%netns, "stopped radvd");
        }
    }
    Ok(())
}

/// Applies the operations in order; returns the errors (the next reconcile retries).
pub fn apply(ops: &[RaOp]) -> Vec<String> {
    apply_all(ops, apply_one)
}
