//! Two small reads of the steering table straight from the kernel (nfnetlink), for what the
//! agent asks often: the table's handle and its named counters. `nft` 1.0.6 fetches its
//! whole cache for any listing, every set's elements included (anonymous ones too): 1.5 s
//! per `nft -j list tables` or `list counters` with 1,000 chains, where these two requests
//! are one message and one filtered dump.

use std::collections::BTreeMap;
use std::os::fd::{AsFd, OwnedFd};

use rustix::net::netlink::{SocketAddrNetlink, NETFILTER};
use rustix::net::{recv, sendto, socket, AddressFamily, RecvFlags, SendFlags, SocketType};

use crate::AgentError;

const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFT_MSG_GETTABLE: u16 = 1;
const NFT_MSG_NEWOBJ: u16 = 18;
const NFT_MSG_GETOBJ: u16 = 19;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_DUMP: u16 = 0x300;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NFPROTO_NETDEV: u8 = 5;
const NFTA_TABLE_NAME: u16 = 1;
const NFTA_TABLE_HANDLE: u16 = 4;
const NFTA_OBJ_TABLE: u16 = 1;
const NFTA_OBJ_NAME: u16 = 2;
const NFTA_OBJ_TYPE: u16 = 3;
const NFTA_OBJ_DATA: u16 = 4;
const NFT_OBJECT_COUNTER: u32 = 1;
const NFTA_COUNTER_BYTES: u16 = 1;
const NFTA_COUNTER_PACKETS: u16 = 2;
const NLA_F_NESTED: u16 = 0x8000;

fn error(what: &str, message: impl std::fmt::Display) -> AgentError {
    AgentError::Command {
        command: format!("nfnetlink {what}"),
        message: message.to_string(),
    }
}

/// A netfilter netlink socket in `netns` (`/run/netns/<name>`; `None`: the agent's own).
pub(crate) fn open(netns: Option<&str>) -> Result<OwnedFd, AgentError> {
    let make = || socket(AddressFamily::NETLINK, SocketType::RAW, Some(NETFILTER));
    let Some(ns) = netns else {
        return make().map_err(|e| error("socket", e));
    };
    let path = format!("/run/netns/{ns}");
    // A socket stays in the namespace it was made in: make it from a thread that moved there.
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let file = std::fs::File::open(&path).map_err(|e| error(&path, e))?;
                rustix::thread::move_into_link_name_space(
                    file.as_fd(),
                    Some(rustix::thread::LinkNameSpaceType::Network),
                )
                .map_err(|e| error(&path, e))?;
                make().map_err(|e| error("socket", e))
            })
            .join()
            .map_err(|_| error("socket", "thread panicked"))?
    })
}

fn attr(out: &mut Vec<u8>, kind: u16, payload: &[u8]) {
    let len = 4 + payload.len();
    out.extend((len as u16).to_ne_bytes());
    out.extend(kind.to_ne_bytes());
    out.extend(payload);
    out.resize(out.len() + (4 - len % 4) % 4, 0);
}

/// The attributes of a message body: `(type without flags, payload)`.
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

fn be_u64(b: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(b.get(..8)?.try_into().ok()?))
}

/// One answer to a request: its nftables message type and its body after the nfgenmsg header.
type Answer = (u16, Vec<u8>);

/// Sends one nftables request and collects the bodies (after the nfgenmsg header) of the
/// answers; `Ok(None)` when the kernel answers "no such object".
fn request(
    fd: &OwnedFd,
    msg: u16,
    flags: u16,
    body: &[u8],
) -> Result<Option<Vec<Answer>>, AgentError> {
    let mut m = Vec::with_capacity(20 + body.len());
    let len = 16 + 4 + body.len();
    m.extend((len as u32).to_ne_bytes());
    m.extend(((NFNL_SUBSYS_NFTABLES << 8) | msg).to_ne_bytes());
    m.extend((NLM_F_REQUEST | flags).to_ne_bytes());
    m.extend(1u32.to_ne_bytes());
    m.extend(0u32.to_ne_bytes());
    m.extend([NFPROTO_NETDEV, 0, 0, 0]);
    m.extend(body);
    sendto(fd, &m, SendFlags::empty(), &SocketAddrNetlink::new(0, 0))
        .map_err(|e| error("send", e))?;
    let mut answers = Vec::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let (n, _) = recv(fd, &mut buf[..], RecvFlags::empty()).map_err(|e| error("recv", e))?;
        let mut data = &buf[..n];
        while data.len() >= 16 {
            let len = u32::from_ne_bytes(data[0..4].try_into().unwrap_or_default()) as usize;
            let kind = u16::from_ne_bytes([data[4], data[5]]);
            if len < 16 || len > data.len() {
                return Err(error("recv", "truncated message"));
            }
            let payload = &data[16..len];
            match kind {
                NLMSG_DONE => return Ok(Some(answers)),
                NLMSG_ERROR => {
                    let code = i32::from_ne_bytes(
                        payload
                            .get(..4)
                            .and_then(|b| b.try_into().ok())
                            .unwrap_or_default(),
                    );
                    return match code {
                        0 => Ok(Some(answers)),
                        // ENOENT: no such table.
                        -2 => Ok(None),
                        c => Err(error("request", std::io::Error::from_raw_os_error(-c))),
                    };
                }
                _ => {
                    answers.push((kind & 0xff, payload.get(4..).unwrap_or_default().to_vec()));
                    // A single answer (no dump) ends with it.
                    if flags & NLM_F_DUMP == 0 {
                        return Ok(Some(answers));
                    }
                }
            }
            data = &data[((len + 3) & !3).min(data.len())..];
        }
    }
}

fn name(text: &str) -> Vec<u8> {
    let mut v = text.as_bytes().to_vec();
    v.push(0);
    v
}

/// The handle of table `netdev <table>` (`None`: no such table).
pub fn table_handle(netns: Option<&str>, table: &str) -> Result<Option<u64>, AgentError> {
    let fd = open(netns)?;
    let mut body = Vec::new();
    attr(&mut body, NFTA_TABLE_NAME, &name(table));
    let Some(answers) = request(&fd, NFT_MSG_GETTABLE, 0, &body)? else {
        return Ok(None);
    };
    Ok(answers.iter().find_map(|(_, body)| {
        attrs(body)
            .into_iter()
            .find(|(kind, _)| *kind == NFTA_TABLE_HANDLE)
            .and_then(|(_, v)| be_u64(v))
    }))
}

/// The named counters of table `netdev <table>`: name → (packets, bytes); none without the
/// table.
pub fn counters(
    netns: Option<&str>,
    table: &str,
) -> Result<BTreeMap<String, (u64, u64)>, AgentError> {
    let fd = open(netns)?;
    let mut body = Vec::new();
    attr(&mut body, NFTA_OBJ_TABLE, &name(table));
    attr(&mut body, NFTA_OBJ_TYPE, &NFT_OBJECT_COUNTER.to_be_bytes());
    let answers = request(&fd, NFT_MSG_GETOBJ, NLM_F_DUMP, &body)?.unwrap_or_default();
    Ok(answers
        .iter()
        .filter(|(kind, _)| *kind == NFT_MSG_NEWOBJ)
        .filter_map(|(_, body)| parse_counter(body))
        .collect())
}

fn parse_counter(body: &[u8]) -> Option<(String, (u64, u64))> {
    let a = attrs(body);
    let get = |k: u16| a.iter().find(|(kind, _)| *kind == k).map(|(_, v)| *v);
    let name = get(NFTA_OBJ_NAME)?;
    let name = String::from_utf8_lossy(name.split(|b| *b == 0).next()?).into_owned();
    let data = attrs(get(NFTA_OBJ_DATA)?);
    let value = |k: u16| {
        data.iter()
            .find(|(kind, _)| *kind == k)
            .and_then(|(_, v)| be_u64(v))
    };
    Some((
        name,
        (value(NFTA_COUNTER_PACKETS)?, value(NFTA_COUNTER_BYTES)?),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_round_trip_and_counters_parse() {
        let mut data = Vec::new();
        attr(&mut data, NFTA_COUNTER_BYTES, &840u64.to_be_bytes());
        attr(&mut data, NFTA_COUNTER_PACKETS, &12u64.to_be_bytes());
        let mut body = Vec::new();
        attr(&mut body, NFTA_OBJ_TABLE, &name("neutrino_sfc"));
        attr(&mut body, NFTA_OBJ_NAME, &name("probe-pp1"));
        attr(&mut body, NFTA_OBJ_DATA | NLA_F_NESTED, &data);
        assert_eq!(
            parse_counter(&body),
            Some(("probe-pp1".to_string(), (12, 840)))
        );
        // Padding: a 13-byte name takes 16 bytes after its header.
        assert_eq!(attrs(&body)[0].1, name("neutrino_sfc").as_slice());
    }
}
