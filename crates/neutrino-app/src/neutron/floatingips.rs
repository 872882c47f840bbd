//! Floating IPs: allocation on external networks, association with a port behind a router.
//!
//! The address is held by a service port (`network:floatingip`, project "" like upstream,
//! `device_id` = the floating IP id) on the external network. An association is also a store
//! claim (`fip:<external network>` scope, key `<port>/<fixed ip>`, owner = floating IP id), so
//! two floating IPs of one external network can never map the same fixed IP, even when two
//! servers associate concurrently.

use std::net::IpAddr;

use neutrino_ipam as ipam;
use neutrino_store::{Record, Selector, Tx};
use neutrino_types::{ApiError, ApiResult};
use serde_json::{json, Value};

use super::routers::{bad_request, INTERFACE_OWNERS};
use super::subnets::SubnetInfo;
use super::{bump, s, Doc, View};
use crate::{db, App, Context};

/// Device owner of the port holding a floating IP's address.
pub(super) const FLOATINGIP_OWNER: &str = "network:floatingip";

fn bad_fip(msg: impl std::fmt::Display) -> ApiError {
    bad_request("floatingip", msg)
}

fn claim_scope(network: &str) -> String {
    format!("fip:{network}")
}

fn claim_key(port: &str, ip: &str) -> String {
    format!("{port}/{ip}")
}

/// What a floating IP is associated with: port, fixed IP, router (all JSON, null when free).
struct Association {
    port_id: Value,
    fixed_ip_address: Value,
    router_id: Value,
}

impl Association {
    fn none() -> Association {
        Association {
            port_id: Value::Null,
            fixed_ip_address: Value::Null,
            router_id: Value::Null,
        }
    }

    fn store(self, body: &mut Value) {
        if let Some(doc) = body.as_object_mut() {
            self.store_doc(doc);
        }
    }

    fn store_doc(self, doc: &mut Doc) {
        doc.insert("port_id".into(), self.port_id);
        doc.insert("fixed_ip_address".into(), self.fixed_ip_address);
        doc.insert("router_id".into(), self.router_id);
    }
}

/// The floating IP being associated.
struct Fip<'a> {
    id: &'a str,
    project: &'a str,
    network: &'a str,
    address: &'a str,
}

impl App {
    pub(super) async fn create_floatingip(
        &self,
        tx: &mut Tx,
        ctx: &Context,
        body: &mut Doc,
    ) -> ApiResult<Option<String>> {
        let doc = Value::Object(body.clone());
        let id = s(&doc, "id").to_string();
        let project = s(&doc, "project_id").to_string();
        let network = s(&doc, "floating_network_id").to_string();
        let (_, external) = self.external_network(tx, ctx, &network).await?;
        if !external {
            return Err(bad_fip(format!(
                "Network {network} is not a valid external network"
            )));
        }
        let subnets: Vec<SubnetInfo> = self
            .network_subnets(tx, &network)
            .await?
            .iter()
            .filter_map(SubnetInfo::from_record)
            .collect();
        let v4: Vec<&SubnetInfo> = subnets.iter().filter(|sn| !sn.is_v6()).collect();
        if v4.is_empty() {
            return Err(bad_fip(format!(
                "Network {network} does not contain any IPv4 subnet"
            )));
        }
        let address = match body.get("floating_ip_address") {
            None | Some(Value::Null) => None,
            Some(v) => {
                if !ctx.is_admin() && !ctx.has("manager") {
                    return Err(ApiError::forbidden("create_floatingip:floating_ip_address"));
                }
                let ip = v.as_str().and_then(|t| ipam::parse_ip(t).ok()).ok_or_else(|| {
                    ApiError::bad_request(format!(
                        "Invalid input for floating_ip_address. Reason: '{}' is not a valid IP address.",
                        v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string())
                    ))
                })?;
                Some(ip)
            }
        };
        let subnet = body
            .remove("subnet_id")
            .and_then(|v| v.as_str().map(str::to_string));
        let mut fixed = Doc::new();
        if let Some(sn) = &subnet {
            fixed.insert("subnet_id".into(), json!(sn));
        }
        if let Some(ip) = address {
            fixed.insert("ip_address".into(), json!(ip.to_string()));
        }
        if fixed.is_empty() {
            fixed.insert(
                "subnet_id".into(),
                json!(self.pick_v4_subnet(tx, &v4).await?),
            );
        }
        let port = self
            .insert_service_port(
                tx,
                "",
                &network,
                Some(json!([fixed])),
                FLOATINGIP_OWNER,
                &id,
            )
            .await?;
        let floating_ip = port.body["fixed_ips"]
            .as_array()
            .and_then(|ips| {
                ips.iter()
                    .map(|ip| s(ip, "ip_address"))
                    .find(|a| a.parse::<IpAddr>().is_ok_and(|a| a.is_ipv4()))
            })
            .map(str::to_string)
            .ok_or_else(|| {
                ApiError::bad(
                    "ExternalIpAddressExhausted",
                    format!("Unable to find any IP address on external network {network}."),
                )
            })?;
        body.insert("floating_ip_address".into(), json!(floating_ip));
        let fip = Fip {
            id: &id,
            project: &project,
            network: &network,
            address: &floating_ip,
        };
        let port_req = doc.get("port_id").cloned().unwrap_or(Value::Null);
        let fixed_req = doc.get("fixed_ip_address").cloned().unwrap_or(Value::Null);
        let assoc = self.associate(tx, ctx, &fip, &port_req, &fixed_req).await?;
        assoc.store_doc(body);
        body.insert("status".into(), json!("DOWN"));
        Ok(Some(network))
    }

    /// The IPv4 subnet an automatic floating IP comes from: the first one with room left in
    /// its pools (by count; a stale count only means a later, clean exhaustion error).
    async fn pick_v4_subnet(&self, tx: &mut Tx, v4: &[&SubnetInfo]) -> ApiResult<String> {
        for sn in v4 {
            let size = ipam::pools_size(&sn.pools);
            let used = tx
                .count_claims(&format!("ip:{}", sn.id))
                .await
                .map_err(db)?;
            if size > used.max(0) as u128 {
                return Ok(sn.id.clone());
            }
        }
        Ok(v4.first().map(|sn| sn.id.clone()).unwrap_or_default())
    }

    pub(super) async fn update_floatingip(
        &self,
        tx: &mut Tx,
        ctx: &Context,
        rec: &mut Record,
        changes: Doc,
    ) -> ApiResult<()> {
        // An empty update clears the association (upstream's historic meaning).
        if changes.is_empty()
            || changes.contains_key("port_id")
            || changes.contains_key("fixed_ip_address")
        {
            let port_req = changes.get("port_id").cloned().unwrap_or(Value::Null);
            let fixed_req = changes
                .get("fixed_ip_address")
                .cloned()
                .unwrap_or(Value::Null);
            tx.release_owned("fip:", &rec.id).await.map_err(db)?;
            let body = rec.body.clone();
            let fip = Fip {
                id: &rec.id,
                project: &rec.project_id,
                network: s(&body, "floating_network_id"),
                address: s(&body, "floating_ip_address"),
            };
            let assoc = self.associate(tx, ctx, &fip, &port_req, &fixed_req).await?;
            assoc.store(&mut rec.body);
        }
        if let Some(d) = changes.get("description") {
            rec.body["description"] = d.clone();
        }
        Ok(())
    }

    pub(super) async fn delete_floatingip(
        &self,
        tx: &mut Tx,
        _ctx: &Context,
        rec: &Record,
    ) -> ApiResult<()> {
        let network = rec.parent_id.clone().unwrap_or_default();
        for port in self.network_ports(tx, &network).await? {
            if s(&port.body, "device_id") == rec.id
                && s(&port.body, "device_owner") == FLOATINGIP_OWNER
            {
                self.remove_service_port(tx, &port).await?;
            }
        }
        tx.release_owned("fip:", &rec.id).await.map_err(db)?;
        Ok(())
    }

    /// Works out (and claims) a floating IP's association: the port, which of its IPv4
    /// addresses, and the router that connects that address's subnet to the external network.
    async fn associate(
        &self,
        tx: &mut Tx,
        ctx: &Context,
        fip: &Fip<'_>,
        port_req: &Value,
        fixed_req: &Value,
    ) -> ApiResult<Association> {
        let port_id = match port_req {
            Value::String(p) => p.clone(),
            _ => {
                if !fixed_req.is_null() {
                    return Err(bad_fip(
                        "fixed_ip_address cannot be specified without a port_id",
                    ));
                }
                return Ok(Association::none());
            }
        };
        let port_coll = super::COLLECTIONS
            .iter()
            .find(|c| c.resource == "port")
            .ok_or_else(ApiError::internal)?;
        let found = tx.get("port", &port_id).await.map_err(db)?;
        let view = View::for_records(tx, "port", found.as_slice()).await?;
        let port = match found {
            Some(p) if self.visible(&view, ctx, port_coll, &p).await => p,
            _ => return Err(ApiError::not_found("port", &port_id)),
        };
        if port.project_id != fip.project && !ctx.is_admin() {
            return Err(bad_fip(format!(
                "Cannot process floating IP association with Port {port_id}, since that port is owned by a different project"
            )));
        }
        if s(&port.body, "device_owner") == "network:dhcp" {
            return Err(bad_fip(format!(
                "Port {port_id} is unable to be assigned a floating IP"
            )));
        }
        let ips = port.body["fixed_ips"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let (ip, subnet) = match fixed_req {
            Value::Null => {
                let v4: Vec<&Value> = ips
                    .iter()
                    .filter(|ip| {
                        s(ip, "ip_address")
                            .parse::<IpAddr>()
                            .is_ok_and(|a| a.is_ipv4())
                    })
                    .collect();
                match v4.as_slice() {
                    [] => {
                        return Err(bad_fip(format!(
                            "Cannot add floating IP to port {port_id} that has no fixed IPv4 addresses"
                        )))
                    }
                    [one] => (
                        s(one, "ip_address").to_string(),
                        s(one, "subnet_id").to_string(),
                    ),
                    _ => {
                        return Err(bad_fip(format!(
                            "Port {port_id} has multiple fixed IPv4 addresses.  Must provide a specific IPv4 address when assigning a floating IP"
                        )))
                    }
                }
            }
            other => {
                let text = other.as_str().unwrap_or_default();
                let addr = ipam::parse_ip(text).map_err(|_| {
                    ApiError::bad_request(format!(
                        "Invalid input for fixed_ip_address. Reason: '{}' is not a valid IP address.",
                        other.as_str().map(str::to_string).unwrap_or_else(|| other.to_string())
                    ))
                })?;
                if addr.is_ipv6() {
                    return Err(bad_fip(format!(
                        "Cannot process floating IP association with {text}, since that is not an IPv4 address"
                    )));
                }
                let entry = ips
                    .iter()
                    .find(|ip| s(ip, "ip_address").parse::<IpAddr>().ok() == Some(addr))
                    .ok_or_else(|| {
                        bad_fip(format!("Port {port_id} does not have fixed ip {text}"))
                    })?;
                (addr.to_string(), s(entry, "subnet_id").to_string())
            }
        };
        let router = self
            .router_for_floatingip(tx, &port, &subnet, fip.network)
            .await?;
        let scope = claim_scope(fip.network);
        let key = claim_key(&port_id, &ip);
        if !tx.claim(&scope, &key, fip.id).await.map_err(db)?
            && tx.claim_owner(&scope, &key).await.map_err(db)?.as_deref() != Some(fip.id)
        {
            return Err(ApiError::conflict(
                "FloatingIPPortAlreadyAssociated",
                format!(
                    "Cannot associate floating IP {} ({}) with port {port_id} using fixed IP {ip}, as that fixed IP already has a floating IP on external network {}.",
                    fip.address, fip.id, fip.network
                ),
            ));
        }
        Ok(Association {
            port_id: json!(port_id),
            fixed_ip_address: json!(ip),
            router_id: json!(router),
        })
    }

    /// A router with an interface on `subnet` and its gateway on `external`; the one whose
    /// interface holds the subnet's gateway address wins.
    async fn router_for_floatingip(
        &self,
        tx: &mut Tx,
        port: &Record,
        subnet: &str,
        external: &str,
    ) -> ApiResult<String> {
        let network = port.parent_id.clone().unwrap_or_default();
        let gateway_ip = tx
            .get("subnet", subnet)
            .await
            .map_err(db)?
            .map(|sn| s(&sn.body, "gateway_ip").to_string())
            .unwrap_or_default();
        let mut first: Option<String> = None;
        for p in self.network_ports(tx, &network).await? {
            if !INTERFACE_OWNERS.contains(&s(&p.body, "device_owner")) {
                continue;
            }
            let Some(ip) = p.body["fixed_ips"].as_array().and_then(|ips| {
                ips.iter()
                    .find(|ip| s(ip, "subnet_id") == subnet)
                    .map(|ip| s(ip, "ip_address").to_string())
            }) else {
                continue;
            };
            let router_id = s(&p.body, "device_id").to_string();
            let Some(router) = tx.get("router", &router_id).await.map_err(db)? else {
                continue;
            };
            if s(&router.body["external_gateway_info"], "network_id") != external {
                continue;
            }
            if !gateway_ip.is_empty() && ip == gateway_ip {
                return Ok(router_id);
            }
            first.get_or_insert(router_id);
        }
        first.ok_or_else(|| {
            ApiError::new(
                404,
                "ExternalGatewayForFloatingIPNotFound",
                format!(
                    "External network {external} is not reachable from subnet {subnet}.  Therefore, cannot associate Port {} with a Floating IP.",
                    port.id
                ),
            )
        })
    }

    /// Disassociates every floating IP from a port that is going away. Meant for
    /// `delete_port` (before the port record is deleted).
    pub(super) async fn disassociate_port_fips(&self, tx: &mut Tx, port_id: &str) -> ApiResult<()> {
        let fips = tx
            .list("floatingip", &Selector::default())
            .await
            .map_err(db)?;
        for mut fip in fips {
            if s(&fip.body, "port_id") != port_id {
                continue;
            }
            tx.release_owned("fip:", &fip.id).await.map_err(db)?;
            Association::none().store(&mut fip.body);
            bump(&mut fip.body);
            tx.update("floatingip", &fip.id, &fip.body)
                .await
                .map_err(db)?;
        }
        Ok(())
    }

    /// Refuses a port `fixed_ips` update that drops the address a floating IP maps to
    /// (upstream `prevent_internal_ip_change_for_fip`). Meant for `update_port`.
    pub(super) async fn check_fip_fixed_ips_kept(
        &self,
        tx: &mut Tx,
        port_id: &str,
        new_fixed_ips: &[Value],
    ) -> ApiResult<()> {
        let fips = tx
            .list("floatingip", &Selector::default())
            .await
            .map_err(db)?;
        for fip in fips {
            if s(&fip.body, "port_id") != port_id {
                continue;
            }
            let fixed = s(&fip.body, "fixed_ip_address");
            if fixed.is_empty() || new_fixed_ips.iter().any(|ip| s(ip, "ip_address") == fixed) {
                continue;
            }
            return Err(bad_request(
                "port",
                format!("Cannot update the fixed_ips of the port {port_id}, because its original fixed_ip has been associated to a floating ip"),
            ));
        }
        Ok(())
    }
}
