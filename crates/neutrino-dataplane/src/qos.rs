//! QoS on the host side of instance ports: a port's policy (its own `qos_policy_id`, else its
//! network's) becomes traffic control and nftables state on its `tap…` device.
//!
//! - **`ingress` bandwidth limit** (traffic *to* the instance, leaving the host through the
//!   tap): a `tbf` root qdisc on the tap.
//! - **`egress` bandwidth limit** (traffic *from* the instance, arriving on the tap): an
//!   `ingress` qdisc on the tap whose `u32` match-all filter redirects every frame to the
//!   port's `ifb` device `qif…`, which shapes it with a `tbf` root qdisc and hands it back to
//!   the tap's receive path.
//! - **DSCP marking** (traffic from the instance): one bridge-family table `neutrino_qos`
//!   whose prerouting chain sets `ip dscp` / `ip6 dscp` by input tap (`iifname`); the bridge
//!   sees the frames after the tap's `ifb` detour, where a netdev ingress hook on the tap
//!   would not. Loaded whole, known by the digest in its comment.
//!
//! Rates follow the Linux bridge agent: `max_kbps` kilobits per second, burst `max_burst_kbps`
//! kilobits, or 80 % of `max_kbps` when that is 0. Desired and observed state have one shape
//! ([`QosState`]); [`plan`] lists the commands between them and is empty once they agree.
//! The tap's own qdiscs vanish with the tap; the `ifb` devices and chains of ports that are no
//! longer here are removed by the plan.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use crate::cluster::{text, Cluster};
use crate::desired::PortOutcome;
use crate::router::digest;

/// The bridge-family table of DSCP marking.
pub const TABLE: &str = "neutrino_qos";
/// `tbf` latency: how long a packet may wait for tokens.
const LATENCY: &str = "50ms";
/// Smallest burst in bytes (a full frame must fit).
const MIN_BURST: u64 = 1600;
/// Largest burst in bytes, and in seconds at the rate: the kernel keeps a bucket as a time
/// in 32-bit scheduler ticks (about 68 s), and reads larger ones back wrong.
const MAX_BURST: u64 = 1 << 30;
const MAX_BURST_SECS: u64 = 60;

/// A token bucket: `rate` and `burst` in bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shaper {
    /// Bytes per second.
    pub rate: u64,
    /// Bucket size in bytes.
    pub burst: u64,
}

impl Shaper {
    /// The bucket of a bandwidth limit rule (`max_kbps`, `max_burst_kbps`).
    pub fn of_rule(max_kbps: u64, max_burst_kbps: u64) -> Shaper {
        let burst_kbit = if max_burst_kbps == 0 {
            max_kbps * 8 / 10
        } else {
            max_burst_kbps
        };
        let rate = max_kbps.saturating_mul(1000) / 8;
        let burst = (burst_kbit.saturating_mul(1000) / 8)
            .min(MAX_BURST)
            .min(rate.saturating_mul(MAX_BURST_SECS))
            .max(MIN_BURST);
        Shaper { rate, burst }
    }

    /// Whether an observed bucket is this one (the kernel keeps the burst as a time, so it
    /// reads back rounded).
    fn matches(&self, have: &Shaper) -> bool {
        self.rate == have.rate && self.burst.abs_diff(have.burst) <= self.burst / 100 + 64
    }

    /// `tbf` arguments.
    fn args(&self) -> Vec<String> {
        vec![
            "tbf".into(),
            "rate".into(),
            format!("{}bit", self.rate * 8),
            "burst".into(),
            self.burst.to_string(),
            "latency".into(),
            LATENCY.into(),
        ]
    }
}

/// The QoS state of a host's ports.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct QosState {
    /// Root `tbf` of taps (traffic to instances).
    pub to_vm: BTreeMap<String, Shaper>,
    /// Taps whose received traffic goes through their `ifb` device.
    pub redirected: BTreeSet<String>,
    /// The `ifb` devices (`qif…`) and their root `tbf` (traffic from instances).
    pub ifbs: BTreeMap<String, Option<Shaper>>,
    /// The DSCP table: digest and script (empty when observed); `None`: no table.
    pub dscp: Option<(String, String)>,
}

/// The `ifb` device of a port's tap: `qif` + the tap's id part.
pub fn ifb_of(tap: &str) -> String {
    format!("qif{}", tap.strip_prefix("tap").unwrap_or(tap))
}

/// One step of a QoS plan.
pub type QosOp = crate::host_op::HostOp;

/// What a port's policy asks: `(to the instance, from the instance, DSCP mark)`.
type PortQos = (Option<Shaper>, Option<Shaper>, Option<u8>);

fn u64_of(v: &Value) -> u64 {
    v.as_u64().unwrap_or(0)
}

/// The rules of `policy` as a port sees them.
fn policy_qos(cluster: &Cluster, policy: &str) -> PortQos {
    let mut out: PortQos = (None, None, None);
    for rule in cluster
        .all("bandwidth_limit_rule")
        .filter(|r| text(r, "qos_policy_id") == policy)
    {
        let shaper = Shaper::of_rule(u64_of(&rule["max_kbps"]), u64_of(&rule["max_burst_kbps"]));
        if shaper.rate == 0 {
            continue;
        }
        match text(rule, "direction") {
            "ingress" => out.0 = Some(shaper),
            _ => out.1 = Some(shaper),
        }
    }
    out.2 = cluster
        .all("dscp_marking_rule")
        .find(|r| text(r, "qos_policy_id") == policy)
        .and_then(|r| r["dscp_mark"].as_u64())
        .and_then(|m| u8::try_from(m).ok())
        .filter(|m| *m < 64);
    out
}

/// The QoS state the instance ports plugged on this host (`ports`, as [`crate::desired`]
/// decided) should have.
pub fn desired(cluster: &Cluster, ports: &BTreeMap<String, PortOutcome>) -> QosState {
    let mut out = QosState::default();
    let mut marks: BTreeMap<String, u8> = BTreeMap::new();
    for (id, outcome) in ports {
        let PortOutcome::Plug { tap, .. } = outcome else {
            continue;
        };
        let Some(port) = cluster.get("port", id) else {
            continue;
        };
        if text(port, "device_owner").starts_with("network:") || !tap.starts_with("tap") {
            continue;
        }
        let own = text(port, "qos_policy_id");
        let policy = if own.is_empty() {
            cluster
                .get("network", text(port, "network_id"))
                .map_or("", |n| text(n, "qos_policy_id"))
        } else {
            own
        };
        if policy.is_empty() {
            continue;
        }
        let (to_vm, from_vm, mark) = policy_qos(cluster, policy);
        if let Some(s) = to_vm {
            out.to_vm.insert(tap.clone(), s);
        }
        if let Some(s) = from_vm {
            out.redirected.insert(tap.clone());
            out.ifbs.insert(ifb_of(tap), Some(s));
        }
        if let Some(m) = mark {
            marks.insert(tap.clone(), m);
        }
    }
    out.dscp = dscp_table(&marks);
    out
}

/// The DSCP table for `marks` (tap → mark), or `None` when nothing is marked.
fn dscp_table(marks: &BTreeMap<String, u8>) -> Option<(String, String)> {
    if marks.is_empty() {
        return None;
    }
    let mut body = String::from("  chain dscp {\n    type filter hook prerouting priority -300;\n");
    for (tap, mark) in marks {
        body.push_str(&format!(
            "    iifname \"{tap}\" ip dscp set {mark}\n    iifname \"{tap}\" ip6 dscp set {mark}\n"
        ));
    }
    body.push_str("  }\n");
    let digest = digest(&body);
    let script = format!(
        "table bridge {TABLE} {{}}\ndelete table bridge {TABLE}\ntable bridge {TABLE} {{\n  comment \"{digest}\"\n{body}}}\n"
    );
    Some((digest, script))
}

/// What the kernel reports: `tc -j qdisc show`, `ip -j link show type ifb`, and the text
/// listing of the DSCP table (empty when there is none).
#[derive(Clone, Debug, Default)]
pub struct RawQos {
    /// `tc -j qdisc show` (every device).
    pub qdiscs: Value,
    /// `ip -j link show type ifb`.
    pub ifbs: Value,
    /// `nft list table bridge neutrino_qos`.
    pub table: String,
}

/// The agent's QoS state in what the kernel reports: `tbf` roots and `ingress` qdiscs of
/// taps, `qif…` devices and their `tbf` roots, the DSCP table's digest.
pub fn observe(raw: &RawQos) -> QosState {
    let mut out = QosState::default();
    for link in raw.ifbs.as_array().into_iter().flatten() {
        let name = text(link, "ifname");
        if name.starts_with("qif") {
            out.ifbs.insert(name.to_string(), None);
        }
    }
    for q in raw.qdiscs.as_array().into_iter().flatten() {
        let dev = text(q, "dev");
        match text(q, "kind") {
            "tbf" if q["root"] == true => {
                let shaper = Shaper {
                    rate: u64_of(&q["options"]["rate"]),
                    burst: u64_of(&q["options"]["burst"]),
                };
                if dev.starts_with("tap") {
                    out.to_vm.insert(dev.to_string(), shaper);
                } else if let Some(slot) = out.ifbs.get_mut(dev) {
                    *slot = Some(shaper);
                }
            }
            "ingress" if dev.starts_with("tap") => {
                out.redirected.insert(dev.to_string());
            }
            _ => {}
        }
    }
    out.dscp = raw
        .table
        .lines()
        .find_map(|l| l.trim().strip_prefix("comment \""))
        .map(|rest| (rest.trim_end_matches('"').to_string(), String::new()));
    out
}

fn tbf(dev: &str, s: &Shaper) -> QosOp {
    let mut args: Vec<String> = ["tc", "qdisc", "replace", "dev", dev, "root"]
        .iter()
        .map(|a| a.to_string())
        .collect();
    args.extend(s.args());
    QosOp::Cmd(args)
}

/// The commands that take the host from `have` to `want`.
pub fn plan(want: &QosState, have: &QosState) -> Vec<QosOp> {
    let mut ops = Vec::new();
    // Devices first: a redirect needs its ifb.
    for (ifb, shaper) in &want.ifbs {
        let Some(shaper) = shaper else { continue };
        match have.ifbs.get(ifb) {
            None => {
                ops.push(QosOp::cmd(&["ip", "link", "add", ifb, "type", "ifb"]));
                ops.push(QosOp::cmd(&["ip", "link", "set", ifb, "up"]));
                ops.push(tbf(ifb, shaper));
            }
            Some(Some(h)) if shaper.matches(h) => {}
            Some(_) => ops.push(tbf(ifb, shaper)),
        }
    }
    for tap in &want.redirected {
        if !have.redirected.contains(tap) {
            let ifb = ifb_of(tap);
            ops.push(QosOp::cmd(&[
                "tc", "qdisc", "add", "dev", tap, "handle", "ffff:", "ingress",
            ]));
            ops.push(QosOp::cmd(&[
                "tc", "filter", "add", "dev", tap, "parent", "ffff:", "protocol", "all", "prio",
                "1", "u32", "match", "u32", "0", "0", "action", "mirred", "egress", "redirect",
                "dev", &ifb,
            ]));
        }
    }
    for tap in have.redirected.difference(&want.redirected) {
        ops.push(QosOp::cmd(&["tc", "qdisc", "del", "dev", tap, "ingress"]));
    }
    for ifb in have.ifbs.keys().filter(|i| !want.ifbs.contains_key(*i)) {
        ops.push(QosOp::cmd(&["ip", "link", "del", ifb]));
    }
    for (tap, shaper) in &want.to_vm {
        if !have.to_vm.get(tap).is_some_and(|h| shaper.matches(h)) {
            ops.push(tbf(tap, shaper));
        }
    }
    for tap in have.to_vm.keys().filter(|t| !want.to_vm.contains_key(*t)) {
        ops.push(QosOp::cmd(&["tc", "qdisc", "del", "dev", tap, "root"]));
    }
    match (&want.dscp, &have.dscp) {
        (Some((w, _)), Some((h, _))) if w == h => {}
        (Some((_, script)), _) => ops.push(QosOp::Nft(script.clone())),
        (None, Some(_)) => ops.push(QosOp::Nft(format!("delete table bridge {TABLE}\n"))),
        (None, None) => {}
    }
    ops
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const PORT: &str = "11111111-2222-3333-4444-555555555555";
    const TAP: &str = "tap11111111-22";

    fn cluster(port_policy: Value, net_policy: Value, rules: Value) -> Cluster {
        Cluster::from_snapshot(&json!({"revision": 1, "resources": {
            "network": [{"id": "n1", "qos_policy_id": net_policy}],
            "port": [{"id": PORT, "network_id": "n1", "device_owner": "compute:nova",
                      "qos_policy_id": port_policy}],
            "bandwidth_limit_rule": rules["bw"],
            "dscp_marking_rule": rules["dscp"],
        }}))
    }

    fn ports() -> BTreeMap<String, PortOutcome> {
        BTreeMap::from([(
            PORT.to_string(),
            PortOutcome::Plug {
                tap: TAP.into(),
                netns: "ns".into(),
                ifname: "eth0".into(),
                up: true,
            },
        )])
    }

    fn rules() -> Value {
        json!({"bw": [
            {"id": "r1", "qos_policy_id": "p1", "max_kbps": 10000, "max_burst_kbps": 0, "direction": "egress"},
            {"id": "r2", "qos_policy_id": "p1", "max_kbps": 20000, "max_burst_kbps": 800, "direction": "ingress"},
            {"id": "r3", "qos_policy_id": "p2", "max_kbps": 1000, "max_burst_kbps": 0, "direction": "ingress"}],
               "dscp": [{"id": "d1", "qos_policy_id": "p1", "dscp_mark": 26}]})
    }

    #[test]
    fn burst_defaults_to_eighty_percent() {
        assert_eq!(
            Shaper::of_rule(10000, 0),
            Shaper {
                rate: 1_250_000,
                burst: 1_000_000
            }
        );
        assert_eq!(Shaper::of_rule(8, 1).burst, MIN_BURST);
        // Bursts the kernel cannot hold are clamped: 60 s at the rate, 1 GiB at most.
        assert_eq!(Shaper::of_rule(8, 2_000_000).burst, 60_000);
        assert_eq!(Shaper::of_rule(2_147_483_647, 0).burst, MAX_BURST);
    }

    #[test]
    fn port_policy_wins_over_the_networks() {
        let want = desired(&cluster(json!("p1"), json!("p2"), rules()), &ports());
        assert_eq!(want.to_vm[TAP], Shaper::of_rule(20000, 800));
        assert!(want.redirected.contains(TAP));
        assert_eq!(want.ifbs["qif11111111-22"], Some(Shaper::of_rule(10000, 0)));
        let (_, script) = want.dscp.clone().unwrap();
        assert!(script.contains("iifname \"tap11111111-22\" ip dscp set 26"));
        assert!(script.contains("iifname \"tap11111111-22\" ip6 dscp set 26"));
        // Without its own policy, the port takes the network's.
        let want = desired(&cluster(Value::Null, json!("p2"), rules()), &ports());
        assert_eq!(want.to_vm[TAP], Shaper::of_rule(1000, 0));
        assert!(want.redirected.is_empty() && want.ifbs.is_empty() && want.dscp.is_none());
        // No policy anywhere: nothing.
        let want = desired(&cluster(Value::Null, Value::Null, rules()), &ports());
        assert_eq!(want, QosState::default());
    }

    fn observed(rate: u64, burst: u64) -> RawQos {
        RawQos {
            qdiscs: json!([
                {"kind": "tbf", "handle": "8001:", "root": true, "dev": TAP,
                 "options": {"rate": 2_500_000, "burst": 100_000}},
                {"kind": "ingress", "handle": "ffff:", "dev": TAP},
                {"kind": "tbf", "root": true, "dev": "qif11111111-22",
                 "options": {"rate": rate, "burst": burst}},
                {"kind": "noqueue", "root": true, "dev": "eth0"}]),
            ifbs: json!([{"ifname": "qif11111111-22"}, {"ifname": "ifb0"}]),
            table: String::new(),
        }
    }

    #[test]
    fn plans_nothing_once_applied_and_changes_live() {
        let want = desired(&cluster(json!("p1"), Value::Null, rules()), &ports());
        // From nothing: the ifb, its shaper, the redirect, the tap's shaper, the table.
        let ops = plan(&want, &QosState::default());
        let text: Vec<String> = ops.iter().map(|o| o.to_string()).collect();
        assert_eq!(text[0], "ip link add qif11111111-22 type ifb");
        assert!(text[2].starts_with(
            "tc qdisc replace dev qif11111111-22 root tbf rate 10000000bit burst 1000000"
        ));
        assert!(text[3].contains("handle ffff: ingress"));
        assert!(text[4].ends_with("mirred egress redirect dev qif11111111-22"));
        assert!(text[5].starts_with(
            "tc qdisc replace dev tap11111111-22 root tbf rate 20000000bit burst 100000"
        ));
        assert!(matches!(ops[6], QosOp::Nft(_)));
        // Applied (burst read back rounded): nothing to do.
        let mut have = observe(&observed(1_250_000, 999_936));
        have.dscp = want.dscp.clone();
        assert!(plan(&want, &have).is_empty(), "{:?}", plan(&want, &have));
        // The rule changes: only that shaper is replaced.
        let have = {
            let mut h = observe(&observed(625_000, 500_000));
            h.dscp = want.dscp.clone();
            h
        };
        let ops = plan(&want, &have);
        assert_eq!(ops.len(), 1);
        assert!(ops[0]
            .to_string()
            .starts_with("tc qdisc replace dev qif11111111-22"));
    }

    #[test]
    fn removing_the_policy_removes_everything() {
        let want = desired(&cluster(Value::Null, Value::Null, rules()), &ports());
        let mut have = observe(&observed(1_250_000, 1_000_000));
        have.dscp = Some(("abc".into(), String::new()));
        let text: Vec<String> = plan(&want, &have).iter().map(|o| o.to_string()).collect();
        assert_eq!(
            text,
            [
                "tc qdisc del dev tap11111111-22 ingress",
                "ip link del qif11111111-22",
                "tc qdisc del dev tap11111111-22 root",
                "nft -f - <<1 lines>>",
            ]
        );
        // Foreign ifb devices are not ours.
        assert!(!have.ifbs.contains_key("ifb0"));
    }

    #[test]
    fn observes_the_table_digest() {
        let raw = RawQos {
            table: "table bridge neutrino_qos {\n\tcomment \"00ff\"\n}\n".into(),
            ..RawQos::default()
        };
        assert_eq!(observe(&raw).dscp, Some(("00ff".into(), String::new())));
    }
}
