//! The BGP speakers of a `neutrino agent --bgp`: one `bird` (BIRD 2) per agent, in the
//! dataplane namespace when there is one, with its configuration, control socket, pid file
//! and log in `<state dir>/bgp/`. Observation reads the configuration back and checks that
//! the pid file names a live `bird` started with it that answers on its control socket;
//! application writes the file, starts `bird`, has it load a changed file (`birdc
//! configure`) and stops it.
//!
//! `bird` outlives the agent: it runs detached (a session and process group of its own, its
//! pid file and control socket in the state directory), an agent that stops leaves it
//! running with its sessions, and the next agent adopts it (same configuration: nothing is
//! done; another: `birdc configure`). It stops when no speaker is bound here any more, or
//! when the agent runs without `--bgp`.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use neutrino_dataplane::bgp::{BirdOp, ObservedBird};

use crate::daemon::{io_error, read, running_pid, stop as stop_daemon, write};
use crate::AgentError;

const PROGRAM: &str = "bird";
const CONF: &str = "bird.conf";
const SOCKET: &str = "bird.ctl";

/// Where the agent's `bird` lives and runs.
#[derive(Clone, Debug)]
pub struct Bird {
    /// `<state dir>/bgp`.
    pub dir: PathBuf,
    /// The namespace `bird` runs in (`--dataplane-netns`), if any.
    pub netns: Option<String>,
}

impl Bird {
    /// The log file the configuration names.
    pub fn log_path(&self) -> String {
        self.dir.join("bird.log").to_string_lossy().into_owned()
    }

    /// What runs now: a `bird` counts as running when its pid file names a live `bird`
    /// started with our configuration file and it answers `birdc show status` on our
    /// socket (a hung one is started again).
    pub fn observe(&self) -> ObservedBird {
        let running = running_pid(&self.dir, PROGRAM, CONF).is_some()
            && self.birdc(&["show", "status"]).is_ok();
        ObservedBird {
            conf: read(&self.dir, CONF),
            running,
        }
    }

    /// `program args`, inside the namespace when there is one.
    fn command(&self, program: &str) -> Command {
        match &self.netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, program]);
                c
            }
            None => Command::new(program),
        }
    }

    fn socket(&self) -> String {
        self.dir.join(SOCKET).to_string_lossy().into_owned()
    }

    /// Runs `birdc -s <socket> args` and returns its output.
    pub fn birdc(&self, args: &[&str]) -> Result<String, AgentError> {
        let out = self
            .command("birdc")
            .args(["-s", &self.socket()])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| io_error("birdc", e))?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        if !out.status.success() {
            return Err(AgentError::Command {
                command: format!("birdc {}", args.join(" ")),
                message: format!("{text}{}", String::from_utf8_lossy(&out.stderr))
                    .trim()
                    .to_string(),
            });
        }
        Ok(text)
    }

    fn start(&self, conf: &str) -> Result<(), AgentError> {
        stop_daemon(&self.dir, PROGRAM, CONF);
        std::fs::create_dir_all(&self.dir).map_err(|e| io_error("mkdir", e))?;
        write(&self.dir, CONF, conf)?;
        let _ = std::fs::remove_file(self.dir.join("pid"));
        let (conf, pid) = (self.dir.join(CONF), self.dir.join("pid"));
        let errors = self.dir.join("stderr");
        let stderr = std::fs::File::create(&errors).map_err(|e| io_error("stderr file", e))?;
        // bird forks into the background once its configuration is loaded; in a process
        // group of its own (bird also starts a session), so nothing aimed at the agent's
        // group reaches it: it outlives the agent.
        let status = self
            .command(PROGRAM)
            .process_group(0)
            .args(["-c", &conf.to_string_lossy(), "-s", &self.socket()])
            .args(["-P", &pid.to_string_lossy()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .status()
            .map_err(|e| io_error(PROGRAM, e))?;
        if !status.success() {
            return Err(AgentError::Command {
                command: format!("bird -c {}", conf.display()),
                message: read(&self.dir, "stderr").trim().to_string(),
            });
        }
        Ok(())
    }

    fn reload(&self, conf: &str) -> Result<(), AgentError> {
        write(&self.dir, CONF, conf)?;
        let out = self.birdc(&["configure"])?;
        // birdc exits 0 even when the file does not parse: its answer says.
        if !out.contains("Reconfigured") && !out.contains("Reconfiguration in progress") {
            return Err(AgentError::Command {
                command: "birdc configure".into(),
                message: out.trim().to_string(),
            });
        }
        Ok(())
    }

    /// Stops `bird` and removes its files.
    pub fn stop(&self) {
        stop_daemon(&self.dir, PROGRAM, CONF);
        let _ = std::fs::remove_dir_all(&self.dir);
    }

    /// Applies the operations in order; returns the errors (the next reconcile retries).
    pub fn apply(&self, ops: &[BirdOp]) -> Vec<String> {
        let mut errors = Vec::new();
        for op in ops {
            let result = match op {
                BirdOp::Start { conf } => self.start(conf).inspect(|()| {
                    tracing::info!(dir = %self.dir.display(), "started bird for the BGP speakers")
                }),
                BirdOp::Reload { conf } => self
                    .reload(conf)
                    .inspect(|()| tracing::info!("bird loaded the new BGP configuration")),
                BirdOp::Stop => {
                    self.stop();
                    tracing::info!("stopped bird: no BGP speaker here");
                    Ok(())
                }
            };
            if let Err(e) = result {
                errors.push(e.to_string());
            }
        }
        errors
    }
}

/// `<state dir>/bgp`.
pub fn dir(state_dir: &Path) -> PathBuf {
    state_dir.join("bgp")
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    /// BIRD itself parses what the planner renders (`bird -p`), for IPv4 with MD5 and for
    /// IPv6; skipped where bird is not installed.
    #[test]
    fn bird_parses_the_rendered_configuration() {
        let ok = std::process::Command::new("bird")
            .arg("--version")
            .output()
            .is_ok();
        if !ok {
            eprintln!("bird is not installed (apt-get install bird2): skipped");
            return;
        }
        // The route, and 20 host routes behind a second next hop (a multi-line prefix set).
        let routes = |route: &str, hop: &str| {
            let (host, other_hop) = if route.contains(':') {
                ("2001:db8:2::", "2001:db8::11")
            } else {
                ("10.0.2.", "198.18.0.11")
            };
            let mut all = vec![json!({"destination": route, "next_hop": hop})];
            for i in 1..=20 {
                let len = if route.contains(':') { 128 } else { 32 };
                all.push(json!({"destination": format!("{host}{i}/{len}"), "next_hop": other_hop}));
            }
            serde_json::Value::Array(all)
        };
        let dir = std::env::temp_dir().join(format!("neutrino-bird-parse-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for (version, peer, route, hop) in [
            (4, "198.18.0.2", "10.0.0.0/24", "198.18.0.10"),
            (6, "2001:db8::2", "2001:db8:1::/64", "2001:db8::10"),
        ] {
            let doc = json!({"bgp_speakers": [{
                "id": "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d", "local_as": 64512,
                "ip_version": version,
                "peers": [
                    {"id": "11111111-2222-4333-8444-555555555555", "peer_ip": peer,
                     "remote_as": 64513, "auth_type": "md5", "password": "s3cret"},
                    {"id": "66666666-7777-4888-8999-aaaaaaaaaaaa", "peer_ip": peer,
                     "remote_as": 64512, "auth_type": "none"},
                ],
                "advertised_routes": routes(route, hop)}]});
            let speakers = neutrino_dataplane::bgp::speakers_from_json(&doc);
            let log = dir.join("bird.log");
            let conf = neutrino_dataplane::bgp::render(
                "192.0.2.1".parse().unwrap(),
                &log.to_string_lossy(),
                &speakers,
            );
            let path = dir.join(format!("bird{version}.conf"));
            std::fs::write(&path, &conf).unwrap();
            let out = std::process::Command::new("bird")
                .args(["-p", "-c", &path.to_string_lossy()])
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}\n{conf}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
