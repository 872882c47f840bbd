//! DHCP ports, as Neutron's DHCP agent keeps them: a network with a subnet its DHCP server
//! serves (DHCP-enabled IPv4, DHCPv6-stateful or -stateless IPv6) gets one port owned by
//! `network:dhcp` (device id `dhcp<agent id>-<network id>`) with an address on each such
//! subnet, bound to an alive agent chosen by a hash of the network id. Its addresses follow
//! the subnets (a new one adds an address, `enable_dhcp=false` or a deleted subnet removes
//! it; SLAAC and DHCPv6-stateless addresses come with the port); without served subnets the
//! port goes. Nothing happens
//! while no agent is alive (API-only deployments); networks created before the first agent
//! get their port when it registers. A deleted DHCP port comes back at once, like the port
//! the upstream agent recreates on its next sync.

use neutrino_store::{Record, Tx};
use neutrino_types::ApiResult;
use serde_json::{json, Value};

use super::owners::DHCP_OWNER;
use super::subnets::SubnetInfo;
use super::{s, Doc};
use crate::{db, App};

impl App {
    /// Brings a network's DHCP port in line with the subnets its DHCP server serves.
    pub(super) async fn sync_dhcp_port(&self, tx: &mut Tx, network: &str) -> ApiResult<()> {
        let subnets = self.network_subnets(tx, network).await?;
        let served: Vec<&str> = subnets
            .iter()
            .filter(|sn| served_by_dhcp(&sn.body))
            .map(|sn| sn.id.as_str())
            .collect();
        // SLAAC and DHCPv6-stateless addresses come with every port, DHCP ports included.
        let automatic: Vec<&str> = subnets
            .iter()
            .filter(|sn| SubnetInfo::from_record(sn).is_some_and(|i| i.is_auto_address()))
            .map(|sn| sn.id.as_str())
            .collect();
        let mut ports: Vec<Record> = self
            .network_ports_in_roles(tx, network, &[DHCP_OWNER])
            .await?;
        ports.sort_by(|a, b| {
            (s(&a.body, "created_at"), &a.id).cmp(&(s(&b.body, "created_at"), &b.id))
        });
        if served.is_empty() {
            for p in &ports {
                self.remove_service_port(tx, p).await?;
            }
            return Ok(());
        }
        let Some(mut port) = ports.into_iter().next() else {
            let Some((_, agent)) = self.dhcp_host(tx, network).await? else {
                return Ok(());
            };
            let project = tx
                .get("network", network)
                .await
                .map_err(db)?
                .map(|n| n.project_id)
                .unwrap_or_default();
            let ips: Vec<Value> = served.iter().map(|id| json!({"subnet_id": id})).collect();
            let device = format!("dhcp{agent}-{network}");
            self.insert_service_port(tx, &project, network, Some(json!(ips)), DHCP_OWNER, &device)
                .await?;
            return Ok(());
        };
        // An address on a subnet of the network that is not served (and not automatic) goes;
        // a served subnet without an address gets one.
        let current: Vec<Value> = port.body["fixed_ips"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let on_network = |id: &str| subnets.iter().any(|sn| sn.id == id);
        let stale = |ip: &Value| {
            let id = s(ip, "subnet_id");
            on_network(id) && !served.contains(&id) && !automatic.contains(&id)
        };
        let missing: Vec<&str> = served
            .iter()
            .copied()
            .filter(|id| !automatic.contains(id))
            .filter(|id| !current.iter().any(|ip| s(ip, "subnet_id") == *id))
            .collect();
        if missing.is_empty() && !current.iter().any(stale) {
            return Ok(());
        }
        let mut wanted: Vec<Value> = current
            .iter()
            .filter(|ip| !stale(ip))
            .map(|ip| match s(ip, "subnet_id") {
                id if automatic.contains(&id) => json!({"subnet_id": id}),
                _ => ip.clone(),
            })
            .collect();
        wanted.extend(missing.iter().map(|id| json!({"subnet_id": id})));
        let mut changes = Doc::new();
        changes.insert("fixed_ips".into(), json!(wanted));
        self.update_port(tx, &mut port, changes).await?;
        super::bump(&mut port.body);
        tx.update("port", &port.id, &port.body).await.map_err(db)?;
        Ok(())
    }
}

/// Whether a network's DHCP server serves a subnet, as Neutron's DHCP agent decides:
/// DHCP-enabled IPv4 subnets, and DHCP-enabled IPv6 subnets with `ipv6_address_mode`
/// dhcpv6-stateful or dhcpv6-stateless (or with neither IPv6 mode set); not SLAAC.
fn served_by_dhcp(subnet: &Value) -> bool {
    if subnet["enable_dhcp"] != true {
        return false;
    }
    match subnet["ip_version"].as_i64() {
        Some(4) => true,
        Some(6) => matches!(
            (
                subnet["ipv6_address_mode"].as_str(),
                subnet["ipv6_ra_mode"].as_str()
            ),
            (Some("dhcpv6-stateful" | "dhcpv6-stateless"), _) | (None, None)
        ),
        _ => false,
    }
}
