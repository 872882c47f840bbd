//! Nested containers without I/O: containers inside a VM whose interface is a Neutron port
//! (the *parent*). The `nested` configuration key, the body of the container's port, the
//! parent's `allowed_address_pairs` edits (macvlan mode), the choice of a free VLAN id on
//! the parent's trunk (VLAN mode), the `ip` commands that build the container's interface
//! and the CNI result. The plugin runs inside the VM; no agent plugs these ports there.

use serde_json::{json, Value};
use std::collections::BTreeSet;

use crate::protocol::{self, code, CniError, Env};

/// `device_owner` of nested containers' ports (before the trunk renames a VLAN subport's
/// to `trunk:subport`).
pub const DEVICE_OWNER: &str = "compute:container-nested";
/// `binding:profile` key: the parent (VM) port.
pub const PROFILE_PARENT: &str = "neutrino:nested_parent";
/// `binding:profile` key: the container id of the attachment.
pub const PROFILE_CONTAINER: &str = "neutrino:container";
/// `binding:profile` key: `macvlan` or `vlan`.
pub const PROFILE_MODE: &str = "neutrino:nested_mode";
/// Our error code: the container's interface could not be created in the VM.
pub const DEVICE_FAILED: u32 = 110;

/// How the container's interface rides in the VM's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// A macvlan device (mode bridge) with the port's MAC; the port's addresses become
    /// allowed address pairs of the parent.
    Macvlan,
    /// An 802.1q device; the port is a subport of the parent's trunk.
    Vlan,
}

impl Mode {
    /// The name used in the configuration and the port's profile.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Macvlan => "macvlan",
            Mode::Vlan => "vlan",
        }
    }
}

/// The `nested` configuration key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NestedConf {
    /// `mode`.
    pub mode: Mode,
    /// `link`: the VM's interface (default `eth0`).
    pub link: String,
    /// `parentPort`: the VM's port id; absent: the port with the link's MAC.
    pub parent_port: Option<String>,
}

fn invalid(msg: impl Into<String>) -> CniError {
    CniError::new(code::INVALID_NETWORK_CONFIG, "invalid network config", msg)
}

impl NestedConf {
    /// Reads the `nested` key of the configuration; `None` when absent (a host container).
    pub fn parse(stdin: &str) -> Result<Option<Self>, CniError> {
        let v: Value = serde_json::from_str(stdin).map_err(|e| {
            CniError::new(
                code::DECODING_FAILURE,
                "failed to decode the configuration",
                e.to_string(),
            )
        })?;
        let nested = match v.get("nested") {
            None | Some(Value::Null) => return Ok(None),
            Some(Value::Object(o)) => o,
            Some(other) => return Err(invalid(format!("nested must be an object, not {other}"))),
        };
        let mode = match nested.get("mode").and_then(Value::as_str) {
            Some("macvlan") => Mode::Macvlan,
            Some("vlan") => Mode::Vlan,
            _ => {
                return Err(invalid(format!(
                    "nested.mode must be \"macvlan\" or \"vlan\", not {}",
                    nested.get("mode").unwrap_or(&Value::Null)
                )))
            }
        };
        let text = |key: &str| -> Result<Option<String>, CniError> {
            match nested.get(key) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) if !s.is_empty() => Ok(Some(s.clone())),
                Some(other) => Err(invalid(format!(
                    "nested.{key} must be a non-empty string, not {other}"
                ))),
            }
        };
        let link = text("link")?.unwrap_or_else(|| "eth0".into());
        if link.len() > 15 || link.contains(['/', ':', ' ']) || link.contains(char::is_whitespace) {
            return Err(invalid(format!(
                "nested.link {link:?} is not an interface name"
            )));
        }
        let parent_port = text("parentPort")?;
        if let Some(p) = &parent_port {
            if !p.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-') {
                return Err(invalid(format!("nested.parentPort {p:?} is not a port id")));
            }
        }
        Ok(Some(NestedConf {
            mode,
            link,
            parent_port,
        }))
    }
}

/// The body of `POST /v2.0/ports` for a nested container: no binding host (no agent plugs
/// it in the VM), the attachment and the parent in `binding:profile`. A VLAN subport must
/// have no `device_id` (the trunk refuses ports used by a device), so the container id is
/// in the profile for both modes.
pub fn port_body(
    env: &Env,
    mode: Mode,
    network_id: &str,
    parent_id: &str,
    security_groups: Option<&[String]>,
) -> Value {
    let mut port = json!({
        "network_id": network_id,
        "name": protocol::port_name(&env.container_id, &env.ifname),
        "device_owner": DEVICE_OWNER,
        "binding:profile": {
            PROFILE_PARENT: parent_id,
            PROFILE_CONTAINER: env.container_id,
            protocol::PROFILE_IFNAME: env.ifname,
            PROFILE_MODE: mode.as_str(),
        },
    });
    if mode == Mode::Macvlan {
        port["device_id"] = json!(env.container_id);
    }
    if let Some(groups) = security_groups {
        port["security_groups"] = json!(groups);
    }
    json!({ "port": port })
}

/// Whether `port` is the nested port of this attachment.
pub fn is_attachment_port(port: &Value, container_id: &str, ifname: &str) -> bool {
    let profile = &port["binding:profile"];
    profile[PROFILE_CONTAINER] == container_id
        && profile[protocol::PROFILE_IFNAME] == ifname
        && profile[PROFILE_PARENT].is_string()
}

/// GC: among `ports`, the nested ports of `parent` whose attachment `(container id,
/// ifname)` is not in `valid`; returns them.
pub fn gc_victims<'a>(
    ports: &'a [Value],
    parent: &str,
    valid: &BTreeSet<(String, String)>,
) -> Vec<&'a Value> {
    ports
        .iter()
        .filter(|p| {
            let profile = &p["binding:profile"];
            let attachment = (
                profile[PROFILE_CONTAINER]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                profile[protocol::PROFILE_IFNAME]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            );
            profile[PROFILE_PARENT] == parent
                && !attachment.0.is_empty()
                && !valid.contains(&attachment)
        })
        .collect()
}

/// The pairs a nested port adds to its parent: one per fixed IP, with the port's MAC.
pub fn pairs_of(port: &Value) -> Vec<Value> {
    let mac = port["mac_address"]
        .as_str()
        .unwrap_or_default()
        .to_ascii_lowercase();
    port["fixed_ips"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|f| f["ip_address"].as_str())
        .map(|ip| json!({"ip_address": ip, "mac_address": mac}))
        .collect()
}

fn same_pair(a: &Value, b: &Value) -> bool {
    let mac = |v: &Value| {
        v["mac_address"]
            .as_str()
            .unwrap_or_default()
            .to_ascii_lowercase()
    };
    a["ip_address"] == b["ip_address"] && mac(a) == mac(b)
}

/// The parent's pairs with `add` added (none twice); `None` when nothing changes.
pub fn with_pairs(current: &Value, add: &[Value]) -> Option<Vec<Value>> {
    let mut pairs = current.as_array().cloned().unwrap_or_default();
    let before = pairs.len();
    for p in add {
        if !pairs.iter().any(|q| same_pair(p, q)) {
            pairs.push(p.clone());
        }
    }
    (pairs.len() != before).then_some(pairs)
}

/// The parent's pairs without those carrying `mac` (every address of the container's
/// port); `None` when nothing changes.
pub fn without_mac(current: &Value, mac: &str) -> Option<Vec<Value>> {
    let mac = mac.to_ascii_lowercase();
    let pairs = current.as_array().cloned().unwrap_or_default();
    let kept: Vec<Value> = pairs
        .iter()
        .filter(|p| {
            p["mac_address"]
                .as_str()
                .map(str::to_ascii_lowercase)
                .as_deref()
                != Some(mac.as_str())
        })
        .cloned()
        .collect();
    (kept.len() != pairs.len()).then_some(kept)
}

/// The lowest VLAN id (1..=4094) not used on `trunk` and not in `tried`.
pub fn free_vlan(trunk: &Value, tried: &BTreeSet<u16>) -> Option<u16> {
    let used: BTreeSet<u64> = trunk["sub_ports"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s["segmentation_id"].as_u64())
        .collect();
    (1..=4094u16).find(|id| !used.contains(&u64::from(*id)) && !tried.contains(id))
}

/// The VLAN id of `port` on `trunk`, if it is one of its subports.
pub fn subport_vlan(trunk: &Value, port_id: &str) -> Option<u64> {
    trunk["sub_ports"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|s| s["port_id"] == port_id)
        .and_then(|s| s["segmentation_id"].as_u64())
}

/// Whether a 409 answer is a segmentation clash (another ADD took the id first).
pub fn is_duplicate_segmentation(body: &str) -> bool {
    body.contains("DuplicateSubPort") || body.contains("already in use on trunk")
}

/// The temporary name of the container's interface while it is still in the VM.
pub fn temp_ifname(port_id: &str) -> String {
    let short: String = port_id.chars().filter(|c| *c != '-').take(10).collect();
    format!("nst{short}")
}

/// The `ip` command (arguments after `ip`) that creates the container's interface in the
/// VM under `temp` on `link`, with `mac` and `mtu`.
pub fn create_link_args(
    mode: Mode,
    link: &str,
    temp: &str,
    mac: &str,
    mtu: Option<u64>,
    vlan: Option<u16>,
) -> Vec<String> {
    let mut args: Vec<String> = ["link", "add", "link", link, "name", temp, "address", mac]
        .iter()
        .map(|s| s.to_string())
        .collect();
    if let Some(mtu) = mtu {
        args.extend(["mtu".to_string(), mtu.to_string()]);
    }
    match mode {
        Mode::Macvlan => args.extend(["type", "macvlan", "mode", "bridge"].map(String::from)),
        Mode::Vlan => {
            args.extend(["type", "vlan", "id"].map(String::from));
            args.push(vlan.unwrap_or_default().to_string());
        }
    }
    args
}

/// The `ip` commands run inside the container's namespace once the interface is there:
/// rename, addresses (from the CNI result's `ips`), up, routes.
pub fn container_setup_args(temp: &str, ifname: &str, result: &Value) -> Vec<Vec<String>> {
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    let mut cmds = vec![s(&["link", "set", "dev", temp, "name", ifname])];
    for ip in result["ips"].as_array().into_iter().flatten() {
        if let Some(addr) = ip["address"].as_str() {
            cmds.push(s(&["addr", "add", addr, "dev", ifname]));
        }
    }
    cmds.push(s(&["link", "set", "dev", ifname, "up"]));
    for r in result["routes"].as_array().into_iter().flatten() {
        if let (Some(dst), Some(gw)) = (r["dst"].as_str(), r["gw"].as_str()) {
            let family = if gw.contains(':') { "-6" } else { "-4" };
            cmds.push(s(&[
                family, "route", "replace", dst, "via", gw, "dev", ifname,
            ]));
        }
    }
    cmds
}

/// The ADD result of a nested container: one interface (in the sandbox; there is no host
/// end on this machine), the port's addresses and routes.
pub fn add_result(version: &str, env: &Env, port: &Value, subnets: &[Value]) -> Value {
    let mut result = protocol::add_result(version, env, port, subnets);
    if let Some(ifaces) = result["interfaces"].as_array_mut() {
        ifaces.remove(0);
    }
    for ip in result["ips"].as_array_mut().into_iter().flatten() {
        ip["interface"] = json!(0);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> Env {
        Env {
            container_id: "0123456789abcdef".into(),
            netns: "/run/netns/c1".into(),
            ifname: "eth0".into(),
            args: vec![],
        }
    }

    #[test]
    fn nested_key_parses_and_rejects_bad_values() {
        assert_eq!(
            NestedConf::parse(r#"{"cniVersion":"1.0.0"}"#).unwrap(),
            None
        );
        let c = NestedConf::parse(r#"{"nested":{"mode":"macvlan"}}"#)
            .unwrap()
            .unwrap();
        assert_eq!(
            c,
            NestedConf {
                mode: Mode::Macvlan,
                link: "eth0".into(),
                parent_port: None
            }
        );
        let c = NestedConf::parse(
            r#"{"nested":{"mode":"vlan","link":"ens3","parentPort":"0b3b8a1c-1d2e-4f50-9a0b-0c1d2e3f4a5b"}}"#,
        )
        .unwrap()
        .unwrap();
        assert_eq!(c.mode, Mode::Vlan);
        assert_eq!(c.link, "ens3");
        for bad in [
            r#"{"nested":"macvlan"}"#,
            r#"{"nested":{"mode":"ipvlan"}}"#,
            r#"{"nested":{"mode":"vlan","link":"a/b"}}"#,
            r#"{"nested":{"mode":"vlan","link":5}}"#,
            r#"{"nested":{"mode":"vlan","parentPort":"x y"}}"#,
        ] {
            assert_eq!(
                NestedConf::parse(bad).unwrap_err().code,
                code::INVALID_NETWORK_CONFIG,
                "{bad}"
            );
        }
    }

    #[test]
    fn port_body_records_the_attachment_and_parent() {
        let b = port_body(&env(), Mode::Macvlan, "net", "parent", None);
        assert_eq!(b["port"]["device_owner"], DEVICE_OWNER);
        assert_eq!(b["port"]["device_id"], "0123456789abcdef");
        assert!(b["port"].get("binding:host_id").is_none());
        assert_eq!(b["port"]["binding:profile"][PROFILE_PARENT], "parent");
        assert!(is_attachment_port(&b["port"], "0123456789abcdef", "eth0"));
        assert!(!is_attachment_port(&b["port"], "0123456789abcdef", "eth1"));
        // A VLAN subport must not name a device: the trunk would refuse it.
        let b = port_body(&env(), Mode::Vlan, "net", "parent", Some(&["sg".into()]));
        assert!(b["port"].get("device_id").is_none());
        assert_eq!(b["port"]["security_groups"], json!(["sg"]));
        assert_eq!(b["port"]["binding:profile"][PROFILE_MODE], "vlan");
    }

    #[test]
    fn gc_keeps_valid_attachments_and_other_parents_ports() {
        let port = |c: &str, parent: &str| {
            json!({"id": format!("{c}-{parent}"), "binding:profile": {
                PROFILE_PARENT: parent, PROFILE_CONTAINER: c, protocol::PROFILE_IFNAME: "eth0"}})
        };
        let ports = [
            port("a", "vm"),
            port("b", "vm"),
            port("c", "other"),
            json!({"id": "plain", "binding:profile": {}}),
        ];
        let valid = BTreeSet::from([("a".to_string(), "eth0".to_string())]);
        let victims: Vec<&str> = gc_victims(&ports, "vm", &valid)
            .iter()
            .map(|p| p["id"].as_str().unwrap())
            .collect();
        assert_eq!(victims, ["b-vm"]);
    }

    #[test]
    fn pairs_are_added_once_and_removed_by_mac() {
        let port = json!({"mac_address": "FA:16:3E:00:00:01",
                          "fixed_ips": [{"ip_address": "10.0.0.5"}, {"ip_address": "fd00::5"}]});
        let add = pairs_of(&port);
        assert_eq!(add.len(), 2);
        assert_eq!(add[0]["mac_address"], "fa:16:3e:00:00:01");
        let other = json!([{"ip_address": "10.0.0.9", "mac_address": "fa:16:3e:00:00:09"}]);
        let both = with_pairs(&other, &add).unwrap();
        assert_eq!(both.len(), 3);
        assert_eq!(with_pairs(&json!(both), &add), None);
        let back = without_mac(&json!(both), "FA:16:3E:00:00:01").unwrap();
        assert_eq!(json!(back), other);
        assert_eq!(without_mac(&other, "fa:16:3e:00:00:01"), None);
    }

    #[test]
    fn free_vlan_skips_used_and_tried_ids() {
        let trunk = json!({"sub_ports": [{"port_id": "a", "segmentation_id": 1},
                                         {"port_id": "b", "segmentation_id": 3}]});
        assert_eq!(free_vlan(&trunk, &BTreeSet::new()), Some(2));
        assert_eq!(free_vlan(&trunk, &BTreeSet::from([2])), Some(4));
        assert_eq!(subport_vlan(&trunk, "b"), Some(3));
        assert_eq!(subport_vlan(&trunk, "c"), None);
        let full: Vec<Value> = (1..=4094)
            .map(|i| json!({"port_id": i.to_string(), "segmentation_id": i}))
            .collect();
        assert_eq!(
            free_vlan(&json!({ "sub_ports": full }), &BTreeSet::new()),
            None
        );
        assert!(is_duplicate_segmentation(
            r#"{"NeutronError":{"type":"DuplicateSubPort"}}"#
        ));
        assert!(!is_duplicate_segmentation(
            r#"{"NeutronError":{"type":"TrunkDisabled"}}"#
        ));
    }

    #[test]
    fn device_commands() {
        let mac = "fa:16:3e:00:00:01";
        assert_eq!(
            create_link_args(Mode::Macvlan, "eth0", "nst1", mac, Some(1450), None).join(" "),
            "link add link eth0 name nst1 address fa:16:3e:00:00:01 mtu 1450 type macvlan mode bridge"
        );
        assert_eq!(
            create_link_args(Mode::Vlan, "eth0", "nst1", mac, None, Some(7)).join(" "),
            "link add link eth0 name nst1 address fa:16:3e:00:00:01 type vlan id 7"
        );
        assert_eq!(temp_ifname("0b3b8a1c-1d2e-4f50"), "nst0b3b8a1c1d");
        let result = json!({"ips": [{"address": "10.0.0.5/24"}],
                            "routes": [{"dst": "0.0.0.0/0", "gw": "10.0.0.1"}]});
        let cmds: Vec<String> = container_setup_args("nst1", "eth0", &result)
            .iter()
            .map(|c| c.join(" "))
            .collect();
        assert_eq!(
            cmds,
            [
                "link set dev nst1 name eth0",
                "addr add 10.0.0.5/24 dev eth0",
                "link set dev eth0 up",
                "-4 route replace 0.0.0.0/0 via 10.0.0.1 dev eth0"
            ]
        );
    }

    #[test]
    fn result_has_only_the_container_interface() {
        let port = json!({"id": "p1", "mac_address": "fa:16:3e:00:00:01",
                          "fixed_ips": [{"subnet_id": "s1", "ip_address": "10.0.0.5"}]});
        let subnets = [json!({"id": "s1", "cidr": "10.0.0.0/24", "gateway_ip": "10.0.0.1"})];
        let r = add_result("1.0.0", &env(), &port, &subnets);
        assert_eq!(
            r["interfaces"],
            json!([{"name": "eth0", "mac": "fa:16:3e:00:00:01", "sandbox": "/run/netns/c1"}])
        );
        assert_eq!(r["ips"][0]["interface"], 0);
        assert_eq!(r["ips"][0]["gateway"], "10.0.0.1");
    }
}
