//! DHCP servers on the host: one `dnsmasq` per `qdhcp-` namespace, its files and pid file in
//! `<state dir>/dhcp/<namespace>/`. Observation reads the files back and checks that the pid
//! file names a live dnsmasq started with that configuration (so a stale pid is never
//! signalled); application writes files, starts, HUPs and stops processes.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use neutrino_dataplane::dhcp::{DhcpFiles, DhcpOp, ObservedDhcp};
use neutrino_dataplane::names;

use crate::AgentError;

fn io_error(what: &str, e: std::io::Error) -> AgentError {
    AgentError::Command {
        command: what.to_string(),
        message: e.to_string(),
    }
}

fn read(dir: &Path, name: &str) -> String {
    std::fs::read_to_string(dir.join(name)).unwrap_or_default()
}

/// The pid of the dnsmasq serving `dir`, if it runs.
fn running_pid(dir: &Path) -> Option<u32> {
    let pid: u32 = read(dir, "pid").trim().parse().ok()?;
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let cmdline = String::from_utf8_lossy(&cmdline);
    let conf = dir.join("conf");
    (cmdline.contains("dnsmasq") && cmdline.contains(conf.to_string_lossy().as_ref()))
        .then_some(pid)
}

/// The servers found under `root`, by namespace (only this agent's namespaces).
pub fn observe(root: &Path, netns_prefix: &str) -> BTreeMap<String, ObservedDhcp> {
    let mut out = BTreeMap::new();
    let Ok(entries) = std::fs::read_dir(root) else {
        return out;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !names::is_managed_netns(netns_prefix, &name) {
            continue;
        }
        let dir = entry.path();
        let files = DhcpFiles {
            conf: read(&dir, "conf"),
            hosts: read(&dir, "hosts"),
            opts: read(&dir, "opts"),
        };
        let running = running_pid(&dir).is_some();
        out.insert(name, ObservedDhcp { files, running });
    }
    out
}

fn signal(pid: u32, sig: &str) -> bool {
    std::process::Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .is_ok_and(|s| s.success())
}

/// Stops the server of `dir` (if it runs) and waits for it to exit.
fn stop(dir: &Path) {
    let Some(pid) = running_pid(dir) else {
        return;
    };
    signal(pid, "-TERM");
    let deadline = Instant::now() + Duration::from_secs(5);
    while Path::new(&format!("/proc/{pid}")).exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn write(dir: &Path, name: &str, text: &str) -> Result<(), AgentError> {
    let path = dir.join(name);
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, text).map_err(|e| io_error(&format!("write {}", path.display()), e))?;
    std::fs::rename(&tmp, &path).map_err(|e| io_error(&format!("rename {}", path.display()), e))
}

fn apply_one(op: &DhcpOp) -> Result<(), AgentError> {
    match op {
        DhcpOp::Start { netns, dir, files } => {
            let dir = Path::new(dir);
            stop(dir);
            std::fs::create_dir_all(dir).map_err(|e| io_error("mkdir", e))?;
            write(dir, "hosts", &files.hosts)?;
            write(dir, "opts", &files.opts)?;
            write(dir, "conf", &files.conf)?;
            let conf = format!("--conf-file={}", dir.join("conf").display());
            let out = std::process::Command::new("ip")
                .args(["netns", "exec", netns, "dnsmasq", &conf])
                .stdin(std::process::Stdio::null())
                .output()
                .map_err(|e| io_error("dnsmasq", e))?;
            if !out.status.success() {
                return Err(AgentError::Command {
                    command: format!("ip netns exec {netns} dnsmasq {conf}"),
                    message: String::from_utf8_lossy(&out.stderr).trim().to_string(),
                });
            }
            tracing::info!(%netns, "started dnsmasq");
        }
        DhcpOp::Reload { netns, dir, files } => {
            let dir = Path::new(dir);
            write(dir, "hosts", &files.hosts)?;
            write(dir, "opts", &files.opts)?;
            if let Some(pid) = running_pid(dir) {
                signal(pid, "-HUP");
            }
            tracing::info!(%netns, "reloaded dnsmasq");
        }
        DhcpOp::Stop { netns, dir } => {
            let dir = Path::new(dir);
            stop(dir);
            std::fs::remove_dir_all(dir).map_err(|e| io_error("rm", e))?;
            tracing::info!(%netns, "stopped dnsmasq");
        }
    }
    Ok(())
}

/// Applies the operations in order; returns the errors (the next reconcile retries).
pub fn apply(ops: &[DhcpOp]) -> Vec<String> {
    ops.iter()
        .filter_map(|op| apply_one(op).err().map(|e| e.to_string()))
        .collect()
}
