//! ADD, DEL and CHECK of nested containers (the plugin runs inside a VM whose interface is a
//! Neutron port): the API calls (the parent's address pairs under `If-Match` revision checks,
//! trunk subports with a free VLAN id, retried on clashes) and the `ip` commands that build
//! the container's interface on the VM's link. The rules are in `neutrino_cni::nested`.

use neutrino_cni::nested::{self, Mode, NestedConf};
use neutrino_cni::protocol::{self, code, CniError, Env, NetConf};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::time::Duration;

use super::{enc, interface_json, transport, Api};

/// How many times a read-modify-write of the parent or a subport addition is retried when
/// another ADD or DEL got there first.
const ATTEMPTS: u32 = 30;

impl Api {
    /// One request with an optional `If-Match`; the raw status and body.
    async fn raw(
        &mut self,
        method: Method,
        path: &str,
        body: Option<Value>,
        if_match: Option<i64>,
    ) -> Result<(StatusCode, String), CniError> {
        let url = format!("{}{path}", self.endpoint);
        let mut req = self
            .http
            .request(method, &url)
            .header(neutrino_keystone::AUTH_TOKEN_HEADER, &self.token);
        if let Some(rev) = if_match {
            req = req.header("If-Match", format!("revision_number={rev}"));
        }
        if let Some(body) = body {
            req = req.json(&body);
        }
        let resp = req.send().await.map_err(transport)?;
        let status = resp.status();
        let text = resp.text().await.map_err(transport)?;
        if status.is_server_error() {
            return Err(CniError::new(
                code::TRY_AGAIN_LATER,
                "server error, try again later",
                format!("{path}: HTTP {status}: {text}"),
            ));
        }
        Ok((status, text))
    }
}

fn refused(what: &str, status: StatusCode, text: &str) -> CniError {
    CniError::new(
        code::SERVER_REFUSED,
        "the server refused the request",
        format!("{what}: HTTP {status}: {text}"),
    )
}

fn device_failed(details: String) -> CniError {
    CniError::new(
        nested::DEVICE_FAILED,
        "cannot create the container's interface",
        details,
    )
}

/// Runs `ip <args>` in this (the VM's) namespace, or in `netns` when given.
fn ip(netns: Option<&str>, args: &[String]) -> Result<(), String> {
    let mut cmd = match netns {
        Some(ns) => {
            let mut c = std::process::Command::new("nsenter");
            c.arg(format!("--net={ns}")).arg("ip");
            c
        }
        None => std::process::Command::new("ip"),
    };
    let out = cmd
        .args(args)
        .output()
        .map_err(|e| format!("ip {}: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// The MAC of `link` in this namespace.
fn link_mac(link: &str) -> Result<String, CniError> {
    let out = std::process::Command::new("ip")
        .args(["-j", "link", "show", "dev", link])
        .output()
        .map_err(|e| CniError::new(code::IO_FAILURE, "cannot run ip", e.to_string()))?;
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    v[0]["address"]
        .as_str()
        .map(str::to_ascii_lowercase)
        .ok_or_else(|| {
            CniError::new(
                code::INVALID_NETWORK_CONFIG,
                "invalid network config",
                format!("nested.link {link} does not exist in the plugin's network namespace"),
            )
        })
}

/// The parent port: `parentPort`, or the one port with the link's MAC.
async fn parent_port(api: &mut Api, nc: &NestedConf) -> Result<Value, CniError> {
    let conf_err =
        |d: String| CniError::new(code::INVALID_NETWORK_CONFIG, "invalid network config", d);
    if let Some(id) = &nc.parent_port {
        return match api
            .call(Method::GET, &format!("/v2.0/ports/{}", enc(id)), None)
            .await?
        {
            Some(v) => Ok(v["port"].clone()),
            None => Err(conf_err(format!("nested.parentPort {id}: no such port"))),
        };
    }
    let mac = link_mac(&nc.link)?;
    let list = api
        .get(&format!("/v2.0/ports?mac_address={}", enc(&mac)))
        .await?;
    match list["ports"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
    {
        [one] => Ok(one.clone()),
        [] => Err(conf_err(format!(
            "no port has the MAC {mac} of {}: give nested.parentPort",
            nc.link
        ))),
        _ => Err(conf_err(format!(
            "several ports have the MAC {mac} of {}: give nested.parentPort",
            nc.link
        ))),
    }
}

/// The nested ports of this attachment.
async fn attachment_ports(api: &mut Api, env: &Env) -> Result<Vec<Value>, CniError> {
    let name = protocol::port_name(&env.container_id, &env.ifname);
    let list = api.get(&format!("/v2.0/ports?name={}", enc(&name))).await?;
    Ok(list["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| nested::is_attachment_port(p, &env.container_id, &env.ifname))
        .cloned()
        .collect())
}

/// Read-modify-write of the parent's `allowed_address_pairs` under `If-Match`, retried
/// when another writer changed the port in between (412). `edit` returns `None` when there
/// is nothing to change. A parent that is gone is success.
async fn edit_pairs(
    api: &mut Api,
    parent_id: &str,
    edit: &dyn Fn(&Value) -> Option<Vec<Value>>,
) -> Result<(), CniError> {
    let path = format!("/v2.0/ports/{}", enc(parent_id));
    for attempt in 0..ATTEMPTS {
        let Some(parent) = api.call(Method::GET, &path, None).await? else {
            return Ok(());
        };
        let parent = &parent["port"];
        let Some(pairs) = edit(&parent["allowed_address_pairs"]) else {
            return Ok(());
        };
        let rev = parent["revision_number"].as_i64();
        let body = json!({"port": {"allowed_address_pairs": pairs}});
        let (status, text) = api.raw(Method::PUT, &path, Some(body), rev).await?;
        match status {
            s if s.is_success() => return Ok(()),
            StatusCode::NOT_FOUND => return Ok(()),
            StatusCode::PRECONDITION_FAILED => {
                pause(attempt).await;
            }
            s => return Err(refused(&format!("PUT {path}"), s, &text)),
        }
    }
    Err(CniError::new(
        code::TRY_AGAIN_LATER,
        "the parent port keeps changing, try again later",
        format!(
            "{ATTEMPTS} attempts to update the allowed address pairs of {parent_id} lost the race"
        ),
    ))
}

/// A short pause growing with the attempt, spread by the process id so that racing
/// plugins do not retry in lock step.
async fn pause(attempt: u32) {
    let spread = u64::from(std::process::id() % 17);
    let ms = 10 + u64::from(attempt.min(10)) * 15 + spread * 3;
    tokio::time::sleep(Duration::from_millis(ms)).await;
}

/// Adds `port_id` to `trunk_id` with the lowest free VLAN id; another ADD taking the same id
/// first (409 `DuplicateSubPort`) makes it re-read the trunk and try the next.
async fn add_subport(api: &mut Api, trunk_id: &str, port_id: &str) -> Result<u16, CniError> {
    let path = format!("/v2.0/trunks/{}", enc(trunk_id));
    let mut tried = BTreeSet::new();
    for attempt in 0..ATTEMPTS {
        let trunk = api.get(&path).await?["trunk"].clone();
        let Some(vlan) = nested::free_vlan(&trunk, &tried) else {
            return Err(CniError::new(
                code::SERVER_REFUSED,
                "no free VLAN id",
                format!("trunk {trunk_id} has no free VLAN id"),
            ));
        };
        let body = json!({"sub_ports": [{"port_id": port_id, "segmentation_type": "vlan",
                                          "segmentation_id": vlan}]});
        let (status, text) = api
            .raw(
                Method::PUT,
                &format!("{path}/add_subports"),
                Some(body),
                None,
            )
            .await?;
        if status.is_success() {
            return Ok(vlan);
        }
        if status == StatusCode::CONFLICT && nested::is_duplicate_segmentation(&text) {
            tried.insert(vlan);
            pause(attempt).await;
            continue;
        }
        return Err(refused(&format!("PUT {path}/add_subports"), status, &text));
    }
    Err(CniError::new(
        code::TRY_AGAIN_LATER,
        "no VLAN id could be claimed, try again later",
        format!("{ATTEMPTS} attempts on trunk {trunk_id} lost the race"),
    ))
}

/// Undoes what ADD did for one port: the pair or subport, the port, and the interface if
/// it is in `netns` with the port's MAC. Missing things are success.
async fn release(api: &mut Api, port: &Value, netns: &str, ifname: &str) -> Result<(), CniError> {
    let port_id = port["id"].as_str().unwrap_or_default().to_string();
    let mac = port["mac_address"].as_str().unwrap_or_default().to_string();
    let parent = port["binding:profile"][nested::PROFILE_PARENT]
        .as_str()
        .unwrap_or_default()
        .to_string();
    if !netns.is_empty() && std::path::Path::new(netns).exists() {
        if let Some(link) = interface_json(netns, ifname) {
            if link[0]["address"].as_str().map(str::to_ascii_lowercase)
                == Some(mac.to_ascii_lowercase())
            {
                let _ = ip(Some(netns), &["link".into(), "del".into(), ifname.into()]);
            }
        }
    }
    // Any leftover interface still in the VM under its temporary name.
    let _ = ip(
        None,
        &["link".into(), "del".into(), nested::temp_ifname(&port_id)],
    );
    if port["binding:profile"][nested::PROFILE_MODE] == "macvlan" {
        edit_pairs(api, &parent, &|pairs| nested::without_mac(pairs, &mac)).await?;
    } else if port["binding:profile"]["parent_name"].is_string() {
        let parent_doc = api
            .call(Method::GET, &format!("/v2.0/ports/{}", enc(&parent)), None)
            .await?;
        let trunk = parent_doc.and_then(|p| {
            p["port"]["trunk_details"]["trunk_id"]
                .as_str()
                .map(str::to_string)
        });
        if let Some(trunk_id) = trunk {
            let body = json!({"sub_ports": [{"port_id": port_id}]});
            let path = format!("/v2.0/trunks/{}/remove_subports", enc(&trunk_id));
            let (status, text) = api.raw(Method::PUT, &path, Some(body), None).await?;
            if !status.is_success() && status != StatusCode::NOT_FOUND {
                return Err(refused(&format!("PUT {path}"), status, &text));
            }
        }
    }
    api.delete_port(&port_id).await
}

/// ADD of a nested container.
pub(crate) async fn add(
    api: &mut Api,
    conf: &NetConf,
    nc: &NestedConf,
    env: &Env,
) -> Result<Value, CniError> {
    super::check_add_target(env)?;
    let parent = parent_port(api, nc).await?;
    let parent_id = parent["id"].as_str().unwrap_or_default().to_string();
    let network_id = api.resolve("networks", "network", &conf.network).await?;
    let trunk_id = parent["trunk_details"]["trunk_id"]
        .as_str()
        .map(str::to_string);
    match nc.mode {
        Mode::Macvlan if parent["network_id"] != network_id.as_str() => {
            return Err(CniError::new(
                code::INVALID_NETWORK_CONFIG,
                "invalid network config",
                format!(
                    "macvlan containers are on their VM's network: network {} is not {} of port {parent_id}",
                    network_id, parent["network_id"]
                ),
            ))
        }
        Mode::Vlan if trunk_id.is_none() => {
            return Err(CniError::new(
                code::INVALID_NETWORK_CONFIG,
                "invalid network config",
                format!("port {parent_id} is no trunk's parent: create a trunk on it (openstack network trunk create --parent-port {parent_id} ...)"),
            ))
        }
        _ => {}
    }
    let groups = match &conf.security_groups {
        None => None,
        Some(names) => {
            let mut ids = Vec::new();
            for n in names {
                ids.push(api.resolve("security-groups", "security_group", n).await?);
            }
            Some(ids)
        }
    };
    // A previous ADD of this attachment that the runtime never DELeted: start afresh.
    for old in attachment_ports(api, env).await? {
        release(api, &old, "", &env.ifname).await?;
    }
    let body = nested::port_body(env, nc.mode, &network_id, &parent_id, groups.as_deref());
    let created = api.get_or_post(body).await?["port"].clone();
    match finish(api, conf, nc, env, &created, trunk_id.as_deref()).await {
        Ok(result) => Ok(result),
        Err(e) => {
            // Leave nothing behind; the original error is what the runtime needs to see.
            let mut port = created.clone();
            if let Ok(Some(fresh)) = api
                .call(
                    Method::GET,
                    &format!("/v2.0/ports/{}", created["id"].as_str().unwrap_or_default()),
                    None,
                )
                .await
            {
                port = fresh["port"].clone();
            }
            let _ = release(api, &port, &env.netns, &env.ifname).await;
            Err(e)
        }
    }
}

async fn finish(
    api: &mut Api,
    conf: &NetConf,
    nc: &NestedConf,
    env: &Env,
    port: &Value,
    trunk_id: Option<&str>,
) -> Result<Value, CniError> {
    let port_id = port["id"].as_str().unwrap_or_default().to_string();
    let parent_id = port["binding:profile"][nested::PROFILE_PARENT]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let vlan = match nc.mode {
        Mode::Macvlan => {
            let pairs = nested::pairs_of(port);
            edit_pairs(api, &parent_id, &|current| {
                nested::with_pairs(current, &pairs)
            })
            .await?;
            None
        }
        Mode::Vlan => Some(add_subport(api, trunk_id.unwrap_or_default(), &port_id).await?),
    };
    let mut subnets = Vec::new();
    for fixed in port["fixed_ips"].as_array().cloned().unwrap_or_default() {
        let id = fixed["subnet_id"].as_str().unwrap_or_default();
        subnets.push(api.get(&format!("/v2.0/subnets/{}", enc(id))).await?["subnet"].clone());
    }
    let result = nested::add_result(&conf.cni_version, env, port, &subnets);
    let temp = nested::temp_ifname(&port_id);
    let mac = port["mac_address"]
        .as_str()
        .unwrap_or_default()
        .to_ascii_lowercase();
    let mtu = port["mtu"].as_u64();
    ip(
        None,
        &nested::create_link_args(nc.mode, &nc.link, &temp, &mac, mtu, vlan),
    )
    .map_err(device_failed)?;
    ip(
        None,
        &[
            "link".into(),
            "set".into(),
            "dev".into(),
            temp.clone(),
            "netns".into(),
            env.netns.clone(),
        ],
    )
    .map_err(device_failed)?;
    for args in nested::container_setup_args(&temp, &env.ifname, &result) {
        ip(Some(&env.netns), &args).map_err(device_failed)?;
    }
    if nc.mode == Mode::Vlan {
        // The host's agent wires the subport on the VM's tap and loads its filters.
        super::wait_active(api, conf, &port_id).await?;
    }
    Ok(result)
}

/// GC of nested containers: the nested ports of this VM's port (macvlan ports by their
/// owner, VLAN ones among its trunk's subports) whose attachment is not valid any more are
/// released like a DEL without a namespace.
pub(crate) async fn gc(api: &mut Api, conf: &NetConf, nc: &NestedConf) -> Result<(), CniError> {
    let parent = parent_port(api, nc).await?;
    let parent_id = parent["id"].as_str().unwrap_or_default().to_string();
    let list = api
        .get(&format!(
            "/v2.0/ports?device_owner={}&network_id={}",
            enc(nested::DEVICE_OWNER),
            enc(parent["network_id"].as_str().unwrap_or_default())
        ))
        .await?;
    let mut ports = list["ports"].as_array().cloned().unwrap_or_default();
    for sub in parent["trunk_details"]["sub_ports"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let id = sub["port_id"].as_str().unwrap_or_default();
        if let Some(p) = api
            .call(Method::GET, &format!("/v2.0/ports/{}", enc(id)), None)
            .await?
        {
            ports.push(p["port"].clone());
        }
    }
    let mut failures = Vec::new();
    for port in nested::gc_victims(&ports, &parent_id, &conf.valid_attachments) {
        let ifname = port["binding:profile"][protocol::PROFILE_IFNAME]
            .as_str()
            .unwrap_or_default();
        if let Err(e) = release(api, port, "", ifname).await {
            failures.push(format!("{}: {}", port["id"], e.details));
        }
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(CniError::new(
            code::TRY_AGAIN_LATER,
            "some ports could not be released",
            failures.join("; "),
        ))
    }
}

/// DEL of a nested container: idempotent, the namespace may be gone.
pub(crate) async fn del(api: &mut Api, env: &Env) -> Result<(), CniError> {
    for port in attachment_ports(api, env).await? {
        release(api, &port, &env.netns, &env.ifname).await?;
    }
    Ok(())
}

/// CHECK of a nested container: one port, still attached to its parent (pair or subport),
/// and the interface with the port's MAC and addresses.
pub(crate) async fn check(api: &mut Api, env: &Env) -> Result<(), CniError> {
    let ports = attachment_ports(api, env).await?;
    let [port] = ports.as_slice() else {
        return Err(CniError::new(
            code::CHECK_FAILED,
            "check failed",
            format!("{} ports for this attachment, expected 1", ports.len()),
        ));
    };
    let mut problems = Vec::new();
    let parent_id = port["binding:profile"][nested::PROFILE_PARENT]
        .as_str()
        .unwrap_or_default();
    let parent = api
        .call(
            Method::GET,
            &format!("/v2.0/ports/{}", enc(parent_id)),
            None,
        )
        .await?
        .map(|p| p["port"].clone())
        .unwrap_or_default();
    if port["binding:profile"][nested::PROFILE_MODE] == "macvlan" {
        if nested::with_pairs(&parent["allowed_address_pairs"], &nested::pairs_of(port)).is_some() {
            problems.push(format!(
                "the parent port {parent_id} lacks the container's address pairs"
            ));
        }
    } else if port["binding:profile"]["parent_name"] != parent_id {
        problems.push(format!("the port is not a subport of {parent_id}'s trunk"));
    }
    let observed = interface_json(&env.netns, &env.ifname).unwrap_or_else(|| json!([]));
    problems.extend(protocol::check_interface(&observed, port));
    if problems.is_empty() {
        Ok(())
    } else {
        Err(CniError::new(
            code::CHECK_FAILED,
            "check failed",
            problems.join("; "),
        ))
    }
}
