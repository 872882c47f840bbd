//! Distributed virtual routers (the `dvr` extension): the admin-only `distributed`
//! attribute, conversions between centralized and distributed, and the port layout.
//!
//! A distributed router's interface ports are owned by `network:router_interface_distributed`
//! and bound to no host (every host with instances on their subnets realises them). When the
//! router has a gateway, each IPv4 interface subnet gets one `network:router_centralized_snat`
//! port (project "" like upstream; the IPv6 subnets of a network share one), bound with the
//! gateway port to the router's SNAT host: that is where the central SNAT namespace runs.
//! Like Neutron, `distributed` changes in both directions only while the router is
//! administratively down (`router-admin-state-down-before-update`), and the interface
//! ports and SNAT ports are rewritten in the same transaction.

use std::net::IpAddr;

use neutrino_store::{Record, Selector, Tx};
use neutrino_types::ApiResult;
use serde_json::{json, Value};

use super::owners::{DVR_INTERFACE_OWNER, GATEWAY_OWNER, SNAT_OWNER};
use super::router_flavour::{is_distributed, Flavour};
use super::{s, Doc};
use crate::{db, App, Context};

/// Addresses of a port as `(subnet id, address)`.
fn addresses(port: &Record) -> Vec<(String, Option<IpAddr>)> {
    port.body["fixed_ips"]
        .as_array()
        .map(|l| {
            l.iter()
                .map(|ip| {
                    (
                        s(ip, "subnet_id").to_string(),
                        s(ip, "ip_address").parse().ok(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The SNAT ports a router should have: `(network, subnets)`, IPv4 subnets one each, the
/// IPv6 subnets of a network together.
fn wanted_snat_ports(interfaces: &[Record]) -> Vec<(String, Vec<String>)> {
    let mut want: Vec<(String, Vec<String>)> = Vec::new();
    let mut v6: Vec<(String, Vec<String>)> = Vec::new();
    for port in interfaces {
        let network = port.parent_id.clone().unwrap_or_default();
        for (subnet, addr) in addresses(port) {
            if addr.is_some_and(|a| a.is_ipv6()) {
                match v6.iter_mut().find(|(n, _)| *n == network) {
                    Some((_, subnets)) => subnets.push(subnet),
                    None => v6.push((network.clone(), vec![subnet])),
                }
            } else {
                want.push((network.clone(), vec![subnet]));
            }
        }
    }
    want.extend(v6);
    for (_, subnets) in &mut want {
        subnets.sort();
        subnets.dedup();
    }
    want
}

impl App {
    /// `distributed` on create: any value asks the policy's `create_router:distributed`
    /// (admins only by default); centralized by default.
    pub(super) fn create_distributed(&self, ctx: &Context, body: &mut Doc) -> ApiResult<()> {
        let value = match body.get("distributed") {
            None => None,
            Some(v) => {
                self.check_rule(ctx, "create_router:distributed", body)?;
                v.as_bool()
            }
        };
        body.insert("distributed".into(), json!(value.unwrap_or(false)));
        Ok(())
    }

    /// `distributed` on update: a change needs the router down before and after the
    /// request, and rewrites its interface ports. The SNAT ports follow in
    /// [`App::sync_snat_ports`], which `update_router` calls last.
    pub(super) async fn update_distributed(
        &self,
        tx: &mut Tx,
        rec: &mut Record,
        changes: &Doc,
    ) -> ApiResult<()> {
        self.change_flavour(tx, rec, changes, Flavour::Distributed)
            .await
            .map(drop)
    }

    /// The router's SNAT ports.
    pub(super) async fn snat_ports(&self, tx: &mut Tx, router: &str) -> ApiResult<Vec<Record>> {
        let all = tx.list("port", &Selector::default()).await.map_err(db)?;
        Ok(all
            .into_iter()
            .filter(|p| {
                s(&p.body, "device_id") == router && s(&p.body, "device_owner") == SNAT_OWNER
            })
            .collect())
    }

    /// Brings the router's SNAT ports in line with its state: one per interface subnet while
    /// it is distributed and has a gateway, none otherwise. Ports that are still right are
    /// kept (their addresses do not change).
    pub(super) async fn sync_snat_ports(&self, tx: &mut Tx, router: &Record) -> ApiResult<()> {
        let ports = self.router_ports(tx, &router.id).await?;
        let has_gateway = ports
            .iter()
            .any(|p| s(&p.body, "device_owner") == GATEWAY_OWNER);
        let mut want = if is_distributed(&router.body) && has_gateway {
            let interfaces: Vec<Record> = ports
                .into_iter()
                .filter(|p| s(&p.body, "device_owner") == DVR_INTERFACE_OWNER)
                .collect();
            wanted_snat_ports(&interfaces)
        } else {
            Vec::new()
        };
        for port in self.snat_ports(tx, &router.id).await? {
            let mut subnets: Vec<String> = addresses(&port).into_iter().map(|(s, _)| s).collect();
            subnets.sort();
            let network = port.parent_id.clone().unwrap_or_default();
            match want
                .iter()
                .position(|(n, sn)| *n == network && *sn == subnets)
            {
                Some(i) => {
                    want.remove(i);
                }
                None => self.remove_service_port(tx, &port).await?,
            }
        }
        for (network, subnets) in want {
            let ips: Vec<Value> = subnets.iter().map(|sn| json!({"subnet_id": sn})).collect();
            self.insert_service_port(tx, "", &network, Some(json!(ips)), SNAT_OWNER, &router.id)
                .await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn port(network: &str, ips: Value) -> Record {
        Record {
            kind: "port".into(),
            id: "p".into(),
            project_id: String::new(),
            parent_id: Some(network.into()),
            body: json!({"fixed_ips": ips}),
        }
    }

    #[test]
    fn snat_ports_one_per_v4_subnet_and_one_per_v6_network() {
        let a = port("n1", json!([{"subnet_id": "s4", "ip_address": "10.0.0.1"}]));
        let b = port(
            "n2",
            json!([
                {"subnet_id": "s6b", "ip_address": "2001:db8:1::1"},
                {"subnet_id": "s6a", "ip_address": "2001:db8:2::1"}
            ]),
        );
        let c = port(
            "n2",
            json!([{"subnet_id": "s4b", "ip_address": "10.0.1.1"}]),
        );
        assert_eq!(
            wanted_snat_ports(&[a, b, c]),
            vec![
                ("n1".to_string(), vec!["s4".to_string()]),
                ("n2".to_string(), vec!["s4b".to_string()]),
                ("n2".to_string(), vec!["s6a".to_string(), "s6b".to_string()]),
            ]
        );
    }
}
