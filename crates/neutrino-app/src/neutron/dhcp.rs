//! DHCP ports, as Neutron's DHCP agent keeps them: a network with a DHCP-enabled IPv4 subnet
//! gets one port owned by `network:dhcp` (device id `dhcp<agent id>-<network id>`) with an
//! address on each such subnet, bound to an alive agent chosen by a hash of the network id.
//! Its addresses follow the subnets (a new one adds an address, `enable_dhcp=false` or a
//! deleted subnet removes it); without DHCP-enabled subnets the port goes. Nothing happens
//! while no agent is alive (API-only deployments); networks created before the first agent
//! get their port when it registers. A deleted DHCP port comes back at once, like the port
//! the upstream agent recreates on its next sync.

use neutrino_store::{Record, Selector, Tx};
use neutrino_types::ApiResult;
use serde_json::{json, Value};

use super::{s, Doc};
use crate::agents::AGENT_TYPE;
use crate::{db, App, Context};

/// `device_owner` of DHCP ports.
pub(super) const DHCP_OWNER: &str = "network:dhcp";

impl App {
    /// The host that serves DHCP for a network and its agent's id; `None` without alive agents.
    pub(super) async fn dhcp_host(
        &self,
        tx: &mut Tx,
        network: &str,
    ) -> ApiResult<Option<(String, String)>> {
        let hosts = self.agent_hosts(tx, "dhcp").await?;
        let Some(host) = crate::agents::pick_host(&hosts, network) else {
            return Ok(None);
        };
        let agent = tx
            .claim_owner(&format!("agent:{AGENT_TYPE}"), &host)
            .await
            .map_err(db)?
            .unwrap_or_default();
        Ok(Some((host, agent)))
    }

    /// Brings a network's DHCP port in line with its DHCP-enabled IPv4 subnets.
    pub(super) async fn sync_dhcp_port(&self, tx: &mut Tx, network: &str) -> ApiResult<()> {
        let subnets = self.network_subnets(tx, network).await?;
        let v4: Vec<&str> = subnets
            .iter()
            .filter(|sn| sn.body["ip_version"] == 4)
            .map(|sn| sn.id.as_str())
            .collect();
        let dhcp: Vec<&str> = subnets
            .iter()
            .filter(|sn| sn.body["ip_version"] == 4 && sn.body["enable_dhcp"] == true)
            .map(|sn| sn.id.as_str())
            .collect();
        let mut ports: Vec<Record> = self
            .network_ports(tx, network)
            .await?
            .into_iter()
            .filter(|p| s(&p.body, "device_owner") == DHCP_OWNER)
            .collect();
        ports.sort_by(|a, b| {
            (s(&a.body, "created_at"), &a.id).cmp(&(s(&b.body, "created_at"), &b.id))
        });
        if dhcp.is_empty() {
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
            let ips: Vec<Value> = dhcp.iter().map(|id| json!({"subnet_id": id})).collect();
            let device = format!("dhcp{agent}-{network}");
            self.insert_service_port(tx, &project, network, Some(json!(ips)), DHCP_OWNER, &device)
                .await?;
            return Ok(());
        };
        // Addresses on IPv6 subnets are left as they are; IPv4 ones follow `enable_dhcp`.
        let current: Vec<Value> = port.body["fixed_ips"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let mut wanted: Vec<Value> = current
            .iter()
            .filter(|ip| {
                let subnet = s(ip, "subnet_id");
                dhcp.contains(&subnet) || !v4.contains(&subnet)
            })
            .cloned()
            .collect();
        for id in &dhcp {
            if !current.iter().any(|ip| s(ip, "subnet_id") == *id) {
                wanted.push(json!({"subnet_id": id}));
            }
        }
        if wanted != current {
            let service = Context::new("neutrino", "", &["admin".to_string()]);
            let mut changes = Doc::new();
            changes.insert("fixed_ips".into(), json!(wanted));
            self.update_port(tx, &service, &mut port, changes).await?;
            super::bump(&mut port.body);
            tx.update("port", &port.id, &port.body).await.map_err(db)?;
        }
        Ok(())
    }

    /// Gives every network that needs one its DHCP port (after an agent registered).
    pub(crate) async fn schedule_dhcp(&self) -> ApiResult<()> {
        let mut tx = self.write().await?;
        let networks = tx.list("network", &Selector::default()).await.map_err(db)?;
        for net in networks {
            self.sync_dhcp_port(&mut tx, &net.id).await?;
        }
        tx.commit().await.map_err(db)
    }
}
