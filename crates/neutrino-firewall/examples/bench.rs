//! Benchmark: one security-group rule change on a host with many rules.
//!
//!     cargo run --release -p neutrino-firewall --example bench -- [RULES] [PORTS]
//!
//! Builds a host (default 5,000 rules in 50 groups, 100 ports in two groups each), times
//! the pure steps (render, parse of the kernel's listing, plan of one added rule), and when
//! run as root with `nft`/`ip`, loads the tables into a private network namespace and times
//! the kernel steps: full load, listing, applying the one-rule plan (one `nft -f`), applying
//! its removal. Prints a Markdown table of medians over 7 runs.

use std::collections::BTreeSet;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use neutrino_firewall::{
    plan, render, Direction, EtherType, FirewallModel, ObservedTables, PortFilter, Rule,
    LIST_COMMANDS,
};

const RUNS: usize = 7;

fn model(rules: usize, ports: usize) -> FirewallModel {
    let groups = (rules / 100).max(1);
    let mut m = FirewallModel::default();
    for p in 0..ports {
        let g1 = format!("sg{:03}", p % groups);
        let g2 = format!("sg{:03}", (p + 1) % groups);
        m.ports.push(PortFilter {
            port_id: format!("port-{p:05}"),
            device: format!("tap{p:05}"),
            bridge: Some(format!("brq{:03}", p % 10)),
            mac: format!("fa:16:3e:00:{:02x}:{:02x}", p / 256, p % 256),
            fixed_ips: vec![
                format!("10.{}.{}.{}", 100 + p / 65536, (p / 256) % 256, p % 256)
                    .parse()
                    .unwrap(),
            ],
            allowed_address_pairs: vec![],
            port_security_enabled: true,
            security_groups: vec![g1, g2],
            shared_device: false,
        });
    }
    for i in 0..rules {
        let g = i % groups;
        let k = i / groups;
        let sg = format!("sg{g:03}");
        let mut r = Rule {
            id: format!("rule-{i:05}"),
            security_group_id: sg.clone(),
            direction: if k % 5 == 4 {
                Direction::Egress
            } else {
                Direction::Ingress
            },
            ethertype: EtherType::IPv4,
            protocol: Some("tcp".into()),
            port_range_min: Some(1000 + k as u16),
            port_range_max: Some(1000 + k as u16),
            remote_ip_prefix: Some(
                format!("172.{}.{}.0/24", 16 + g % 16, k % 256)
                    .parse()
                    .unwrap(),
            ),
            remote_group_id: None,
            remote_address_group_id: None,
        };
        match k % 10 {
            // One wide rule per group that overlaps the narrow ones: a second layer.
            0 if k == 0 => {
                r.port_range_min = Some(1);
                r.port_range_max = Some(1024 + k as u16);
                r.remote_ip_prefix = Some("172.16.0.0/12".parse().unwrap());
            }
            1 => r.protocol = Some("udp".into()),
            2 => {
                r.protocol = Some("icmp".into());
                r.port_range_min = Some((k % 40) as u16);
                r.port_range_max = None;
            }
            3 => {
                r.remote_ip_prefix = None;
                r.remote_group_id = Some(format!("sg{:03}", (g + k) % groups));
            }
            _ => {}
        }
        m.rules.push(r);
    }
    for g in 0..groups {
        let members: BTreeSet<_> = (0..ports)
            .filter(|p| p % groups == g || (p + 1) % groups == g)
            .map(|p| {
                format!("10.{}.{}.{}/32", 100 + p / 65536, (p / 256) % 256, p % 256)
                    .parse()
                    .unwrap()
            })
            .collect();
        m.group_members.insert(format!("sg{g:03}"), members);
    }
    m
}

fn median(mut v: Vec<Duration>) -> String {
    v.sort();
    let d = v[v.len() / 2];
    format!("{:.2}", d.as_secs_f64() * 1000.0)
}

fn time<T>(mut f: impl FnMut() -> T) -> (String, T) {
    let mut times = Vec::new();
    let mut last = None;
    for _ in 0..RUNS {
        let t = Instant::now();
        last = Some(f());
        times.push(t.elapsed());
    }
    (median(times), last.expect("ran"))
}

fn nft(ns: &str, args: &[&str], stdin: Option<&str>) -> Result<String, String> {
    let mut child = Command::new("ip")
        .args(["netns", "exec", ns, "nft"])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| e.to_string())?;
    if let Some(s) = stdin {
        child
            .stdin
            .take()
            .expect("piped")
            .write_all(s.as_bytes())
            .map_err(|e| e.to_string())?;
    }
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

fn observe(ns: &str) -> (Vec<String>, ObservedTables) {
    let mut docs = Vec::new();
    let mut o = ObservedTables::default();
    for cmd in LIST_COMMANDS {
        let mut args = vec!["-j", "-n"];
        args.extend(cmd.split(' '));
        if let Ok(json) = nft(ns, &args, None) {
            o.add_json(&json).expect("listing parses");
            docs.push(json);
        }
    }
    (docs, o)
}

struct Netns(String);

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let rules: usize = args.next().map_or(5000, |a| a.parse().expect("RULES"));
    let ports: usize = args.next().map_or(100, |a| a.parse().expect("PORTS"));
    let m = model(rules, ports);
    let mut added = m.clone();
    added.rules.push(Rule {
        id: "rule-new".into(),
        security_group_id: "sg000".into(),
        direction: Direction::Ingress,
        ethertype: EtherType::IPv4,
        protocol: Some("tcp".into()),
        port_range_min: Some(443),
        port_range_max: Some(443),
        remote_ip_prefix: Some("192.0.2.0/24".parse().unwrap()),
        remote_group_id: None,
        remote_address_group_id: None,
    });

    println!(
        "host: {rules} rules, {} groups, {ports} ports\n",
        (rules / 100).max(1)
    );
    println!("| step | ms (median of {RUNS}) |");
    println!("|---|---:|");
    let (t, script) = time(|| render(&m));
    let sg_rules = script
        .lines()
        .filter(|l| l.starts_with("add rule inet neutrino sg-"))
        .count();
    println!(
        "| render the full script ({} lines; {sg_rules} nft rules in the {} group chains) | {t} |",
        script.lines().count(),
        2 * (rules / 100).max(1)
    );

    let root = std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"));
    if !root {
        println!("\n(not root: kernel steps skipped)");
        return;
    }
    let ns = Netns(format!("nfwbench{}", std::process::id()));
    Command::new("ip")
        .args(["netns", "add", &ns.0])
        .status()
        .expect("ip netns add");
    let t = Instant::now();
    nft(&ns.0, &["-f", "-"], Some(&script)).expect("full load");
    println!(
        "| load the full script (`nft -f`, once) | {:.2} |",
        t.elapsed().as_secs_f64() * 1000.0
    );

    let (t, (docs, observed)) = time(|| observe(&ns.0));
    println!("| list both tables (`nft -j -n list table` ×2) | {t} |");
    let (t, _) = time(|| {
        let mut o = ObservedTables::default();
        for d in &docs {
            o.add_json(d).expect("parses");
        }
        o
    });
    println!(
        "| parse the listings ({} KiB) | {t} |",
        docs.iter().map(String::len).sum::<usize>() / 1024
    );
    let (t, p) = time(|| plan(&added, &observed));
    println!(
        "| plan one added rule ({} command) | {t} |",
        p.commands().len()
    );
    let (t, p0) = time(|| plan(&m, &observed));
    assert!(p0.is_empty(), "not idempotent on the kernel listing");
    println!("| plan with nothing changed (empty) | {t} |");

    let mut apply_add = Vec::new();
    let mut apply_del = Vec::new();
    let mut end_to_end = Vec::new();
    for _ in 0..RUNS {
        let t0 = Instant::now();
        let (_, o) = observe(&ns.0);
        let p = plan(&added, &o);
        let t1 = Instant::now();
        nft(&ns.0, &["-f", "-"], Some(&p.script())).expect("apply add");
        apply_add.push(t1.elapsed());
        end_to_end.push(t0.elapsed());
        let (_, o) = observe(&ns.0);
        let back = plan(&m, &o);
        assert_eq!(back.commands().len(), 1);
        let t2 = Instant::now();
        nft(&ns.0, &["-f", "-"], Some(&back.script())).expect("apply delete");
        apply_del.push(t2.elapsed());
    }
    println!(
        "| apply one added rule (`nft -f`, one element) | {} |",
        median(apply_add)
    );
    println!(
        "| apply its removal (`nft -f`, one element) | {} |",
        median(apply_del)
    );
    println!(
        "| list + parse + plan + apply one added rule | {} |",
        median(end_to_end)
    );
}
