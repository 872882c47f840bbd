//! Daemons the agent runs inside namespaces (dnsmasq, radvd), each with its files and pid
//! file in a state directory of its own. A process counts as running only when the pid file
//! names a live process of the right program started with that directory's configuration,
//! so a stale pid is never signalled.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::AgentError;

pub(crate) fn io_error(what: &str, e: std::io::Error) -> AgentError {
    AgentError::Command {
        command: what.to_string(),
        message: e.to_string(),
    }
}

/// A file of `dir` (empty when missing).
pub(crate) fn read(dir: &Path, name: &str) -> String {
    std::fs::read_to_string(dir.join(name)).unwrap_or_default()
}

/// The pid of the `program` started with the configuration file `dir/conf`, if it runs.
pub(crate) fn running_pid(dir: &Path, program: &str, conf: &str) -> Option<u32> {
    let pid: u32 = read(dir, "pid").trim().parse().ok()?;
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let cmdline = String::from_utf8_lossy(&cmdline);
    let conf = dir.join(conf);
    (cmdline.contains(program) && cmdline.contains(conf.to_string_lossy().as_ref())).then_some(pid)
}

pub(crate) fn signal(pid: u32, sig: &str) -> bool {
    std::process::Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .is_ok_and(|s| s.success())
}

/// Stops the `program` of `dir` (if it runs) and waits for it to exit.
pub(crate) fn stop(dir: &Path, program: &str, conf: &str) {
    let Some(pid) = running_pid(dir, program, conf) else {
        return;
    };
    signal(pid, "-TERM");
    let deadline = Instant::now() + Duration::from_secs(5);
    while Path::new(&format!("/proc/{pid}")).exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Replaces a file of `dir` atomically.
pub(crate) fn write(dir: &Path, name: &str, text: &str) -> Result<(), AgentError> {
    let path = dir.join(name);
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, text).map_err(|e| io_error(&format!("write {}", path.display()), e))?;
    std::fs::rename(&tmp, &path).map_err(|e| io_error(&format!("rename {}", path.display()), e))
}

/// Runs `program args` inside `netns` and waits for it (the daemons fork into the
/// background). Its error output goes to `dir/stderr`, not to a pipe a forked daemon could
/// hold open; on failure that output is the error.
pub(crate) fn spawn_in(
    netns: &str,
    dir: &Path,
    program: &str,
    args: &[&str],
) -> Result<(), AgentError> {
    let errors = dir.join("stderr");
    let stderr = std::fs::File::create(&errors).map_err(|e| io_error("stderr file", e))?;
    let status = std::process::Command::new("ip")
        .args(["netns", "exec", netns, program])
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(stderr)
        .status()
        .map_err(|e| io_error(program, e))?;
    if !status.success() {
        return Err(AgentError::Command {
            command: format!("ip netns exec {netns} {program} {}", args.join(" ")),
            message: read(dir, "stderr").trim().to_string(),
        });
    }
    Ok(())
}

/// The state directories under `root` that belong to this agent (named after its
/// namespaces), by namespace.
pub(crate) fn state_dirs(root: &Path, netns_prefix: &str) -> Vec<(String, std::path::PathBuf)> {
    let Ok(entries) = std::fs::read_dir(root) else {
        return Vec::new();
    };
    entries
        .flatten()
        .map(|e| (e.file_name().to_string_lossy().into_owned(), e.path()))
        .filter(|(name, _)| neutrino_dataplane::names::is_managed_netns(netns_prefix, name))
        .collect()
}

/// Applies operations in order with `apply_one`; returns the errors (the next reconcile
/// retries).
pub(crate) fn apply_all<T>(
    ops: &[T],
    apply_one: impl Fn(&T) -> Result<(), AgentError>,
) -> Vec<String> {
    ops.iter()
        .filter_map(|op| apply_one(op).err().map(|e| e.to_string()))
        .collect()
}
