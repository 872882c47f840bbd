//! The kernel, through iproute2: observation with `ip -j` / `bridge -j` (netlink underneath)
//! and application of a plan as `ip -batch` / `bridge -batch` runs, one process per batch.

use std::io::Write;
use std::process::{Command, Stdio};

use neutrino_dataplane::host_op::HostOp;
use neutrino_dataplane::local_ip::{LocalIpOp, RawLocalIp};
use neutrino_dataplane::observe::{RawHost, RawNamespace, Unread};
use neutrino_dataplane::qos::{QosOp, RawQos};
use neutrino_dataplane::{names, Op, Target};
use neutrino_firewall::{ObservedTables, LIST_COMMANDS};
use serde_json::Value;

use crate::AgentError;

/// What the agent needs from the kernel (a fake stands in for unit tests).
pub trait Kernel: Send + Sync {
    /// Reads the managed state (namespaces named with `netns_prefix`).
    /// What `unread` names is not read (unread namespaces are still listed in
    /// [`RawHost::listed`]).
    fn observe(&self, netns_prefix: &str, unread: &Unread) -> Result<RawHost, AgentError>;
    /// Applies operations in order; returns the error lines of failed commands (the next
    /// reconcile retries what did not take).
    fn apply(&self, ops: &[Op]) -> Result<Vec<String>, AgentError>;
    /// Announces addresses just added inside namespaces, `(namespace, interface, address)`,
    /// so neighbours update at once (a router that moved here): a gratuitous ARP per IPv4
    /// address. IPv6 addresses announce themselves (unsolicited neighbour advertisements,
    /// turned on with forwarding). Returns the error lines.
    fn announce(&self, addrs: &[(String, String, std::net::IpAddr)]) -> Vec<String> {
        let _ = addrs;
        Vec::new()
    }
    /// Reads the agent's security-group tables.
    fn observe_firewall(&self) -> Result<ObservedTables, AgentError>;
    /// Runs one security-group transaction (`nft -f`); returns its error lines.
    fn apply_firewall(&self, script: &str) -> Result<Vec<String>, AgentError>;
    /// Runs `conntrack ARGS` in the dataplane namespace; returns its output.
    fn conntrack(&self, args: &[String]) -> Result<String, AgentError>;
    /// The dataplane namespace's devices by name: interface index and carrier.
    fn links(&self) -> Result<std::collections::BTreeMap<String, LinkInfo>, AgentError>;
    /// `nft -j` listing of the steering table (empty when it does not exist).
    fn observe_sfc(&self) -> Result<String, AgentError>;
    /// Runs one steering transaction (`nft -f`); returns nft's complaints.
    fn apply_sfc(&self, script: &str) -> Result<Vec<String>, AgentError>;
    /// The steering table's named counters (hops, drops, health probes): name → (packets,
    /// bytes); none when the table does not exist. Read without listing the table.
    fn sfc_counters(&self) -> Result<std::collections::BTreeMap<String, (u64, u64)>, AgentError>;
    /// The named counters of the metering table in router namespace `netns`: name →
    /// (packets, bytes); none when the table does not exist.
    fn meter_counters(
        &self,
        netns: &str,
    ) -> Result<std::collections::BTreeMap<String, (u64, u64)>, AgentError>;
    /// The steering table's handle (`None`: no table); another handle means the table was
    /// deleted and made again behind the agent's back.
    fn sfc_table_handle(&self) -> Result<Option<u64>, AgentError>;
    /// Creates (`want`) or removes the health prober's namespace `netns` and its veth
    /// (`sfqprobe` here, `probe0` there); returns whether it was (re)created, and the error
    /// lines of commands that failed.
    fn probe_port(&self, netns: &str, want: bool) -> Result<(bool, Vec<String>), AgentError>;
    /// Creates, fixes and removes the steering ports; returns how many commands ran and
    /// the error lines of those that failed.
    fn steering_ports(
        &self,
        want: &std::collections::BTreeMap<String, neutrino_sfc::SteeringPort>,
    ) -> Result<(usize, Vec<String>), AgentError>;
    /// The ports' QoS state: qdiscs, `ifb` devices, the DSCP table (nothing by default).
    fn observe_qos(&self) -> Result<RawQos, AgentError> {
        Ok(RawQos::default())
    }
    /// Runs a QoS plan in order; returns the error lines of failed steps.
    fn apply_qos(&self, ops: &[QosOp]) -> Result<Vec<String>, AgentError> {
        let _ = ops;
        Ok(Vec::new())
    }
    /// The Local IP state: translation table, tagged neighbours, bridge ports, FDB (nothing
    /// by default).
    fn observe_local_ips(&self) -> Result<RawLocalIp, AgentError> {
        Ok(RawLocalIp::default())
    }
    /// Runs a Local IP plan in order; returns the error lines of failed steps.
    fn apply_local_ips(&self, ops: &[LocalIpOp]) -> Result<Vec<String>, AgentError> {
        let _ = ops;
        Ok(Vec::new())
    }
}

/// The steering table's name (family netdev).
const SFC_TABLE: &str = "neutrino_sfc";

/// A device as steering sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LinkInfo {
    /// Interface index.
    pub index: u32,
    /// The link has carrier (`LOWER_UP`): for a port's tap, the instance's end is up.
    pub carrier: bool,
}

/// Interface indexes by name.
pub fn indexes(
    links: &std::collections::BTreeMap<String, LinkInfo>,
) -> std::collections::BTreeMap<String, u32> {
    links.iter().map(|(n, l)| (n.clone(), l.index)).collect()
}

/// The real kernel via iproute2.
#[derive(Clone, Debug, Default)]
pub struct IpRoute2 {
    /// Namespace holding the host's bridges, tunnels and taps (`None`: the agent's own).
    /// Lets tests run several "hosts" on one machine, each a namespace.
    pub dataplane_netns: Option<String>,
}

impl IpRoute2 {
    /// A command run in the dataplane namespace (`ip netns exec NS ...` when there is one).
    fn in_dataplane<'a>(&'a self, command: &[&'a str]) -> (&'a str, Vec<&'a str>) {
        match &self.dataplane_netns {
            Some(ns) => {
                let mut args = vec!["netns", "exec", ns.as_str()];
                args.extend_from_slice(command);
                ("ip", args)
            }
            None => (command[0], command[1..].to_vec()),
        }
    }

    /// Runs commands and nft scripts in the dataplane namespace, in order; returns the error
    /// lines of the steps that failed.
    fn run_host_ops(&self, ops: &[HostOp]) -> Result<Vec<String>, AgentError> {
        let mut errors = Vec::new();
        for op in ops {
            let (ok, err) = match op {
                HostOp::Cmd(argv) => {
                    let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
                    let (program, args) = self.in_dataplane(&argv);
                    let (ok, _, err) = run(program, &args, None)?;
                    (ok, err)
                }
                HostOp::Nft(script) => {
                    let (program, args) = self.in_dataplane(&["nft", "-f", "-"]);
                    let (ok, _, err) = run(program, &args, Some(script))?;
                    (ok, err)
                }
            };
            if !ok {
                errors.push(format!("{op}: {}", err.trim()));
            }
        }
        Ok(errors)
    }

    /// Arguments that put `ip` / `bridge` into the dataplane namespace.
    fn host_args<'a>(&'a self, rest: &[&'a str]) -> Vec<&'a str> {
        let mut args = Vec::new();
        if let Some(ns) = &self.dataplane_netns {
            args.extend(["-n", ns.as_str()]);
        }
        args.extend_from_slice(rest);
        args
    }
}

fn run(
    program: &str,
    args: &[&str],
    input: Option<&str>,
) -> Result<(bool, String, String), AgentError> {
    let mut cmd = Command::new(program);
    cmd.args(args)
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| AgentError::Command {
        command: format!("{program} {}", args.join(" ")),
        message: e.to_string(),
    })?;
    if let (Some(text), Some(mut stdin)) = (input, child.stdin.take()) {
        stdin
            .write_all(text.as_bytes())
            .map_err(|e| AgentError::Command {
                command: program.to_string(),
                message: e.to_string(),
            })?;
    }
    let out = child.wait_with_output().map_err(|e| AgentError::Command {
        command: program.to_string(),
        message: e.to_string(),
    })?;
    Ok((
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

/// Runs a command that prints JSON; a failure or empty output reads as `[]`.
fn json_of(program: &str, args: &[&str]) -> Result<Value, AgentError> {
    let (ok, out, err) = run(program, args, None)?;
    if !ok {
        return Err(AgentError::Command {
            command: format!("{program} {}", args.join(" ")),
            message: err.trim().to_string(),
        });
    }
    Ok(serde_json::from_str(out.trim()).unwrap_or(Value::Array(Vec::new())))
}

/// Separates the router table's listing from the metering table's.
const METER_MARK: &str = "--neutrino-meter--";
/// Separates the helpers table's listing from the metering table's.
const HELPERS_MARK: &str = "--neutrino-cthelper--";

/// The comment of a table listed as text, in the shape of `nft -j` output (nft 1.0.6 leaves
/// table comments out of its JSON).
fn table_comment(listing: &str) -> Option<Value> {
    let comment = listing
        .lines()
        .find_map(|l| l.trim().strip_prefix("comment \""))?
        .trim_end_matches('"');
    Some(serde_json::json!({"nftables": [{"table": {"comment": comment}}]}))
}

/// Several JSON documents printed one after another (an `ip -batch` run).
fn json_documents(text: &str) -> Vec<Value> {
    serde_json::Deserializer::from_str(text)
        .into_iter::<Value>()
        .map_while(Result::ok)
        .collect()
}

impl Kernel for IpRoute2 {
    fn observe(&self, netns_prefix: &str, unread: &Unread) -> Result<RawHost, AgentError> {
        let mut phases = crate::phases::Phases::start();
        let links = match &unread.links {
            None => json_of("ip", &self.host_args(&["-d", "-j", "link", "show"]))?,
            Some(read) if read.is_empty() => Value::Array(Vec::new()),
            Some(read) => {
                // One document per device; one that does not exist prints none.
                let script: String = read
                    .iter()
                    .map(|n| format!("link show dev {n}\n"))
                    .collect();
                let args = self.host_args(&["-d", "-j", "-force", "-batch", "-"]);
                let (_, out, _) = run("ip", &args, Some(&script))?;
                Value::Array(
                    json_documents(&out)
                        .into_iter()
                        .flat_map(|doc| doc.as_array().cloned().unwrap_or_default())
                        .collect(),
                )
            }
        };
        phases.mark("links");
        let fdb = if unread.fdb {
            Value::Null
        } else {
            json_of("bridge", &self.host_args(&["-j", "fdb", "show"]))?
        };
        phases.mark("fdb");
        // What `ip netns list` lists, without running it.
        let mut all: Vec<String> = match std::fs::read_dir("/run/netns") {
            Ok(dir) => dir
                .filter_map(|e| e.ok()?.file_name().into_string().ok())
                .collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => {
                return Err(AgentError::Command {
                    command: "read /run/netns".into(),
                    message: e.to_string(),
                })
            }
        };
        all.sort();
        phases.mark("netns list");
        let mut namespaces = Vec::new();
        let mut listed = Vec::new();
        for name in all.iter().map(String::as_str) {
            if !names::is_managed_netns(netns_prefix, name) {
                continue;
            }
            listed.push(name.to_string());
            if unread.namespaces.contains(name) {
                continue;
            }
            let router = names::is_router_netns(netns_prefix, name);
            let commands = if router {
                "link show\naddr show\nroute show\nneigh show nud permanent\nrule show\nroute show table all\nneigh show proxy\n"
            } else {
                "link show\naddr show\nroute show\n"
            };
            let (ok, out, _) = run(
                "ip",
                &["-n", name, "-d", "-j", "-batch", "-"],
                Some(commands),
            )?;
            if !ok {
                // Vanished between the listing and now.
                continue;
            }
            let docs = json_documents(&out);
            let v6 = json_of("ip", &["-n", name, "-j", "-6", "route", "show"])
                .unwrap_or(Value::Array(Vec::new()));
            let (mut ip_forward, mut nft, mut meter, mut helpers) = (None, None, None, None);
            if router {
                let script = format!(
                    "echo $(cat /proc/sys/net/ipv4/ip_forward)$(cat /proc/sys/net/ipv6/conf/all/proxy_ndp); \
                     nft list table inet {} 2>/dev/null; \
                     echo {METER_MARK}; nft list table inet {} 2>/dev/null; \
                     echo {HELPERS_MARK}; nft list table inet {} 2>/dev/null; true",
                    neutrino_dataplane::router::TABLE,
                    neutrino_dataplane::meter::TABLE,
                    neutrino_dataplane::conntrack_helpers::TABLE,
                );
                let (_, out, _) = run("ip", &["netns", "exec", name, "sh", "-c", &script], None)?;
                let (first, rest) = out.split_once('\n').unwrap_or((out.as_str(), ""));
                ip_forward = Some(first.to_string());
                let (router_part, rest) = rest.split_once(METER_MARK).unwrap_or((rest, ""));
                let (meter_part, helpers_part) =
                    rest.split_once(HELPERS_MARK).unwrap_or((rest, ""));
                nft = table_comment(router_part);
                meter = table_comment(meter_part);
                helpers = table_comment(helpers_part);
            }
            namespaces.push(RawNamespace {
                name: name.to_string(),
                links: docs.first().cloned().unwrap_or_default(),
                addrs: docs.get(1).cloned().unwrap_or_default(),
                routes: vec![docs.get(2).cloned().unwrap_or_default(), v6],
                ip_forward,
                nft,
                meter,
                helpers,
                neighbors: docs.get(3).cloned().unwrap_or_default(),
                rules: docs.get(4).cloned().unwrap_or_default(),
                table_routes: docs.get(5).cloned().unwrap_or_default(),
                ndp_proxies: docs.get(6).cloned().unwrap_or_default(),
            });
        }
        phases.mark("namespaces");
        let arp_guard = if unread.arp_guard {
            None
        } else {
            let guard = neutrino_dataplane::dvr::ARP_GUARD_TABLE;
            let (program, args) = self.in_dataplane(&["nft", "list", "table", "bridge", guard]);
            let (ok, out, _) = run(program, &args, None)?;
            if ok {
                table_comment(&out)
            } else {
                None
            }
        };
        phases.mark("arp guard");
        tracing::debug!(target: "reconcile_phases", read = namespaces.len(), "observe {phases}");
        Ok(RawHost {
            links,
            fdb,
            namespaces,
            listed,
            arp_guard,
        })
    }

    fn apply(&self, ops: &[Op]) -> Result<Vec<String>, AgentError> {
        let mut errors = Vec::new();
        let mut report = |program: &str, args: &[&str], err: &str| {
            errors.extend(
                err.lines()
                    .filter(|l| !l.trim().is_empty())
                    .map(|l| format!("{program} {args:?}: {l}")),
            );
        };
        // Consecutive operations with one target run as one batch.
        for chunk in ops.chunk_by(|a, b| a.target() == b.target()) {
            let target = chunk[0].target();
            if target == Target::HostNft {
                for op in chunk {
                    if let Op::LoadHostNft { script } = op {
                        let (program, args) = self.in_dataplane(&["nft", "-f", "-"]);
                        let (ok, _, err) = run(program, &args, Some(script))?;
                        if !ok {
                            report(program, &args, &err);
                        }
                    }
                }
                continue;
            }
            if target == Target::Mount {
                for op in chunk {
                    if let Op::AttachNetns { name, path } = op {
                        if let Err(e) = attach_netns(name, path) {
                            report("mount", &["--bind", path, name], &e);
                        }
                    }
                }
                continue;
            }
            if let Target::Exec(ns) = &target {
                // Commands of their own, one at a time, in order.
                for op in chunk {
                    let (args, input): (Vec<&str>, Option<&str>) = match op {
                        Op::Forwarding(_) => (
                            vec![
                                "netns",
                                "exec",
                                ns,
                                "sysctl",
                                "-qw",
                                "net.ipv4.ip_forward=1",
                                "net.ipv6.conf.all.forwarding=1",
                                "net.ipv6.conf.all.proxy_ndp=1",
                                "net.ipv6.conf.all.ndisc_notify=1",
                            ],
                            None,
                        ),
                        Op::LoadNft { script, .. } => (
                            vec!["netns", "exec", ns, "nft", "-f", "-"],
                            Some(script.as_str()),
                        ),
                        _ => continue,
                    };
                    let (ok, _, err) = run("ip", &args, input)?;
                    if !ok {
                        report("ip", &args, &err);
                    }
                }
                continue;
            }
            let input: String = chunk.iter().map(|op| op.command() + "\n").collect();
            let (program, args): (&str, Vec<&str>) = match &target {
                Target::Namespaces => ("ip", vec!["-force", "-batch", "-"]),
                Target::Host => ("ip", self.host_args(&["-force", "-batch", "-"])),
                Target::Bridge => ("bridge", self.host_args(&["-force", "-batch", "-"])),
                Target::Netns(ns) => ("ip", vec!["-n", ns, "-force", "-batch", "-"]),
                Target::Exec(_) | Target::HostNft | Target::Mount => continue,
            };
            let (ok, _, err) = run(program, &args, Some(&input))?;
            if !ok {
                report(program, &args, &err);
            }
        }
        Ok(errors)
    }

    fn announce(&self, addrs: &[(String, String, std::net::IpAddr)]) -> Vec<String> {
        let mut errors = Vec::new();
        for (netns, dev, ip) in addrs.iter().filter(|(_, _, ip)| ip.is_ipv4()) {
            let ip = ip.to_string();
            let args = [
                "netns", "exec", netns, "arping", "-q", "-U", "-c", "1", "-I", dev, &ip,
            ];
            match run("ip", &args, None) {
                Ok((true, _, _)) => {}
                Ok((false, _, err)) => errors.push(format!("arping {ip} on {dev}: {}", err.trim())),
                Err(e) => errors.push(format!("arping {ip} on {dev}: {e}")),
            }
        }
        errors
    }

    fn observe_firewall(&self) -> Result<ObservedTables, AgentError> {
        let mut observed = ObservedTables::default();
        for list in LIST_COMMANDS {
            let mut command = vec!["nft", "-j", "-n"];
            command.extend(list.split(' '));
            let (program, args) = self.in_dataplane(&command);
            let (ok, out, _) = run(program, &args, None)?;
            if ok {
                observed.add_json(&out).map_err(|e| AgentError::Command {
                    command: format!("nft {list}"),
                    message: e.to_string(),
                })?;
            }
        }
        Ok(observed)
    }

    fn conntrack(&self, args: &[String]) -> Result<String, AgentError> {
        let mut command = vec!["conntrack"];
        command.extend(args.iter().map(String::as_str));
        let (program, argv) = self.in_dataplane(&command);
        let (ok, out, err) = run(program, &argv, None)?;
        if !ok {
            return Err(AgentError::Command {
                command: format!("conntrack {}", args.join(" ")),
                message: err.trim().to_string(),
            });
        }
        Ok(out)
    }

    fn links(&self) -> Result<std::collections::BTreeMap<String, LinkInfo>, AgentError> {
        let links = json_of("ip", &self.host_args(&["-j", "link", "show"]))?;
        Ok(links
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|l| {
                let index = u32::try_from(l["ifindex"].as_u64()?).ok()?;
                let carrier = l["flags"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|f| f == "LOWER_UP");
                Some((
                    l["ifname"].as_str()?.to_string(),
                    LinkInfo { index, carrier },
                ))
            })
            .collect())
    }

    fn observe_sfc(&self) -> Result<String, AgentError> {
        let (program, args) = self.in_dataplane(neutrino_sfc::observe::LIST_COMMAND);
        let (ok, out, err) = run(program, &args, None)?;
        if ok {
            Ok(out)
        } else if err.contains("No such file or directory") {
            Ok(String::new())
        } else {
            Err(AgentError::Command {
                command: "nft list table netdev neutrino_sfc".into(),
                message: err.trim().to_string(),
            })
        }
    }

    fn apply_sfc(&self, script: &str) -> Result<Vec<String>, AgentError> {
        let (program, args) = self.in_dataplane(&["nft", "-f", "-"]);
        let (ok, _, err) = run(program, &args, Some(script))?;
        Ok(if ok {
            Vec::new()
        } else {
            err.lines().map(|l| format!("nft: {l}")).collect()
        })
    }

    fn sfc_counters(&self) -> Result<std::collections::BTreeMap<String, (u64, u64)>, AgentError> {
        crate::nft_netlink::counters(self.dataplane_netns.as_deref(), SFC_TABLE)
    }

    fn meter_counters(
        &self,
        netns: &str,
    ) -> Result<std::collections::BTreeMap<String, (u64, u64)>, AgentError> {
        let table = neutrino_dataplane::meter::TABLE;
        let args = [
            "netns", "exec", netns, "nft", "-j", "list", "counters", "table", "inet", table,
        ];
        let (ok, out, _) = run("ip", &args, None)?;
        if !ok {
            // No table (yet), or the namespace went.
            return Ok(Default::default());
        }
        let doc: Value = serde_json::from_str(out.trim()).unwrap_or(Value::Null);
        Ok(neutrino_dataplane::meter::parse_counters(&doc))
    }

    fn sfc_table_handle(&self) -> Result<Option<u64>, AgentError> {
        crate::nft_netlink::table_handle(self.dataplane_netns.as_deref(), SFC_TABLE)
    }

    fn probe_port(&self, netns: &str, want: bool) -> Result<(bool, Vec<String>), AgentError> {
        let device = neutrino_sfc::probe::DEVICE;
        let (ok, names, _) = run("ip", &["netns", "list"], None)?;
        let ns_exists = ok
            && names
                .lines()
                .any(|l| l.split_whitespace().next() == Some(netns));
        let (dev_exists, _, _) = run("ip", &self.host_args(&["link", "show", device]), None)?;
        if want == (ns_exists && dev_exists) {
            return Ok((false, Vec::new()));
        }
        let mut errors = Vec::new();
        let mut step = |program: &str, args: Vec<&str>| -> Result<(), AgentError> {
            let (ok, _, err) = run(program, &args, None)?;
            if !ok {
                errors.push(format!("{program} {}: {}", args.join(" "), err.trim()));
            }
            Ok(())
        };
        if ns_exists {
            step("ip", vec!["netns", "del", netns])?;
        }
        if dev_exists {
            step("ip", self.host_args(&["link", "del", device]))?;
        }
        if !want {
            return Ok((false, errors));
        }
        let v4 = format!("{}/32", neutrino_sfc::probe::SOURCE_V4);
        let v6 = format!("{}/128", neutrino_sfc::probe::SOURCE_V6);
        step("ip", vec!["netns", "add", netns])?;
        step(
            "ip",
            self.host_args(&[
                "link", "add", device, "type", "veth", "peer", "name", "probe0", "netns", netns,
            ]),
        )?;
        step("ip", self.host_args(&["link", "set", device, "up"]))?;
        let inside: [&[&str]; 6] = [
            &["link", "set", "lo", "up"],
            // No neighbour resolution: the steering table sets the destination MAC.
            &["link", "set", "probe0", "arp", "off", "up"],
            &["addr", "add", &v4, "dev", "probe0"],
            &["addr", "add", &v6, "dev", "probe0", "nodad"],
            &["route", "add", "default", "dev", "probe0"],
            &["-6", "route", "add", "default", "dev", "probe0"],
        ];
        for args in inside {
            let mut all = vec!["-n", netns];
            all.extend_from_slice(args);
            step("ip", all)?;
        }
        Ok((true, errors))
    }

    fn steering_ports(
        &self,
        want: &std::collections::BTreeMap<String, neutrino_sfc::SteeringPort>,
    ) -> Result<(usize, Vec<String>), AgentError> {
        let links = json_of("ip", &self.host_args(&["-j", "link", "show"]))?;
        let fdb = if want.is_empty() {
            Value::Array(Vec::new())
        } else {
            json_of("bridge", &self.host_args(&["-j", "fdb", "show"]))?
        };
        let commands = neutrino_sfc::steering::commands(want, &links, &fdb);
        let mut errors = Vec::new();
        for argv in &commands {
            let (program, rest) = (argv[0].as_str(), &argv[1..]);
            let rest: Vec<&str> = rest.iter().map(String::as_str).collect();
            let (ok, _, err) = run(program, &self.host_args(&rest), None)?;
            if !ok {
                errors.push(format!("{}: {}", argv.join(" "), err.trim()));
            }
        }
        Ok((commands.len(), errors))
    }

    fn observe_qos(&self) -> Result<RawQos, AgentError> {
        let (program, args) = self.in_dataplane(&["tc", "-j", "qdisc", "show"]);
        let qdiscs = json_of(program, &args)?;
        let (program, args) = self.in_dataplane(&["ip", "-j", "link", "show", "type", "ifb"]);
        let ifbs = json_of(program, &args)?;
        let table = neutrino_dataplane::qos::TABLE;
        let (program, args) = self.in_dataplane(&["nft", "list", "table", "bridge", table]);
        let (ok, out, err) = run(program, &args, None)?;
        let table = if ok {
            out
        } else if err.contains("No such file or directory") {
            String::new()
        } else {
            return Err(AgentError::Command {
                command: format!("nft list table bridge {table}"),
                message: err.trim().to_string(),
            });
        };
        Ok(RawQos {
            qdiscs,
            ifbs,
            table,
        })
    }

    fn apply_qos(&self, ops: &[QosOp]) -> Result<Vec<String>, AgentError> {
        self.run_host_ops(ops)
    }

    fn observe_local_ips(&self) -> Result<RawLocalIp, AgentError> {
        let table = neutrino_dataplane::local_ip::TABLE;
        let (program, args) = self.in_dataplane(&["nft", "-j", "list", "table", "bridge", table]);
        let (ok, out, err) = run(program, &args, None)?;
        let table = if ok {
            out
        } else if err.contains("No such file or directory") {
            String::new()
        } else {
            return Err(AgentError::Command {
                command: format!("nft -j list table bridge {table}"),
                message: err.trim().to_string(),
            });
        };
        let neighbours = json_of(
            "ip",
            &self.host_args(&["-j", "neigh", "show", "nud", "permanent"]),
        )?;
        let links = json_of("bridge", &self.host_args(&["-j", "-d", "link", "show"]))?;
        let fdb = json_of("bridge", &self.host_args(&["-j", "fdb", "show"]))?;
        Ok(RawLocalIp {
            table,
            neighbours,
            links,
            fdb,
        })
    }

    fn apply_local_ips(&self, ops: &[LocalIpOp]) -> Result<Vec<String>, AgentError> {
        self.run_host_ops(ops)
    }

    fn apply_firewall(&self, script: &str) -> Result<Vec<String>, AgentError> {
        // Bridged traffic must reach the inet family for stateful filtering.
        let (program, args) = self.in_dataplane(&[
            "sysctl",
            "-qw",
            "net.bridge.bridge-nf-call-iptables=1",
            "net.bridge.bridge-nf-call-ip6tables=1",
        ]);
        let mut errors = Vec::new();
        let (ok, _, err) = run(program, &args, None)?;
        if !ok {
            errors.push(format!("sysctl: {}", err.trim()));
        }
        let (program, args) = self.in_dataplane(&["nft", "-f", "-"]);
        let (ok, _, err) = run(program, &args, Some(script))?;
        if !ok {
            errors.extend(err.lines().map(|l| format!("nft: {l}")));
        }
        Ok(errors)
    }
}

/// Bind-mounts a container runtime's namespace file at `/run/netns/<name>`, so every
/// `ip -n <name>` reaches it; `ip netns del <name>` later removes only the mount.
fn attach_netns(name: &str, path: &str) -> Result<(), String> {
    let dir = std::path::Path::new("/run/netns");
    std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    let target = dir.join(name);
    if !target.exists() {
        std::fs::File::create(&target).map_err(|e| format!("{}: {e}", target.display()))?;
    }
    let target = target.to_string_lossy().into_owned();
    match run("mount", &["--bind", path, &target], None) {
        Ok((true, _, _)) => Ok(()),
        Ok((false, _, err)) => {
            let _ = std::fs::remove_file(&target);
            Err(err.trim().to_string())
        }
        Err(e) => {
            let _ = std::fs::remove_file(&target);
            Err(e.to_string())
        }
    }
}
