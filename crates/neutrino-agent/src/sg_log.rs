//! The security-group log of this host: a thread reads the packets the firewall's `log`
//! statements send to netlink log group [`neutrino_firewall::LOG_GROUP`] (an NFLOG socket in
//! the dataplane namespace) and appends one JSON line per packet to
//! `<state dir>/security-group-log.jsonl`:
//!
//! ```text
//! {"time":"2026-12-07T04:40:00.123Z","event":"DROP","port_id":"…","log_ids":["…"],
//!  "ethertype":"IPv4","protocol":"tcp","src_ip":"10.0.0.3","src_port":40022,
//!  "dst_ip":"10.0.0.4","dst_port":80}
//! ```
//!
//! `event` and `port_id` come from the statement's prefix (`DROP <port>` / `ACCEPT <port>`),
//! `log_ids` are the enabled logs covering that port and event when the packet was read,
//! and the 5-tuple from the packet's IP header (ports absent for protocols without them;
//! `protocol` a name for TCP, UDP, ICMP, ICMPv6 and SCTP, else the number). ACCEPT lines are
//! the first packet of each accepted connection; DROP lines every dropped packet; both are
//! limited to 100 a second per port by the statements.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use rustix::net::netlink::SocketAddrNetlink;
use rustix::net::{recv, sendto, RecvFlags, SendFlags};
use serde_json::{json, Value};

use crate::AgentError;

/// The log file's name in the state directory.
pub const FILE: &str = "security-group-log.jsonl";

/// Enabled logs by port: `(log id, event)` (`ALL`, `ACCEPT`, `DROP`).
pub type Covers = Arc<Mutex<BTreeMap<String, Vec<(String, String)>>>>;

const NFNL_SUBSYS_ULOG: u16 = 4;
const NFULNL_MSG_PACKET: u16 = 0;
const NFULNL_MSG_CONFIG: u16 = 1;
const NFULA_CFG_CMD: u16 = 1;
const NFULA_CFG_MODE: u16 = 2;
const NFULNL_CFG_CMD_BIND: u8 = 1;
const NFULNL_COPY_PACKET: u8 = 2;
const NFULA_PAYLOAD: u16 = 9;
const NFULA_PREFIX: u16 = 10;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLMSG_ERROR: u16 = 2;
const NLA_F_NESTED: u16 = 0x8000;

/// One logged packet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// `ACCEPT` or `DROP`.
    pub event: String,
    /// The port whose statement logged it.
    pub port: String,
    /// Source and destination addresses.
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// IP protocol number.
    pub protocol: u8,
    /// Source and destination ports (TCP, UDP, SCTP).
    pub ports: Option<(u16, u16)>,
}

fn attrs(mut body: &[u8]) -> Vec<(u16, &[u8])> {
    let mut out = Vec::new();
    while body.len() >= 4 {
        let len = usize::from(u16::from_ne_bytes([body[0], body[1]]));
        let kind = u16::from_ne_bytes([body[2], body[3]]) & !NLA_F_NESTED;
        if len < 4 || len > body.len() {
            break;
        }
        out.push((kind, &body[4..len]));
        body = &body[((len + 3) & !3).min(body.len())..];
    }
    out
}

/// The 5-tuple of an IPv4 or IPv6 packet (no extension headers followed).
fn five_tuple(p: &[u8]) -> Option<(IpAddr, IpAddr, u8, &[u8])> {
    match p.first()? >> 4 {
        4 => {
            let ihl = usize::from(p[0] & 0x0f) * 4;
            let src: [u8; 4] = p.get(12..16)?.try_into().ok()?;
            let dst: [u8; 4] = p.get(16..20)?.try_into().ok()?;
            Some((
                IpAddr::V4(Ipv4Addr::from(src)),
                IpAddr::V4(Ipv4Addr::from(dst)),
                *p.get(9)?,
                p.get(ihl..).unwrap_or_default(),
            ))
        }
        6 => {
            let src: [u8; 16] = p.get(8..24)?.try_into().ok()?;
            let dst: [u8; 16] = p.get(24..40)?.try_into().ok()?;
            Some((
                IpAddr::V6(Ipv6Addr::from(src)),
                IpAddr::V6(Ipv6Addr::from(dst)),
                *p.get(6)?,
                p.get(40..).unwrap_or_default(),
            ))
        }
        _ => None,
    }
}

/// The entry of one NFLOG packet message body (after the nfgenmsg header); `None` for
/// packets of other statements or unreadable ones.
pub fn parse(body: &[u8]) -> Option<Entry> {
    let mut prefix = None;
    let mut payload = None;
    for (kind, data) in attrs(body) {
        match kind {
            NFULA_PREFIX => {
                let text = data.split(|b| *b == 0).next().unwrap_or_default();
                prefix = std::str::from_utf8(text).ok();
            }
            NFULA_PAYLOAD => payload = Some(data),
            _ => {}
        }
    }
    let (event, port) = prefix?.split_once(' ')?;
    if event != "ACCEPT" && event != "DROP" {
        return None;
    }
    let (src, dst, protocol, l4) = five_tuple(payload?)?;
    let ports = match protocol {
        6 | 17 | 132 => {
            let sp = u16::from_be_bytes(l4.get(0..2)?.try_into().ok()?);
            let dp = u16::from_be_bytes(l4.get(2..4)?.try_into().ok()?);
            Some((sp, dp))
        }
        _ => None,
    };
    Some(Entry {
        event: event.to_string(),
        port: port.to_string(),
        src,
        dst,
        protocol,
        ports,
    })
}

/// The JSON line of `entry` read at `time`, naming the logs of `covers` that record it.
pub fn line(entry: &Entry, covers: &[(String, String)], time: &str) -> String {
    let log_ids: Vec<&str> = covers
        .iter()
        .filter(|(_, event)| event == "ALL" || *event == entry.event)
        .map(|(id, _)| id.as_str())
        .collect();
    let protocol = match (entry.protocol, entry.src.is_ipv4()) {
        (6, _) => json!("tcp"),
        (17, _) => json!("udp"),
        (1, true) => json!("icmp"),
        (58, false) => json!("icmpv6"),
        (132, _) => json!("sctp"),
        (n, _) => json!(n),
    };
    let mut doc = json!({
        "time": time,
        "event": entry.event,
        "port_id": entry.port,
        "log_ids": log_ids,
        "ethertype": if entry.src.is_ipv4() { "IPv4" } else { "IPv6" },
        "protocol": protocol,
        "src_ip": entry.src.to_string(),
        "dst_ip": entry.dst.to_string(),
    });
    if let Some((sp, dp)) = entry.ports {
        doc["src_port"] = Value::from(sp);
        doc["dst_port"] = Value::from(dp);
    }
    doc.to_string()
}

fn config(fd: &OwnedFd, group: u16, kind: u16, payload: &[u8]) -> Result<(), AgentError> {
    let mut attr = Vec::new();
    let len = 4 + payload.len();
    attr.extend((len as u16).to_ne_bytes());
    attr.extend(kind.to_ne_bytes());
    attr.extend(payload);
    attr.resize(attr.len() + (4 - len % 4) % 4, 0);
    let mut m = Vec::new();
    m.extend(((16 + 4 + attr.len()) as u32).to_ne_bytes());
    m.extend(((NFNL_SUBSYS_ULOG << 8) | NFULNL_MSG_CONFIG).to_ne_bytes());
    m.extend((NLM_F_REQUEST | NLM_F_ACK).to_ne_bytes());
    m.extend(1u32.to_ne_bytes());
    m.extend(0u32.to_ne_bytes());
    // nfgenmsg: AF_UNSPEC, version 0, the group (big endian).
    m.extend([0, 0]);
    m.extend(group.to_be_bytes());
    m.extend(attr);
    let err = |e: &dyn std::fmt::Display| AgentError::Command {
        command: "nfnetlink_log bind".into(),
        message: e.to_string(),
    };
    sendto(fd, &m, SendFlags::empty(), &SocketAddrNetlink::new(0, 0)).map_err(|e| err(&e))?;
    let mut buf = vec![0u8; 8192];
    loop {
        let (n, _) = recv(fd, &mut buf[..], RecvFlags::empty()).map_err(|e| err(&e))?;
        let data = &buf[..n];
        if data.len() < 20 {
            return Err(err(&"short answer"));
        }
        let kind = u16::from_ne_bytes([data[4], data[5]]);
        if kind == NLMSG_ERROR {
            let code = i32::from_ne_bytes(data[16..20].try_into().unwrap_or_default());
            return match code {
                0 => Ok(()),
                c => Err(err(&std::io::Error::from_raw_os_error(-c))),
            };
        }
        // A logged packet arriving before the acknowledgement: not ours to keep.
    }
}

/// Binds an NFLOG socket in `netns` to `group`, copying up to 128 bytes of each packet.
fn bind(netns: Option<&str>, group: u16) -> Result<OwnedFd, AgentError> {
    let fd = crate::nft_netlink::open(netns)?;
    config(&fd, group, NFULA_CFG_CMD, &[NFULNL_CFG_CMD_BIND])?;
    let mut mode = 128u32.to_be_bytes().to_vec();
    mode.extend([NFULNL_COPY_PACKET, 0]);
    config(&fd, group, NFULA_CFG_MODE, &mode)?;
    Ok(fd)
}

/// Starts the reader thread; a failure to bind is logged and the log stays empty.
pub fn start(netns: Option<String>, path: PathBuf, covers: Covers) {
    let spawned = std::thread::Builder::new()
        .name("sg-log".into())
        .spawn(move || {
            let fd = match bind(netns.as_deref(), neutrino_firewall::LOG_GROUP) {
                Ok(fd) => fd,
                Err(e) => {
                    tracing::warn!(error = %e, "security-group log reader not started");
                    return;
                }
            };
            read_loop(&fd, &path, &covers);
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "security-group log reader not started");
    }
}

fn read_loop(fd: &OwnedFd, path: &PathBuf, covers: &Covers) {
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = match recv(fd, &mut buf[..], RecvFlags::empty()) {
            Ok((n, _)) => n,
            Err(e) => {
                // ENOBUFS: the kernel dropped messages while we were behind; go on.
                tracing::debug!(error = %e, "security-group log read");
                continue;
            }
        };
        let mut data = &buf[..n];
        let mut lines = String::new();
        while data.len() >= 20 {
            let len = u32::from_ne_bytes(data[0..4].try_into().unwrap_or_default()) as usize;
            let kind = u16::from_ne_bytes([data[4], data[5]]);
            if len < 20 || len > data.len() {
                break;
            }
            if kind == ((NFNL_SUBSYS_ULOG << 8) | NFULNL_MSG_PACKET) {
                if let Some(entry) = parse(&data[20..len]) {
                    let time = chrono::Utc::now()
                        .format("%Y-%m-%dT%H:%M:%S%.3fZ")
                        .to_string();
                    let covering = covers
                        .lock()
                        .map(|c| c.get(&entry.port).cloned().unwrap_or_default())
                        .unwrap_or_default();
                    lines.push_str(&line(&entry, &covering, &time));
                    lines.push('\n');
                }
            }
            data = &data[((len + 3) & !3).min(data.len())..];
        }
        if lines.is_empty() {
            continue;
        }
        let written = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .and_then(|mut f| f.write_all(lines.as_bytes()));
        if let Err(e) = written {
            tracing::warn!(error = %e, path = %path.display(), "security-group log write");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attr(out: &mut Vec<u8>, kind: u16, payload: &[u8]) {
        let len = 4 + payload.len();
        out.extend((len as u16).to_ne_bytes());
        out.extend(kind.to_ne_bytes());
        out.extend(payload);
        out.resize(out.len() + (4 - len % 4) % 4, 0);
    }

    fn tcp_packet() -> Vec<u8> {
        let mut p = vec![0x45, 0, 0, 40, 0, 0, 0, 0, 64, 6, 0, 0];
        p.extend([10, 0, 0, 3, 10, 0, 0, 4]);
        p.extend(40022u16.to_be_bytes());
        p.extend(80u16.to_be_bytes());
        p.extend([0; 16]);
        p
    }

    #[test]
    fn a_dropped_tcp_packet_becomes_a_line() {
        let mut body = Vec::new();
        attr(&mut body, 1, &[8, 0, 3, 0]);
        attr(&mut body, NFULA_PREFIX, b"DROP port-1\0");
        attr(&mut body, NFULA_PAYLOAD, &tcp_packet());
        let entry = parse(&body).unwrap();
        assert_eq!(entry.ports, Some((40022, 80)));
        let covers = vec![
            ("l1".to_string(), "ALL".to_string()),
            ("l2".to_string(), "ACCEPT".to_string()),
            ("l3".to_string(), "DROP".to_string()),
        ];
        let doc: Value = serde_json::from_str(&line(&entry, &covers, "t")).unwrap();
        assert_eq!(
            doc,
            json!({"time": "t", "event": "DROP", "port_id": "port-1", "log_ids": ["l1", "l3"],
                   "ethertype": "IPv4", "protocol": "tcp", "src_ip": "10.0.0.3",
                   "src_port": 40022, "dst_ip": "10.0.0.4", "dst_port": 80})
        );
    }

    #[test]
    fn other_prefixes_and_garbage_are_ignored() {
        let mut body = Vec::new();
        attr(&mut body, NFULA_PREFIX, b"something else\0");
        attr(&mut body, NFULA_PAYLOAD, &tcp_packet());
        assert!(parse(&body).is_none());
        let mut body = Vec::new();
        attr(&mut body, NFULA_PREFIX, b"ACCEPT p\0");
        attr(&mut body, NFULA_PAYLOAD, &[0x45, 0]);
        assert!(parse(&body).is_none());
        assert!(parse(&[1, 2, 3]).is_none());
    }
}
