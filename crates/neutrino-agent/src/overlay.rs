//! The encrypted overlay (`neutrino agent --encrypt-overlay`): host-to-host VXLAN through a
//! userspace WireGuard device (boringtun over a TUN) in the dataplane namespace.
//!
//! The host keeps an x25519 key pair in its state directory (`overlay-key`, mode 0600) and
//! reports the public key and UDP port as `configurations.wireguard`; every agent learns the
//! others' keys from the change feed. The device runs as a child process
//! (`neutrino overlay-device`, started through `ip netns exec`, outliving an agent restart
//! like `bird`) and is configured through its UAPI socket (the `wg` text protocol). Policy
//! routing sends VXLAN (UDP to the VXLAN port) toward the peers' tunnel IPs into the TUN
//! (table [`TABLE`]); VXLAN toward hosts without a key is blackholed, and an nft table drops
//! VXLAN that arrives from anywhere but the TUN, so nothing flows in clear.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::IpAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use boringtun::x25519::{PublicKey, StaticSecret};
use neutrino_dataplane::overlay::{Peer, PeerOp};
use serde_json::{json, Value};

use crate::AgentError;

/// The routing table VXLAN toward the peers is looked up in.
pub const TABLE: u32 = 51820;
/// Priority of the rule that sends VXLAN there (before `main`).
const RULE_PRIORITY: u32 = 10000;
/// The nft table that drops VXLAN arriving in clear.
const NFT_TABLE: &str = "neutrino_overlay";
/// MTU of the TUN: as the underlay, so full-size VXLAN packets go in whole (the encrypted
/// UDP, 60 bytes longer, is fragmented on the underlay instead).
const TUN_MTU: u32 = 1500;
/// Metric of the blackhole under each peer's route through the TUN.
const BLACKHOLE_METRIC: u32 = 4096;
/// Keepalive toward every peer (seconds): keeps sessions (and NAT bindings) warm.
const KEEPALIVE: u32 = 25;

fn err(command: impl Into<String>, message: impl ToString) -> AgentError {
    AgentError::Command {
        command: command.into(),
        message: message.to_string(),
    }
}

/// This host's WireGuard key pair.
#[derive(Clone)]
pub struct Keys {
    secret: [u8; 32],
    /// The public key, base64.
    pub public: String,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keys")
            .field("public", &self.public)
            .finish()
    }
}

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::STANDARD
}

/// Loads the key pair from `state_dir/overlay-key` (the private key, base64), making one
/// (mode 0600) when there is none.
pub fn load_or_create_keys(state_dir: &Path) -> Result<Keys, AgentError> {
    let path = state_dir.join("overlay-key");
    let secret: [u8; 32] = match std::fs::read_to_string(&path) {
        Ok(text) => b64()
            .decode(text.trim())
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| err(path.display().to_string(), "not a base64 x25519 key"))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut bytes = [0u8; 32];
            rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut bytes);
            // Clamped as `wg genkey` does.
            bytes[0] &= 248;
            bytes[31] = (bytes[31] & 127) | 64;
            std::fs::create_dir_all(state_dir)
                .map_err(|e| err(format!("mkdir {}", state_dir.display()), e))?;
            let tmp = state_dir.join(".overlay-key.tmp");
            let _ = std::fs::remove_file(&tmp);
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp)
                .map_err(|e| err(format!("create {}", tmp.display()), e))?;
            f.write_all(format!("{}\n", b64().encode(bytes)).as_bytes())
                .and_then(|()| f.sync_all())
                .map_err(|e| err(format!("write {}", tmp.display()), e))?;
            std::fs::rename(&tmp, &path)
                .map_err(|e| err(format!("rename {}", path.display()), e))?;
            tracing::info!(path = %path.display(), "made the overlay key pair");
            bytes
        }
        Err(e) => return Err(err(format!("read {}", path.display()), e)),
    };
    let public = PublicKey::from(&StaticSecret::from(secret));
    Ok(Keys {
        secret,
        public: b64().encode(public.as_bytes()),
    })
}

/// Replaces the key pair: the old private key moves to `overlay-key.old`, a new one is made.
/// The device takes the new key at the next reconcile and the peers when they see it in the
/// feed; flows through this host pause for that long (TCP retransmits across it).
pub fn rotate_keys(state_dir: &Path) -> Result<Keys, AgentError> {
    let path = state_dir.join("overlay-key");
    if path.exists() {
        let old = state_dir.join("overlay-key.old");
        std::fs::rename(&path, &old).map_err(|e| err(format!("rename {}", path.display()), e))?;
    }
    let keys = load_or_create_keys(state_dir)?;
    tracing::info!(public_key = %keys.public, "rotated the overlay key pair");
    Ok(keys)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    let pairs = text.as_bytes().chunks_exact(2);
    if !pairs.remainder().is_empty() {
        return None;
    }
    pairs
        .map(|p| u8::from_str_radix(std::str::from_utf8(p).ok()?, 16).ok())
        .collect()
}

fn key_hex(b64_key: &str) -> Option<String> {
    b64().decode(b64_key).ok().map(|b| hex(&b))
}

fn key_b64(hex_key: &str) -> Option<String> {
    unhex(hex_key).map(|b| b64().encode(b))
}

fn host_len(ip: IpAddr) -> u8 {
    if ip.is_ipv4() {
        32
    } else {
        128
    }
}

/// What a device reports to `get=1`.
#[derive(Debug, Default, PartialEq)]
pub struct DeviceState {
    /// The device's public key, hex (empty when no private key is set).
    pub own_public_key: String,
    /// Listen port.
    pub listen_port: u16,
    /// Peers by public key (base64).
    pub peers: BTreeMap<String, Peer>,
    /// Seconds since the latest handshake, by peer (peers without one are absent).
    pub handshakes: BTreeMap<String, u64>,
}

/// Parses a UAPI `get=1` answer.
pub fn parse_get(text: &str) -> DeviceState {
    let mut state = DeviceState::default();
    let mut current: Option<(String, Option<std::net::SocketAddr>)> = None;
    let flush = |state: &mut DeviceState,
                 cur: &mut Option<(String, Option<std::net::SocketAddr>)>| {
        if let Some((key, Some(ep))) = cur.take() {
            state.peers.insert(
                key.clone(),
                Peer {
                    public_key: key,
                    tunnel_ip: ep.ip(),
                    port: ep.port(),
                },
            );
        }
    };
    for line in text.lines() {
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        match k {
            "own_public_key" => state.own_public_key = v.to_string(),
            "listen_port" => state.listen_port = v.parse().unwrap_or(0),
            "public_key" => {
                flush(&mut state, &mut current);
                current = key_b64(v).map(|k| (k, None));
            }
            "endpoint" => {
                if let Some(cur) = current.as_mut() {
                    cur.1 = v.parse().ok();
                }
            }
            "last_handshake_time_sec" => {
                if let (Some((key, _)), Ok(t)) = (current.as_ref(), v.parse()) {
                    state.handshakes.insert(key.clone(), t);
                }
            }
            _ => {}
        }
    }
    flush(&mut state, &mut current);
    state
}

/// The UAPI `set=1` text for the device settings (when given) and peer operations.
pub fn render_set(device: Option<(&Keys, Option<u16>)>, ops: &[PeerOp]) -> String {
    let mut text = String::from("set=1\n");
    if let Some((keys, port)) = device {
        text += &format!("private_key={}\n", hex(&keys.secret));
        if let Some(port) = port {
            text += &format!("listen_port={port}\n");
        }
    }
    for op in ops {
        match op {
            PeerOp::Set(p) => {
                let Some(key) = key_hex(&p.public_key) else {
                    continue;
                };
                let endpoint = std::net::SocketAddr::new(p.tunnel_ip, p.port);
                text += &format!(
                    "public_key={key}\nendpoint={endpoint}\nreplace_allowed_ips=true\n\
                     allowed_ip={}/{}\npersistent_keepalive_interval={KEEPALIVE}\n",
                    p.tunnel_ip,
                    host_len(p.tunnel_ip)
                );
            }
            PeerOp::Remove(k) => {
                if let Some(key) = key_hex(k) {
                    text += &format!("public_key={key}\nremove=true\n");
                }
            }
        }
    }
    text + "\n"
}

/// One UAPI exchange with device `name`: sends `request`, returns the answer (up to the
/// `errno=` line, which must be 0).
fn uapi(name: &str, request: &str) -> Result<String, AgentError> {
    let path = format!("/var/run/wireguard/{name}.sock");
    let what = || format!("uapi {path}");
    let mut stream = std::os::unix::net::UnixStream::connect(&path).map_err(|e| err(what(), e))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(3)))
        .map_err(|e| err(what(), e))?;
    stream
        .write_all(request.as_bytes())
        .map_err(|e| err(what(), e))?;
    let mut answer = String::new();
    for line in BufReader::new(stream).lines() {
        let line = line.map_err(|e| err(what(), e))?;
        if let Some(code) = line.strip_prefix("errno=") {
            if code != "0" {
                return Err(err(what(), format!("errno={code}")));
            }
            return Ok(answer);
        }
        answer += &line;
        answer.push('\n');
    }
    Err(err(what(), "no answer"))
}

/// Runs `program args` in `netns` (or here); returns stdout, or the error output.
fn run_in(netns: Option<&str>, program: &str, args: &[&str]) -> Result<String, AgentError> {
    let mut cmd = match netns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns, program]);
            c
        }
        None => Command::new(program),
    };
    let out = cmd
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| err(program, e))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(err(
            format!("{program} {}", args.join(" ")),
            String::from_utf8_lossy(&out.stderr).trim(),
        ))
    }
}

/// The overlay of this host: the device process, its peers, the routing and the filter.
pub struct Overlay {
    netns: Option<String>,
    dir: PathBuf,
    /// The device (TUN) name: unique per host on the machine (the UAPI socket path is global).
    pub name: String,
    keys: Result<Keys, String>,
    port: u16,
    tunnel_ip: IpAddr,
    vxlan_port: u16,
    child: Option<std::process::Child>,
    /// The last problem, cleared by a reconcile that succeeds.
    error: Option<String>,
    peers: usize,
    handshakes: usize,
}

impl Overlay {
    /// The overlay of an agent with `state_dir` (keys already loaded, or why not).
    pub fn new(
        netns: Option<String>,
        state_dir: &Path,
        identity: &str,
        keys: Result<Keys, String>,
        port: u16,
        tunnel_ip: IpAddr,
        vxlan_port: u16,
    ) -> Overlay {
        // FNV-1a of the host identity: a short name unique per agent on a machine.
        let hash = identity.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
        });
        let name = format!("nwg{:08x}", hash as u32);
        Overlay {
            dir: state_dir.join("overlay").join(&name),
            netns,
            name,
            error: keys.as_ref().err().cloned(),
            keys,
            port,
            tunnel_ip,
            vxlan_port,
            child: None,
            peers: 0,
            handshakes: 0,
        }
    }

    /// For the status file.
    pub fn status(&self) -> Value {
        json!({
            "device": self.name,
            "public_key": self.keys.as_ref().ok().map(|k| k.public.clone()),
            "port": self.port,
            "peers": self.peers,
            "peers_with_handshake": self.handshakes,
            "error": self.error,
        })
    }

    fn ns(&self) -> Option<&str> {
        self.netns.as_deref()
    }

    /// The pid of our device process, if it runs.
    fn running_pid(&mut self) -> Option<u32> {
        if let Some(child) = self.child.as_mut() {
            if let Ok(Some(status)) = child.try_wait() {
                tracing::warn!(device = %self.name, %status, "the overlay device exited");
                self.child = None;
            }
        }
        let pid: u32 = crate::daemon::read(&self.dir, "pid").trim().parse().ok()?;
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        (cmdline.contains("overlay-device") && cmdline.contains(&self.name)).then_some(pid)
    }

    /// Starts the device process (when it does not run) and waits for its UAPI socket.
    fn ensure_device(&mut self) -> Result<(), AgentError> {
        if self.running_pid().is_some() {
            return Ok(());
        }
        std::fs::create_dir_all(&self.dir)
            .map_err(|e| err(format!("mkdir {}", self.dir.display()), e))?;
        let exe = std::env::current_exe().map_err(|e| err("current_exe", e))?;
        let log = std::fs::File::create(self.dir.join("log"))
            .map_err(|e| err("overlay device log", e))?;
        let log2 = log.try_clone().map_err(|e| err("overlay device log", e))?;
        let mut cmd = match self.ns() {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(&exe);
                c
            }
            None => Command::new(&exe),
        };
        cmd.args(["overlay-device", "--name", &self.name])
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            // Its own process group: it outlives the agent (a restart keeps the tunnel).
            .process_group(0);
        let child = cmd.spawn().map_err(|e| err("overlay-device", e))?;
        crate::daemon::write(&self.dir, "pid", &child.id().to_string())?;
        tracing::info!(device = %self.name, pid = child.id(), "started the overlay device");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if uapi(&self.name, "get=1\n\n").is_ok() {
                return Ok(());
            }
            let exited = !matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)));
            if exited || Instant::now() > deadline {
                let log = crate::daemon::read(&self.dir, "log");
                return Err(err(
                    "overlay-device",
                    format!("the device did not come up: {}", log.trim()),
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Brings the device, its peers, the routes and the filter to `want`. Blocking (run it
    /// on a blocking thread). Errors are kept for the status and returned.
    pub fn reconcile(&mut self, want: &neutrino_dataplane::overlay::Overlay) -> Result<(), String> {
        let result = self.reconcile_inner(want);
        self.error = result.as_ref().err().cloned();
        result
    }

    fn reconcile_inner(
        &mut self,
        want: &neutrino_dataplane::overlay::Overlay,
    ) -> Result<(), String> {
        let mut errors = Vec::new();
        // The filter first: VXLAN in clear is refused even when the device cannot run.
        let present = run_in(self.ns(), "nft", &["list", "table", "inet", NFT_TABLE])
            .is_ok_and(|t| t.contains(&format!("\"{}\"", self.name)));
        if !present {
            if let Err(e) = self.install_filter() {
                errors.push(e.to_string());
            }
        }
        let up = match self.keys.clone() {
            Err(e) => Err(e),
            Ok(keys) => self.configure(&keys, want).map_err(|e| e.to_string()),
        };
        if let Err(e) = &up {
            errors.push(e.clone());
        }
        if let Err(e) = self.route(want, up.is_ok()) {
            errors.push(e.to_string());
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors.join("; "))
        }
    }

    /// Device up with this host's key and port and exactly the wanted peers.
    fn configure(
        &mut self,
        keys: &Keys,
        want: &neutrino_dataplane::overlay::Overlay,
    ) -> Result<(), AgentError> {
        self.ensure_device()?;
        let have = parse_get(&uapi(&self.name, "get=1\n\n")?);
        let device = (Some(&have.own_public_key) != key_hex(&keys.public).as_ref()
            || have.listen_port != self.port)
            .then_some((keys, (have.listen_port != self.port).then_some(self.port)));
        let ops = neutrino_dataplane::overlay::plan(&want.peers, &have.peers);
        if device.is_some() || !ops.is_empty() {
            for op in &ops {
                tracing::info!(device = %self.name, %op, "overlay peer");
            }
            uapi(&self.name, &render_set(device, &ops))?;
        }
        self.peers = want.peers.len();
        self.handshakes = have
            .handshakes
            .keys()
            .filter(|k| want.peers.contains_key(*k))
            .count();
        let ns = self.ns();
        run_in(
            ns,
            "ip",
            &["link", "set", &self.name, "mtu", &TUN_MTU.to_string(), "up"],
        )?;
        // Decrypted VXLAN comes in on the TUN from a source routed via the underlay: the
        // reverse-path check must not drop it (an interface without an address fails even
        // the loose check; a strict `all` setting still does).
        let addr = format!("{}/{}", self.tunnel_ip, host_len(self.tunnel_ip));
        run_in(ns, "ip", &["addr", "replace", &addr, "dev", &self.name])?;
        if self.tunnel_ip.is_ipv4() {
            run_in(
                ns,
                "sh",
                &[
                    "-c",
                    &format!("echo 0 > /proc/sys/net/ipv4/conf/{}/rp_filter", self.name),
                ],
            )?;
        }
        Ok(())
    }

    /// Table [`TABLE`]: each peer's tunnel IP through the TUN (while the device runs) over a
    /// blackhole of lower preference (so VXLAN to it never falls back to the underlay in
    /// clear, even when the TUN goes away); hosts without a key only the blackhole. And the
    /// rule that sends VXLAN there.
    fn route(
        &self,
        want: &neutrino_dataplane::overlay::Overlay,
        up: bool,
    ) -> Result<(), AgentError> {
        let ns = self.ns();
        let table = TABLE.to_string();
        let rules = run_in(ns, "ip", &["rule", "show", "table", &table])?;
        let dport = self.vxlan_port.to_string();
        if !rules.contains(&format!("dport {dport}")) {
            let prio = RULE_PRIORITY.to_string();
            for family in ["-4", "-6"] {
                run_in(
                    ns,
                    "ip",
                    &[
                        family, "rule", "add", "priority", &prio, "ipproto", "udp", "dport",
                        &dport, "lookup", &table,
                    ],
                )?;
            }
        }
        // (destination, through the TUN) pairs.
        let mut wanted = std::collections::BTreeSet::new();
        for p in want.peers.values() {
            let dst = format!("{}/{}", p.tunnel_ip, host_len(p.tunnel_ip));
            if up {
                wanted.insert((dst.clone(), true));
            }
            wanted.insert((dst, false));
        }
        for ip in &want.unkeyed {
            wanted.insert((format!("{ip}/{}", host_len(*ip)), false));
        }
        let mut have = std::collections::BTreeSet::new();
        for family in ["-4", "-6"] {
            // A table without routes does not exist yet.
            let text = match run_in(ns, "ip", &[family, "-j", "route", "show", "table", &table]) {
                Err(e) if e.to_string().contains("does not exist") => String::new(),
                other => other?,
            };
            let routes: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
            for r in routes.as_array().into_iter().flatten() {
                let Some(dst) = r["dst"].as_str() else {
                    continue;
                };
                let dst = match dst.parse::<IpAddr>() {
                    Ok(ip) => format!("{ip}/{}", host_len(ip)),
                    Err(_) => dst.to_string(),
                };
                let via_tun = r["dev"].as_str() == Some(self.name.as_str());
                let blackhole = r["type"].as_str() == Some("blackhole")
                    && r["metric"].as_u64() == Some(u64::from(BLACKHOLE_METRIC));
                if via_tun || blackhole {
                    have.insert((dst, via_tun));
                } else {
                    // Anything else in our table goes.
                    let mut args = vec!["route", "del", "table", &table];
                    let metric = r["metric"].as_u64().unwrap_or(0).to_string();
                    if let Some(t) = r["type"].as_str() {
                        args.push(t);
                    }
                    args.extend([dst.as_str(), "metric", metric.as_str()]);
                    run_in(ns, "ip", &args)?;
                }
            }
        }
        let metric = BLACKHOLE_METRIC.to_string();
        for (dst, via_tun) in wanted.difference(&have) {
            if *via_tun {
                run_in(
                    ns,
                    "ip",
                    &["route", "replace", dst, "dev", &self.name, "table", &table],
                )?;
            } else {
                run_in(
                    ns,
                    "ip",
                    &[
                        "route",
                        "replace",
                        "blackhole",
                        dst,
                        "table",
                        &table,
                        "metric",
                        &metric,
                    ],
                )?;
            }
        }
        for (dst, via_tun) in have.difference(&wanted) {
            if *via_tun {
                run_in(
                    ns,
                    "ip",
                    &["route", "del", dst, "dev", &self.name, "table", &table],
                )?;
            } else {
                run_in(
                    ns,
                    "ip",
                    &[
                        "route",
                        "del",
                        "blackhole",
                        dst,
                        "table",
                        &table,
                        "metric",
                        &metric,
                    ],
                )?;
            }
        }
        Ok(())
    }

    /// The nft table dropping VXLAN that does not come out of the TUN.
    fn install_filter(&self) -> Result<(), AgentError> {
        let script = format!(
            "table inet {NFT_TABLE}\ndelete table inet {NFT_TABLE}\n\
             table inet {NFT_TABLE} {{\n\
             \tchain input {{\n\
             \t\ttype filter hook input priority -10; policy accept;\n\
             \t\tiifname != \"{}\" udp dport {} counter drop comment \"VXLAN in clear\"\n\
             \t}}\n}}\n",
            self.name, self.vxlan_port
        );
        let mut cmd = match self.ns() {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, "nft", "-f", "-"]);
                c
            }
            None => {
                let mut c = Command::new("nft");
                c.args(["-f", "-"]);
                c
            }
        };
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| err("nft", e))?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin
                .write_all(script.as_bytes())
                .map_err(|e| err("nft", e))?;
        }
        let out = child.wait_with_output().map_err(|e| err("nft", e))?;
        if !out.status.success() {
            return Err(err("nft -f -", String::from_utf8_lossy(&out.stderr).trim()));
        }
        Ok(())
    }
}

/// An agent without `--encrypt-overlay` removes what an earlier run with it left: the device
/// processes (by their pid files under `state_dir/overlay/`), the rules, table [`TABLE`] and
/// the nft table. Nothing when there is no `overlay` directory.
pub fn remove_leftovers(netns: Option<&str>, state_dir: &Path) {
    let root = state_dir.join("overlay");
    let Ok(entries) = std::fs::read_dir(&root) else {
        return;
    };
    tracing::info!("not encrypting: removing the encrypted overlay an earlier run left");
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let dir = entry.path();
        let pid: Option<u32> = crate::daemon::read(&dir, "pid").trim().parse().ok();
        let cmdline = pid
            .and_then(|p| std::fs::read(format!("/proc/{p}/cmdline")).ok())
            .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
            .unwrap_or_default();
        if let Some(pid) =
            pid.filter(|_| cmdline.contains("overlay-device") && cmdline.contains(&name))
        {
            crate::daemon::signal(pid, "-TERM");
        }
    }
    let table = TABLE.to_string();
    for family in ["-4", "-6"] {
        while run_in(netns, "ip", &[family, "rule", "del", "table", &table]).is_ok() {}
        let _ = run_in(netns, "ip", &[family, "route", "flush", "table", &table]);
    }
    let _ = run_in(netns, "nft", &["delete", "table", "inet", NFT_TABLE]);
    if let Err(e) = std::fs::remove_dir_all(&root) {
        tracing::warn!(error = %e, "cannot remove {}", root.display());
    }
}

/// `neutrino overlay-device --name NAME`: runs the userspace WireGuard device (a TUN named
/// `name` in the current network namespace, its UAPI socket at
/// `/var/run/wireguard/NAME.sock`) until the TUN or the socket disappears or a signal ends
/// the process.
pub fn run_device(name: &str) -> Result<(), AgentError> {
    let config = boringtun::device::DeviceConfig {
        n_threads: 2,
        use_connected_socket: true,
        use_multi_queue: true,
        uapi_fd: -1,
    };
    let mut handle = boringtun::device::DeviceHandle::new(name, config).map_err(|e| {
        err(
            format!("wireguard device {name}"),
            format!("{e:?} (does /dev/net/tun exist here?)"),
        )
    })?;
    tracing::info!(device = name, "overlay device running");
    let sock = PathBuf::from(format!("/var/run/wireguard/{name}.sock"));
    let link = PathBuf::from(format!("/sys/class/net/{name}"));
    // The device's threads end on SIGTERM/SIGINT or when its socket is removed.
    let waiter = std::thread::spawn(move || {
        handle.wait();
        handle
    });
    loop {
        std::thread::sleep(Duration::from_millis(500));
        if waiter.is_finished() {
            // Dropping the handle removes the socket.
            drop(waiter.join());
            tracing::info!(device = name, "overlay device stopped");
            return Ok(());
        }
        if !link.exists() {
            // The namespace (or the TUN) went away under it.
            let _ = std::fs::remove_file(&sock);
            tracing::info!(device = name, "the TUN is gone: exiting");
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_made_once_and_private() {
        let dir = std::env::temp_dir().join(format!("ovl-key-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let a = load_or_create_keys(&dir).unwrap();
        let b = load_or_create_keys(&dir).unwrap();
        assert_eq!(a.public, b.public);
        assert!(neutrino_dataplane::overlay::valid_key(&a.public));
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(dir.join("overlay-key"))
                .unwrap()
                .permissions(),
        );
        assert_eq!(mode & 0o777, 0o600);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn rotation_makes_a_new_pair() {
        let dir = std::env::temp_dir().join(format!("ovl-rot-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let a = load_or_create_keys(&dir).unwrap();
        let b = rotate_keys(&dir).unwrap();
        assert_ne!(a.public, b.public);
        assert_eq!(load_or_create_keys(&dir).unwrap().public, b.public);
        assert!(dir.join("overlay-key.old").exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn uapi_text_round_trips() {
        let keys = Keys {
            secret: [7; 32],
            public: String::new(),
        };
        let peer = Peer {
            public_key: b64().encode([1u8; 32]),
            tunnel_ip: "198.18.0.2".parse().unwrap(),
            port: 51820,
        };
        let text = render_set(
            Some((&keys, Some(51820))),
            &[
                PeerOp::Set(peer.clone()),
                PeerOp::Remove(b64().encode([2u8; 32])),
            ],
        );
        assert!(text.starts_with("set=1\nprivate_key=0707"));
        assert!(text.contains("\nlisten_port=51820\n"));
        assert!(text.contains("endpoint=198.18.0.2:51820\nreplace_allowed_ips=true\n"));
        assert!(text.contains("allowed_ip=198.18.0.2/32\n"));
        assert!(text.contains(&format!("public_key={}\nremove=true\n", hex(&[2; 32]))));
        assert!(text.ends_with("\n\n"));
        let get = format!(
            "own_public_key={}\nlisten_port=51820\npublic_key={}\nendpoint=198.18.0.2:51820\n\
             allowed_ip=198.18.0.2/32\nlast_handshake_time_sec=17\n",
            hex(&[7; 32]),
            hex(&[1; 32])
        );
        let state = parse_get(&get);
        assert_eq!(state.own_public_key, hex(&[7; 32]));
        assert_eq!(state.listen_port, 51820);
        assert_eq!(state.peers[&peer.public_key], peer);
        assert_eq!(state.handshakes[&peer.public_key], 17);
    }
}
