//! BGP speakers on the host: the speakers the server bound to this agent's BGP role, with
//! their peers and the routes the server computed for them, rendered as one BIRD 2
//! configuration, and the plan that brings the agent's `bird` to it.
//!
//! As neutron-dynamic-routing's os-ken driver, a speaker only announces: every session
//! imports nothing, and exports exactly the speaker's advertised prefixes, each with the next
//! hop the server computed (the router's gateway address), never the speaker's own address.
//! A session's address family is the speaker's `ip_version`; a peer of the other version is
//! left out (os-ken would open a session that carries none of the speaker's routes). Each
//! speaker has a table of its own, filled by a static protocol with its prefixes, so two
//! speakers never mix their routes.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr};

use ipnet::IpNet;
use serde_json::Value;

/// One peer of a speaker.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Peer {
    /// The peer's id (names the BIRD protocol).
    pub id: String,
    /// The peer's address.
    pub ip: IpAddr,
    /// Its AS number.
    pub remote_as: u32,
    /// The TCP MD5 password (`auth_type` md5).
    pub password: Option<String>,
}

/// One speaker hosted here, as the server describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Speaker {
    /// The speaker's id.
    pub id: String,
    /// `local_as`.
    pub local_as: u32,
    /// 4 or 6.
    pub ip_version: u8,
    /// Its peers.
    pub peers: Vec<Peer>,
    /// Prefix → next hop (routes without a next hop are not announced).
    pub routes: BTreeMap<IpNet, IpAddr>,
}

/// The speakers of the agent-facing document
/// `{"bgp_speakers": [{"id", "local_as", "ip_version", "peers": [{"id", "peer_ip",
/// "remote_as", "auth_type", "password"}], "advertised_routes": [{"destination",
/// "next_hop"}]}]}`, sorted by id. Entries that make no sense are skipped.
pub fn speakers_from_json(doc: &Value) -> Vec<Speaker> {
    let mut out: Vec<Speaker> = doc["bgp_speakers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(speaker_from_json)
        .collect();
    out.sort_by(|a, b| a.id.cmp(&b.id));
    out
}

fn speaker_from_json(doc: &Value) -> Option<Speaker> {
    let id = doc["id"].as_str()?.to_string();
    let local_as = u32::try_from(doc["local_as"].as_u64()?).ok()?;
    let ip_version = match doc["ip_version"].as_u64() {
        Some(6) => 6,
        _ => 4,
    };
    let mut peers: Vec<Peer> = doc["peers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| {
            let password = (p["auth_type"] == "md5")
                .then(|| p["password"].as_str().map(str::to_string))
                .flatten();
            Some(Peer {
                id: p["id"].as_str()?.to_string(),
                ip: p["peer_ip"].as_str()?.parse().ok()?,
                remote_as: u32::try_from(p["remote_as"].as_u64()?).ok()?,
                password,
            })
        })
        .collect();
    peers.sort_by(|a, b| a.id.cmp(&b.id));
    let routes = doc["advertised_routes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| {
            let net: IpNet = r["destination"].as_str()?.parse().ok()?;
            let hop: IpAddr = r["next_hop"].as_str()?.parse().ok()?;
            Some((net.trunc(), hop))
        })
        .collect();
    Some(Speaker {
        id,
        local_as,
        ip_version,
        peers,
        routes,
    })
}

/// A BIRD symbol from an id: its first 12 hex digits.
fn short(id: &str) -> String {
    id.chars()
        .filter(char::is_ascii_hexdigit)
        .take(12)
        .collect::<String>()
        .to_ascii_lowercase()
}

/// Whether BIRD's configuration lexer can carry `s` in a double-quoted string.
fn quotable(s: &str) -> bool {
    !s.chars().any(|c| c == '"' || c == '\\' || c.is_control())
}

/// The name of the BIRD protocol of one session (`birdc show protocols` lists it).
pub fn protocol_name(speaker: &str, peer: &str) -> String {
    format!("s{}_p{}", short(speaker), short(peer))
}

/// The BIRD 2 configuration of the speakers hosted here: router id `router_id`, log to
/// `log`. Deterministic: the same speakers give the same text.
pub fn render(router_id: Ipv4Addr, log: &str, speakers: &[Speaker]) -> String {
    let mut c = String::new();
    let _ = writeln!(
        c,
        "# BGP speakers of this neutrino agent; rewritten on every change, do not edit."
    );
    let _ = writeln!(c, "router id {router_id};");
    if quotable(log) {
        let _ = writeln!(c, "log \"{log}\" all;");
    }
    let _ = writeln!(c, "protocol device {{ }}");
    for sp in speakers {
        let s = format!("s{}", short(&sp.id));
        let family = if sp.ip_version == 6 { "ipv6" } else { "ipv4" };
        let _ = writeln!(c);
        let _ = writeln!(c, "# speaker {} (AS {})", sp.id, sp.local_as);
        let _ = writeln!(c, "{family} table {s}_routes;");
        let _ = writeln!(c, "protocol static {s}_static {{");
        let _ = writeln!(c, "  {family} {{ table {s}_routes; }};");
        let mine = |net: &IpNet| (sp.ip_version == 6) == matches!(net, IpNet::V6(_));
        for net in sp.routes.keys().filter(|n| mine(n)) {
            let _ = writeln!(c, "  route {net} blackhole;");
        }
        let _ = writeln!(c, "}}");
        // One prefix-set match per next hop (a trie in BIRD), not one `if` per prefix: the
        // filter runs for every exported route, so a chain of `if net = ...` made announcing
        // n prefixes cost n² steps (minutes for 10,000).
        let mut by_hop: BTreeMap<IpAddr, Vec<&IpNet>> = BTreeMap::new();
        for (net, hop) in sp.routes.iter().filter(|(n, _)| mine(n)) {
            by_hop.entry(*hop).or_default().push(net);
        }
        let _ = writeln!(c, "filter {s}_export {{");
        for (hop, nets) in &by_hop {
            let _ = write!(c, "  if net ~ [");
            for (i, net) in nets.iter().enumerate() {
                let sep = if i == 0 { " " } else { ", " };
                if i > 0 && i % 8 == 0 {
                    let _ = write!(c, ",\n    {net}");
                } else {
                    let _ = write!(c, "{sep}{net}");
                }
            }
            let _ = writeln!(c, " ] then {{ bgp_next_hop = {hop}; accept; }}");
        }
        let _ = writeln!(c, "  reject;");
        let _ = writeln!(c, "}}");
        for peer in &sp.peers {
            let name = protocol_name(&sp.id, &peer.id);
            if peer.ip.is_ipv6() != (sp.ip_version == 6) {
                let _ = writeln!(
                    c,
                    "# peer {} ({}): not of the speaker's IP version, no session",
                    peer.id, peer.ip
                );
                continue;
            }
            if peer.password.as_deref().is_some_and(|p| !quotable(p)) {
                let _ = writeln!(
                    c,
                    "# peer {} ({}): its password cannot be written for BIRD, no session",
                    peer.id, peer.ip
                );
                continue;
            }
            let _ = writeln!(c, "protocol bgp {name} {{");
            let _ = writeln!(c, "  description \"peer {}\";", peer.id);
            let _ = writeln!(c, "  local as {};", sp.local_as);
            let _ = writeln!(c, "  neighbor {} as {};", peer.ip, peer.remote_as);
            // os-ken connects to the peer over any number of hops.
            if sp.local_as != peer.remote_as {
                let _ = writeln!(c, "  multihop;");
            }
            if let Some(password) = &peer.password {
                let _ = writeln!(c, "  password \"{password}\";");
            }
            // A session that failed (peer restarting, speaker moved here) is tried again
            // within seconds, not after BIRD's default two minutes.
            let _ = writeln!(c, "  connect retry time 5;");
            let _ = writeln!(c, "  error wait time 5, 60;");
            let _ = writeln!(c, "  {family} {{");
            let _ = writeln!(c, "    table {s}_routes;");
            let _ = writeln!(c, "    import none;");
            let _ = writeln!(c, "    export filter {s}_export;");
            let _ = writeln!(c, "  }};");
            let _ = writeln!(c, "}}");
        }
    }
    c
}

/// What the agent finds of its `bird`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ObservedBird {
    /// The configuration file now (empty when missing).
    pub conf: String,
    /// A `bird` started with that file runs.
    pub running: bool,
}

/// One step toward the wanted `bird`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BirdOp {
    /// Write the configuration and start `bird` (stopping a stale one first).
    Start {
        /// The configuration.
        conf: String,
    },
    /// Write the configuration and have the running `bird` load it (`birdc configure`).
    Reload {
        /// The configuration.
        conf: String,
    },
    /// Stop `bird` and remove its files.
    Stop,
}

/// The operations from `have` to `want` (`None`: no speaker here, no `bird`).
pub fn plan_bird(want: Option<&str>, have: &ObservedBird) -> Vec<BirdOp> {
    match want {
        None if have.running || !have.conf.is_empty() => vec![BirdOp::Stop],
        None => Vec::new(),
        Some(conf) if !have.running => vec![BirdOp::Start {
            conf: conf.to_string(),
        }],
        Some(conf) if have.conf != conf => vec![BirdOp::Reload {
            conf: conf.to_string(),
        }],
        Some(_) => Vec::new(),
    }
}

/// The state of every BGP session in `birdc show protocols` output: protocol name → the
/// state and info columns (`up Established`, `start Active` ...).
pub fn session_states(show_protocols: &str) -> BTreeMap<String, String> {
    show_protocols
        .lines()
        .filter_map(|line| {
            let cols: Vec<&str> = line.split_whitespace().collect();
            if cols.len() < 4 || cols[1] != "BGP" {
                return None;
            }
            // name proto table state since(1 or 2 columns) info...
            let state = cols[3];
            let info = cols
                .iter()
                .skip(4)
                .skip_while(|c| c.contains('-') || c.contains(':'))
                .copied()
                .collect::<Vec<_>>()
                .join(" ");
            Some((
                cols[0].to_string(),
                format!("{state} {info}").trim().to_string(),
            ))
        })
        .collect()
}

/// The BGP finite state machine state of a session from its [`session_states`] entry
/// (`up Established` → `Established`, `start Active Socket: ...` → `Active`; a session
/// BIRD shows without one, e.g. `down`, is `Idle`).
pub fn fsm_state(state: &str) -> &str {
    state.split_whitespace().nth(1).unwrap_or("Idle")
}

/// What the agent reports about its speakers in its BGP dynamic routing agent entry's
/// `configurations`: upstream's dragent counts (`bgp_speakers`, `bgp_peers`,
/// `advertise_routes`) and, as a Neutrino extension, the state of each peer's session by
/// peer id (`"neutrino:peer_states": {"<peer id>": "Established"}`; peers without a session
/// here, e.g. of the other IP version, are absent).
pub fn dragent_status(speakers: &[Speaker], sessions: &BTreeMap<String, String>) -> Value {
    let mut states = serde_json::Map::new();
    for s in speakers {
        for p in &s.peers {
            if let Some(state) = sessions.get(&protocol_name(&s.id, &p.id)) {
                states.insert(p.id.clone(), Value::from(fsm_state(state)));
            }
        }
    }
    serde_json::json!({
        "bgp_speakers": speakers.len(),
        "bgp_peers": speakers.iter().map(|s| s.peers.len()).sum::<usize>(),
        "advertise_routes": speakers.iter().map(|s| s.routes.len()).sum::<usize>(),
        "neutrino:peer_states": states,
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const SP: &str = "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d";
    const P1: &str = "11111111-2222-4333-8444-555555555555";
    const P2: &str = "66666666-7777-4888-8999-aaaaaaaaaaaa";

    fn doc() -> Value {
        json!({"bgp_speakers": [{
        "id": SP, "local_as": 64512, "ip_version": 4,
        "peers": [
            {"id": P2, "peer_ip": "198.18.0.9", "remote_as": 64513, "auth_type": "md5",
             "password": "s3cret"},
            {"id": P1, "peer_ip": "198.18.0.2", "remote_as": 64513, "auth_type": "none"},
            {"id": "bad", "peer_ip": "not an address", "remote_as": 1},
        ],
        "advertised_routes": [
            {"destination": "10.0.1.0/24", "next_hop": "198.18.100.10"},
            {"destination": "10.0.0.0/24", "next_hop": "198.18.100.10"},
            {"destination": "203.0.113.0/24", "next_hop": null},
        ]}]})
    }

    #[test]
    fn renders_one_session_per_peer_exporting_exactly_the_advertised_routes() {
        let speakers = speakers_from_json(&doc());
        assert_eq!(speakers.len(), 1);
        assert_eq!(speakers[0].peers.len(), 2, "the malformed peer is skipped");
        let conf = render("198.18.0.1".parse().unwrap(), "/s/bird.log", &speakers);
        let expected = r#"# BGP speakers of this neutrino agent; rewritten on every change, do not edit.
router id 198.18.0.1;
log "/s/bird.log" all;
protocol device { }

# speaker 0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d (AS 64512)
ipv4 table s0a1b2c3d4e5f_routes;
protocol static s0a1b2c3d4e5f_static {
  ipv4 { table s0a1b2c3d4e5f_routes; };
  route 10.0.0.0/24 blackhole;
  route 10.0.1.0/24 blackhole;
}
filter s0a1b2c3d4e5f_export {
  if net ~ [ 10.0.0.0/24, 10.0.1.0/24 ] then { bgp_next_hop = 198.18.100.10; accept; }
  reject;
}
protocol bgp s0a1b2c3d4e5f_p111111112222 {
  description "peer 11111111-2222-4333-8444-555555555555";
  local as 64512;
  neighbor 198.18.0.2 as 64513;
  multihop;
  connect retry time 5;
  error wait time 5, 60;
  ipv4 {
    table s0a1b2c3d4e5f_routes;
    import none;
    export filter s0a1b2c3d4e5f_export;
  };
}
protocol bgp s0a1b2c3d4e5f_p666666667777 {
  description "peer 66666666-7777-4888-8999-aaaaaaaaaaaa";
  local as 64512;
  neighbor 198.18.0.9 as 64513;
  multihop;
  password "s3cret";
  connect retry time 5;
  error wait time 5, 60;
  ipv4 {
    table s0a1b2c3d4e5f_routes;
    import none;
    export filter s0a1b2c3d4e5f_export;
  };
}
"#;
        assert_eq!(conf, expected);
        // Deterministic whatever the order the server lists things in.
        let mut shuffled = doc();
        shuffled["bgp_speakers"][0]["peers"]
            .as_array_mut()
            .unwrap()
            .reverse();
        let again = render(
            "198.18.0.1".parse().unwrap(),
            "/s/bird.log",
            &speakers_from_json(&shuffled),
        );
        assert_eq!(again, conf);
    }

    #[test]
    fn ipv6_speakers_use_the_ipv6_channel_and_skip_ipv4_peers_and_routes() {
        let doc = json!({"bgp_speakers": [{
        "id": SP, "local_as": 65000, "ip_version": 6,
        "peers": [
            {"id": P1, "peer_ip": "2001:db8::2", "remote_as": 65000, "auth_type": "none"},
            {"id": P2, "peer_ip": "198.18.0.2", "remote_as": 65001, "auth_type": "none"},
        ],
        "advertised_routes": [
            {"destination": "2001:db8:1::/64", "next_hop": "2001:db8::10"},
            {"destination": "10.0.0.0/24", "next_hop": "198.18.0.10"},
        ]}]});
        let conf = render(
            "192.0.2.1".parse().unwrap(),
            "/l",
            &speakers_from_json(&doc),
        );
        assert!(conf.contains("ipv6 table s0a1b2c3d4e5f_routes;"));
        assert!(conf.contains("route 2001:db8:1::/64 blackhole;"));
        assert!(conf.contains("bgp_next_hop = 2001:db8::10;"));
        assert!(!conf.contains("10.0.0.0/24"));
        assert!(conf.contains("neighbor 2001:db8::2 as 65000;"));
        // iBGP: a direct session.
        assert!(!conf.contains("multihop"));
        assert!(conf.contains("# peer 66666666-7777-4888-8999-aaaaaaaaaaaa (198.18.0.2): not"));
        assert!(!conf.contains("neighbor 198.18.0.2"));
    }

    #[test]
    fn a_password_bird_cannot_quote_drops_the_session_not_the_config() {
        let mut d = doc();
        d["bgp_speakers"][0]["peers"][0]["password"] = json!("a\"b");
        let conf = render("198.18.0.1".parse().unwrap(), "/l", &speakers_from_json(&d));
        assert!(!conf.contains("a\"b"));
        assert!(!conf.contains("neighbor 198.18.0.9"));
        assert!(conf.contains("neighbor 198.18.0.2"));
        // auth_type none ignores a stray password.
        let mut d = doc();
        d["bgp_speakers"][0]["peers"][1]["password"] = json!("x");
        let conf = render("198.18.0.1".parse().unwrap(), "/l", &speakers_from_json(&d));
        assert_eq!(conf.matches("password").count(), 1);
    }

    #[test]
    fn no_routes_still_runs_the_sessions() {
        let mut d = doc();
        d["bgp_speakers"][0]["advertised_routes"] = json!([]);
        let conf = render("198.18.0.1".parse().unwrap(), "/l", &speakers_from_json(&d));
        assert!(conf.contains("filter s0a1b2c3d4e5f_export {\n  reject;\n}"));
        assert_eq!(conf.matches("protocol bgp").count(), 2);
    }

    #[test]
    fn plan_starts_reloads_stops_and_is_idempotent() {
        let gone = ObservedBird::default();
        assert_eq!(plan_bird(None, &gone), vec![]);
        assert_eq!(
            plan_bird(Some("a"), &gone),
            vec![BirdOp::Start { conf: "a".into() }]
        );
        let running = ObservedBird {
            conf: "a".into(),
            running: true,
        };
        assert_eq!(plan_bird(Some("a"), &running), vec![]);
        assert_eq!(
            plan_bird(Some("b"), &running),
            vec![BirdOp::Reload { conf: "b".into() }]
        );
        assert_eq!(plan_bird(None, &running), vec![BirdOp::Stop]);
        // Died: started again; stopped with files left behind: cleaned up.
        let dead = ObservedBird {
            conf: "a".into(),
            running: false,
        };
        assert_eq!(
            plan_bird(Some("a"), &dead),
            vec![BirdOp::Start { conf: "a".into() }]
        );
        assert_eq!(plan_bird(None, &dead), vec![BirdOp::Stop]);
    }

    #[test]
    fn session_states_from_show_protocols() {
        let out = "BIRD 2.0.12 ready.\n\
Name       Proto      Table      State  Since         Info\n\
device1    Device     ---        up     22:10:01.123  \n\
s0a1b2c3d4e5f_static Static s0a1b2c3d4e5f_routes up 22:10:01.123\n\
s0a1b2c3d4e5f_p111111112222 BGP        ---        up     22:10:03.456  Established   \n\
s0a1b2c3d4e5f_p666666667777 BGP        ---        start  22:10:01.123  Active        Socket: Connection refused\n";
        let states = session_states(out);
        assert_eq!(states.len(), 2);
        assert_eq!(states["s0a1b2c3d4e5f_p111111112222"], "up Established");
        assert_eq!(
            states["s0a1b2c3d4e5f_p666666667777"],
            "start Active Socket: Connection refused"
        );
    }

    #[test]
    fn dragent_status_counts_and_peer_states() {
        let doc = json!({"bgp_speakers": [{
        "id": "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d", "local_as": 64512, "ip_version": 4,
        "peers": [
            {"id": "11111111-2222-4333-8444-555555555555", "peer_ip": "198.18.0.2",
             "remote_as": 64513, "auth_type": "none"},
            {"id": "66666666-7777-4888-8999-aaaaaaaaaaaa", "peer_ip": "198.18.0.3",
             "remote_as": 64513, "auth_type": "none"},
            {"id": "bbbbbbbb-7777-4888-8999-aaaaaaaaaaaa", "peer_ip": "198.18.0.4",
             "remote_as": 64513, "auth_type": "none"},
        ],
        "advertised_routes": [
            {"destination": "10.0.0.0/24", "next_hop": "198.19.0.10"},
            {"destination": "10.0.1.0/24", "next_hop": "198.19.0.10"},
        ]}]});
        let speakers = speakers_from_json(&doc);
        let sp = "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d";
        let sessions: BTreeMap<String, String> = [
            (
                protocol_name(sp, "11111111-2222-4333-8444-555555555555"),
                "up Established".to_string(),
            ),
            (
                protocol_name(sp, "66666666-7777-4888-8999-aaaaaaaaaaaa"),
                "start Active Socket: Connection refused".to_string(),
            ),
        ]
        .into();
        assert_eq!(
            dragent_status(&speakers, &sessions),
            json!({"bgp_speakers": 1, "bgp_peers": 3, "advertise_routes": 2,
                   "neutrino:peer_states": {
                       "11111111-2222-4333-8444-555555555555": "Established",
                       "66666666-7777-4888-8999-aaaaaaaaaaaa": "Active"}})
        );
        assert_eq!(fsm_state("down"), "Idle");
        assert_eq!(
            dragent_status(&[], &BTreeMap::new()),
            json!({"bgp_speakers": 0, "bgp_peers": 0, "advertise_routes": 0,
                   "neutrino:peer_states": {}})
        );
    }
}
