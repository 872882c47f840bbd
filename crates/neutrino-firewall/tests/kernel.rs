//! Real packets through the generated tables. Each test builds private network namespaces
//! — a "host" with a Linux bridge and instances plugged as veth pairs the way the agent
//! plugs ports (`tapX` on the host side, `eth0` with the port's MAC and address inside) —
//! applies plans with `ip netns exec HOST nft -f -`, and connects with small Python
//! clients/servers bounded by timeouts. Needs root, `ip`, `nft`, `python3` and br_netfilter;
//! otherwise each test prints why it is skipped and returns. Everything a test creates is
//! removed by `Lab`'s Drop, also on failure.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use neutrino_firewall::testing::with_unknown_handles;
use neutrino_firewall::{
    after_apply, plan, AddedRules, Direction, EtherType, FirewallModel, ObservedTables, PortFilter,
    Rule, LIST_COMMANDS,
};

const BRIDGE: &str = "brqtest";

const SERVER: &str = r#"
import socket, sys, threading
def echo(c):
    with c:
        while True:
            d = c.recv(1024)
            if not d:
                return
            c.sendall(d)
def serve(s):
    while True:
        c, _ = s.accept()
        threading.Thread(target=echo, args=(c,), daemon=True).start()
for p in sys.argv[1:]:
    s = socket.socket(socket.AF_INET6)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    s.bind(("::", int(p)))
    s.listen(16)
    threading.Thread(target=serve, args=(s,), daemon=True).start()
print("ready", flush=True)
sys.stdin.read()
"#;

const CLIENT: &str = r#"
import socket, sys
dst, port, src = sys.argv[1], int(sys.argv[2]), sys.argv[3]
try:
    s = socket.create_connection((dst, port), timeout=2,
                                 source_address=(src, 0) if src else None)
    s.sendall(b"ping\n")
    print("ok" if s.recv(16) == b"ping\n" else "bad")
except OSError as e:
    print("fail", e)
"#;

/// IPv6 address of an instance (`2001:db8::` + the last byte of its IPv4 address).
fn v6(i: &Instance) -> String {
    format!("2001:db8::{}", i.ip.rsplit('.').next().expect("dotted"))
}

/// Connects, exchanges one line, then one more line each time stdin gives one.
const LONG_CLIENT: &str = r#"
import socket, sys
try:
    s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=3)
    s.sendall(b"one\n")
    assert s.recv(16) == b"one\n"
    print("connected", flush=True)
    for line in sys.stdin:
        s.sendall(b"two\n")
        print("ok" if s.recv(16) == b"two\n" else "bad", flush=True)
except (OSError, AssertionError) as e:
    print("fail", e, flush=True)
"#;

fn skip_reason() -> Option<String> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let uid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap_or("?");
    if uid != "0" {
        return Some(format!("not root (euid {uid})"));
    }
    for (tool, arg) in [("ip", "-V"), ("nft", "--version"), ("python3", "--version")] {
        let ok = Command::new(tool)
            .arg(arg)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            return Some(format!("{tool} not available"));
        }
    }
    if !std::path::Path::new("/proc/sys/net/bridge/bridge-nf-call-iptables").exists() {
        return Some("br_netfilter is not loaded (no /proc/sys/net/bridge)".into());
    }
    None
}

macro_rules! require_kernel {
    ($name:expr) => {
        if let Some(why) = skip_reason() {
            eprintln!("skipped kernel test {}: {why}", $name);
            return;
        }
    };
}

fn run(args: &[&str], stdin: Option<&str>) -> Result<String, String> {
    let mut child = Command::new(args[0])
        .args(&args[1..])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("{args:?}: {e}"))?;
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .expect("piped stdin")
            .write_all(input.as_bytes())
            .map_err(|e| format!("{args:?}: {e}"))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| format!("{args:?}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "{args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// An instance: its name, MAC and address (in 10.0.0.0/24).
struct Instance {
    name: &'static str,
    mac: &'static str,
    ip: &'static str,
}

const A: Instance = Instance {
    name: "a",
    mac: "02:00:00:00:00:0a",
    ip: "10.0.0.10",
};
const B: Instance = Instance {
    name: "b",
    mac: "02:00:00:00:00:0b",
    ip: "10.0.0.11",
};
const C: Instance = Instance {
    name: "c",
    mac: "02:00:00:00:00:0c",
    ip: "10.0.0.20",
};

/// Namespaces and processes of one test; Drop removes them.
struct Lab {
    prefix: String,
    namespaces: Vec<String>,
    children: Vec<Child>,
    stdins: Vec<ChildStdin>,
}

impl Lab {
    fn new(tag: &str, instances: &[&Instance]) -> Lab {
        let mut lab = Lab {
            prefix: format!("nfw{}{tag}-", std::process::id()),
            namespaces: Vec::new(),
            children: Vec::new(),
            stdins: Vec::new(),
        };
        let host = lab.ns("host");
        lab.add_ns(&host);
        for i in instances {
            let ns = lab.ns(i.name);
            lab.add_ns(&ns);
        }
        let sh = |args: &[&str]| run(args, None).expect("lab setup");
        sh(&["ip", "-n", &host, "link", "add", BRIDGE, "type", "bridge"]);
        sh(&["ip", "-n", &host, "link", "set", BRIDGE, "up"]);
        for i in instances {
            let ns = lab.ns(i.name);
            let tap = format!("tap{}", i.name);
            sh(&[
                "ip", "-n", &host, "link", "add", &tap, "type", "veth", "peer", "name", "eth0",
                "netns", &ns,
            ]);
            sh(&[
                "ip", "-n", &host, "link", "set", &tap, "master", BRIDGE, "up",
            ]);
            sh(&["ip", "-n", &ns, "link", "set", "eth0", "address", i.mac]);
            sh(&[
                "ip",
                "-n",
                &ns,
                "addr",
                "add",
                &format!("{}/24", i.ip),
                "dev",
                "eth0",
            ]);
            sh(&["ip", "-n", &ns, "link", "set", "eth0", "up"]);
            sh(&["ip", "-n", &ns, "link", "set", "lo", "up"]);
        }
        lab
    }

    fn ns(&self, role: &str) -> String {
        format!("{}{role}", self.prefix)
    }

    fn add_ns(&mut self, name: &str) {
        run(&["ip", "netns", "add", name], None).expect("netns created");
        self.namespaces.push(name.to_string());
    }

    fn observe(&self) -> ObservedTables {
        let host = self.ns("host");
        let mut observed = ObservedTables::default();
        for cmd in LIST_COMMANDS {
            let mut args = vec!["ip", "netns", "exec", &host, "nft", "-j", "-n"];
            args.extend(cmd.split(' '));
            if let Ok(json) = run(&args, None) {
                observed.add_json(&json).expect("nft -j output parses");
            }
        }
        observed
    }

    /// Plan against the kernel, apply, and check the kernel then needs nothing more and
    /// holds exactly what `after_apply` predicts from nft's echo (what the agent plans its
    /// next change against without listing).
    fn sync(&self, model: &FirewallModel) -> Vec<String> {
        let host = self.ns("host");
        let before = self.observe();
        let p = plan(model, &before);
        assert!(p.warnings().is_empty(), "{:?}", p.warnings());
        let mut echo = String::new();
        if !p.is_empty() {
            echo = run(
                &[
                    "ip", "netns", "exec", &host, "nft", "--echo", "--handle", "-f", "-",
                ],
                Some(&p.script()),
            )
            .unwrap_or_else(|e| panic!("{e}\nscript:\n{}", p.script()));
        }
        let observed = self.observe();
        let again = plan(model, &observed);
        assert!(again.is_empty(), "not idempotent:\n{}", again.script());
        let predicted = after_apply(model, &before, Some(AddedRules::parse(&echo)))
            .expect("every added rule was echoed with its handle");
        assert_eq!(
            predicted, observed,
            "the tables after the plan differ from the prediction"
        );
        // Without the echo: the same, with the unknown handle 0 for the added rules.
        let unechoed = after_apply(model, &before, None).expect("nothing to claim");
        assert_eq!(unechoed, with_unknown_handles(&observed, &before));
        p.commands().to_vec()
    }

    fn spawn(
        &mut self,
        ns: &str,
        script: &str,
        args: &[&str],
    ) -> (ChildStdin, BufReader<ChildStdout>) {
        let ns = self.ns(ns);
        let mut child = Command::new("ip")
            .args(["netns", "exec", &ns, "python3", "-c", script])
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python3 started");
        let stdin = child.stdin.take().expect("piped");
        let stdout = BufReader::new(child.stdout.take().expect("piped"));
        self.children.push(child);
        (stdin, stdout)
    }

    /// Start echo servers in `ns` on `ports`.
    fn listen(&mut self, ns: &str, ports: &[&str]) {
        let (stdin, mut out) = self.spawn(ns, SERVER, ports);
        self.stdins.push(stdin); // the server runs until its stdin closes
        assert_eq!(line(&mut out), "ready");
    }

    /// Whether a TCP connection from `ns` (optionally from address `src`) to `dst:port`
    /// exchanges data.
    fn connects(&self, ns: &str, dst: &Instance, port: u16, src: Option<&str>) -> bool {
        self.connects_to(ns, dst.ip, port, src)
    }

    fn connects_to(&self, ns: &str, dst: &str, port: u16, src: Option<&str>) -> bool {
        let ns = self.ns(ns);
        let port = port.to_string();
        let out = run(
            &[
                "ip",
                "netns",
                "exec",
                &ns,
                "timeout",
                "20",
                "python3",
                "-c",
                CLIENT,
                dst,
                &port,
                src.unwrap_or(""),
            ],
            None,
        )
        .expect("client ran");
        out.trim() == "ok"
    }
}

fn line(out: &mut BufReader<ChildStdout>) -> String {
    let mut s = String::new();
    out.read_line(&mut s).expect("child output");
    s.trim().to_string()
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.stdins.clear();
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        for ns in self.namespaces.iter().rev() {
            let _ = run(&["ip", "netns", "del", ns], None);
        }
    }
}

fn port(i: &Instance, groups: &[&str]) -> PortFilter {
    PortFilter {
        port_id: format!("port-{}", i.name),
        device: format!("tap{}", i.name),
        bridge: Some(BRIDGE.into()),
        mac: i.mac.into(),
        fixed_ips: vec![i.ip.parse().unwrap()],
        allowed_address_pairs: vec![],
        port_security_enabled: true,
        security_groups: groups.iter().map(|g| g.to_string()).collect(),
        shared_device: false,
    }
}

fn rule(id: &str, sg: &str, direction: Direction) -> Rule {
    Rule {
        id: id.into(),
        security_group_id: sg.into(),
        direction,
        ethertype: EtherType::IPv4,
        protocol: None,
        port_range_min: None,
        port_range_max: None,
        remote_ip_prefix: None,
        remote_group_id: None,
        remote_address_group_id: None,
    }
}

fn tcp_in(id: &str, sg: &str, port: u16, prefix: Option<&str>) -> Rule {
    Rule {
        protocol: Some("tcp".into()),
        port_range_min: Some(port),
        port_range_max: Some(port),
        remote_ip_prefix: prefix.map(|p| p.parse().unwrap()),
        ..rule(id, sg, Direction::Ingress)
    }
}

/// a and c are clients (egress anywhere), b serves behind group "server".
fn clients_and_server(server_rules: Vec<Rule>) -> FirewallModel {
    let mut rules = vec![
        rule("client-out", "client", Direction::Egress),
        rule("server-out", "server", Direction::Egress),
    ];
    rules.extend(server_rules);
    FirewallModel {
        ports: vec![
            port(&A, &["client"]),
            port(&B, &["server"]),
            port(&C, &["client"]),
        ],
        rules,
        ..FirewallModel::default()
    }
}

#[test]
fn only_tcp22_from_the_allowed_prefix_gets_through_and_removal_cuts_it() {
    require_kernel!("only_tcp22_from_the_allowed_prefix_gets_through_and_removal_cuts_it");
    let mut lab = Lab::new("p", &[&A, &B, &C]);
    let model = clients_and_server(vec![tcp_in("ssh", "server", 22, Some("10.0.0.8/30"))]);
    lab.sync(&model);
    lab.listen("b", &["22", "80"]);
    assert!(lab.connects("a", &B, 22, None), "a → b:22 allowed");
    assert!(!lab.connects("a", &B, 80, None), "a → b:80 not allowed");
    assert!(!lab.connects("c", &B, 22, None), "c is outside 10.0.0.8/30");

    let mut without = model.clone();
    without.rules.retain(|r| r.id != "ssh");
    let cmds = lab.sync(&without);
    assert_eq!(cmds.len(), 2, "{cmds:#?}"); // the rule's layer set and its lookup rule
    assert!(!lab.connects("a", &B, 22, None), "rule removed");
}

#[test]
fn an_established_connection_survives_an_unrelated_rule_being_added() {
    require_kernel!("an_established_connection_survives_an_unrelated_rule_being_added");
    let mut lab = Lab::new("e", &[&A, &B]);
    let model = clients_and_server(vec![tcp_in("ssh", "server", 22, Some("10.0.0.8/30"))]);
    let model = FirewallModel {
        ports: model.ports[..2].to_vec(),
        ..model
    };
    lab.sync(&model);
    lab.listen("b", &["22"]);
    let (mut stdin, mut out) = lab.spawn("a", LONG_CLIENT, &[B.ip, "22"]);
    assert_eq!(line(&mut out), "connected");

    let mut more = model.clone();
    more.rules.push(tcp_in("https", "server", 443, None));
    let cmds = lab.sync(&more);
    assert_eq!(cmds.len(), 1, "{cmds:#?}");
    writeln!(stdin, "go").expect("client alive");
    assert_eq!(
        line(&mut out),
        "ok",
        "the open connection still carries data"
    );
}

#[test]
fn a_spoofed_source_address_is_dropped() {
    require_kernel!("a_spoofed_source_address_is_dropped");
    let mut lab = Lab::new("s", &[&A, &B]);
    let mut model = clients_and_server(vec![tcp_in("ssh", "server", 22, None)]);
    model.ports.truncate(2);
    lab.sync(&model);
    lab.listen("b", &["22"]);
    run(
        &[
            "ip",
            "-n",
            &lab.ns("a"),
            "addr",
            "add",
            "10.0.0.99/24",
            "dev",
            "eth0",
        ],
        None,
    )
    .expect("second address");
    // b knows where 10.0.0.99 is, so only the IP source check can stop the exchange.
    let b = lab.ns("b");
    run(
        &[
            "ip",
            "-n",
            &b,
            "neigh",
            "add",
            "10.0.0.99",
            "lladdr",
            A.mac,
            "dev",
            "eth0",
        ],
        None,
    )
    .expect("static neighbour");
    assert!(lab.connects("a", &B, 22, Some(A.ip)));
    assert!(
        !lab.connects("a", &B, 22, Some("10.0.0.99")),
        "spoofed source"
    );

    // ARP: a answering for an address that is not its own is not heard.
    lab.listen("a", &["22"]);
    run(
        &[
            "ip",
            "-n",
            &lab.ns("a"),
            "addr",
            "add",
            "10.0.0.55/24",
            "dev",
            "eth0",
        ],
        None,
    )
    .expect("third address");
    assert!(!lab.connects_to("b", "10.0.0.55", 22, None));
    let neigh = run(&["ip", "-n", &b, "neigh", "show", "10.0.0.55"], None).expect("neigh");
    assert!(
        !neigh.contains("lladdr"),
        "b learnt a spoofed ARP answer: {neigh}"
    );

    // The same address as an allowed address pair is accepted.
    model.ports[0]
        .allowed_address_pairs
        .push(("10.0.0.99/32".parse().unwrap(), None));
    lab.sync(&model);
    assert!(lab.connects("a", &B, 22, Some("10.0.0.99")), "allowed pair");
}

#[test]
fn ports_without_port_security_pass_everything() {
    require_kernel!("ports_without_port_security_pass_everything");
    let mut lab = Lab::new("u", &[&A, &B, &C]);
    // c is filtered with no rules at all; a and b have port security off.
    let mut model = clients_and_server(vec![]);
    model.rules.clear();
    for p in &mut model.ports[..2] {
        p.port_security_enabled = false;
        p.security_groups.clear();
    }
    lab.sync(&model);
    lab.listen("b", &["80"]);
    lab.listen("c", &["80"]);
    run(
        &[
            "ip",
            "-n",
            &lab.ns("a"),
            "addr",
            "add",
            "10.0.0.99/24",
            "dev",
            "eth0",
        ],
        None,
    )
    .expect("second address");
    assert!(lab.connects("a", &B, 80, None));
    assert!(lab.connects("a", &B, 80, Some("10.0.0.99")), "any source");
    assert!(!lab.connects("a", &C, 80, None), "c keeps its default drop");
}

#[test]
fn a_remote_group_member_added_gets_access() {
    require_kernel!("a_remote_group_member_added_gets_access");
    let mut lab = Lab::new("g", &[&A, &B]);
    let mut model = clients_and_server(vec![Rule {
        protocol: Some("tcp".into()),
        port_range_min: Some(22),
        port_range_max: Some(22),
        remote_group_id: Some("client".into()),
        ..rule("from-clients", "server", Direction::Ingress)
    }]);
    model.ports.truncate(2);
    model.ports[0].security_groups = vec!["other".into()];
    model
        .rules
        .push(rule("other-out", "other", Direction::Egress));
    model.group_members.insert("client".into(), BTreeSet::new());
    lab.sync(&model);
    lab.listen("b", &["22"]);
    assert!(
        !lab.connects("a", &B, 22, None),
        "a is not in the group yet"
    );

    model.group_members.insert(
        "client".into(),
        BTreeSet::from([format!("{}/32", A.ip).parse().unwrap()]),
    );
    let cmds = lab.sync(&model);
    assert_eq!(
        cmds,
        ["add element inet neutrino rg-client-4 { 10.0.0.10 }"]
    );
    assert!(lab.connects("a", &B, 22, None), "member now");
}

#[test]
fn ipv6_neighbour_discovery_works_and_rules_apply() {
    require_kernel!("ipv6_neighbour_discovery_works_and_rules_apply");
    let mut lab = Lab::new("6", &[&A, &B]);
    for i in [&A, &B] {
        let addr = format!("{}/64", v6(i));
        run(
            &[
                "ip",
                "-n",
                &lab.ns(i.name),
                "addr",
                "add",
                &addr,
                "dev",
                "eth0",
                "nodad",
            ],
            None,
        )
        .expect("IPv6 address");
    }
    let mut model = clients_and_server(vec![Rule {
        ethertype: EtherType::IPv6,
        ..tcp_in("ssh6", "server", 22, Some("2001:db8::/64"))
    }]);
    model.ports.truncate(2);
    model.rules.push(Rule {
        ethertype: EtherType::IPv6,
        ..rule("client-out6", "client", Direction::Egress)
    });
    for (p, i) in model.ports.iter_mut().zip([&A, &B]) {
        p.fixed_ips.push(v6(i).parse().unwrap());
    }
    lab.sync(&model);
    lab.listen("b", &["22", "80"]);
    assert!(
        lab.connects_to("a", &v6(&B), 22, None),
        "a → b:22 over IPv6 (needs NS/NA)"
    );
    assert!(
        !lab.connects_to("a", &v6(&B), 80, None),
        "a → b:80 not allowed"
    );
}

/// A port on a shared device: `d` is a macvlan behind `c`'s interface, so its frames cross
/// `tapc` with its own MAC (a bare-metal server behind a provider uplink, a container nested
/// in a VM). Its group applies to it alone; `c` stays an unfiltered uplink, then becomes a
/// filtered port of its own, and neither takes the other's rules.
#[test]
fn a_port_on_a_shared_device_has_its_own_filter() {
    require_kernel!("a_port_on_a_shared_device_has_its_own_filter");
    const D: Instance = Instance {
        name: "d",
        mac: "02:00:00:00:00:0d",
        ip: "10.0.0.30",
    };
    let mut lab = Lab::new("m", &[&A, &B, &C]);
    let (c, d) = (lab.ns("c"), lab.ns("d"));
    lab.add_ns(&d);
    for args in [
        vec!["ip", "-n", &c, "link", "add", "link", "eth0", "name", "mv0"],
        vec![
            "ip", "-n", &c, "link", "set", "mv0", "address", D.mac, "netns", &d,
        ],
        vec!["ip", "-n", &d, "addr", "add", "10.0.0.30/24", "dev", "mv0"],
        vec!["ip", "-n", &d, "link", "set", "mv0", "up"],
        vec!["ip", "-n", &d, "link", "set", "lo", "up"],
    ] {
        let mut args = args;
        if args[4] == "add" && args[5] == "link" {
            args.extend(["type", "macvlan", "mode", "bridge"]);
        }
        run(&args, None).expect("macvlan set up");
    }
    let behind = PortFilter {
        device: "tapc".into(),
        shared_device: true,
        ..port(&D, &["server"])
    };
    let mut model = clients_and_server(vec![tcp_in("ssh", "server", 22, None)]);
    model.ports.truncate(2);
    model.ports.push(behind);
    lab.sync(&model);
    lab.listen("b", &["22"]);
    lab.listen("c", &["22", "80"]);
    lab.listen("d", &["22", "80"]);
    assert!(
        lab.connects("a", &D, 22, None),
        "the server group allows 22"
    );
    assert!(!lab.connects("a", &D, 80, None), "and nothing else");
    assert!(
        lab.connects("a", &C, 80, None),
        "c is not a port: unfiltered"
    );
    assert!(lab.connects("d", &B, 22, None), "d's egress");

    // d may not use an address that is not its port's.
    run(
        &["ip", "-n", &d, "addr", "add", "10.0.0.31/24", "dev", "mv0"],
        None,
    )
    .expect("addr");
    let b = lab.ns("b");
    run(
        &[
            "ip",
            "-n",
            &b,
            "neigh",
            "add",
            "10.0.0.31",
            "lladdr",
            D.mac,
            "dev",
            "eth0",
        ],
        None,
    )
    .expect("static neighbour");
    assert!(
        !lab.connects("d", &B, 22, Some("10.0.0.31")),
        "spoofed source"
    );

    // c becomes a filtered port itself (a VM with d nested in it): each keeps its own rules.
    model.ports.push(port(&C, &["client"]));
    lab.sync(&model);
    assert!(
        !lab.connects("a", &C, 80, None),
        "c's group has no ingress rule"
    );
    assert!(lab.connects("a", &D, 22, None), "d keeps the server group");
    assert!(!lab.connects("a", &D, 80, None));

    // Removing d's port leaves its frames to c's filter: c's MAC check drops them.
    model.ports.retain(|p| p.port_id != "port-d");
    lab.sync(&model);
    assert!(!lab.connects("d", &B, 22, None), "not c's MAC");
}
