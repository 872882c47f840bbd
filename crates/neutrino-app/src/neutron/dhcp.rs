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
//!
//! `dhcp_agent_scheduler`: an admin may schedule a network to DHCP agents by hand
//! (`POST /v2.0/agents/{id}/dhcp-networks`, `DELETE .../dhcp-networks/{network}`); the
//! network then keeps the list of hosts in its internal attribute [`DHCP_HOSTS`] (not shown)
//! and gets one DHCP port per listed host (none when the list is empty), instead of the
//! automatic one. `GET /v2.0/networks/{id}/dhcp-agents` and `GET
//! /v2.0/agents/{id}/dhcp-networks` answer who hosts what.

use neutrino_store::{Record, Selector, Tx};
use neutrino_types::{ApiError, ApiResult};
use serde_json::{json, Value};

use super::owners::{DHCP_HOSTS, DHCP_OWNER};
use super::subnets::SubnetInfo;
use super::{s, Doc};
use crate::agents::{is_role_entry, AGENT_TYPE};
use crate::{db, App, Context};

/// The role entry of DHCP agents.
const DHCP_AGENT_TYPE: &str = "DHCP agent";

/// The hosts a network's DHCP is scheduled to by hand, if it is.
fn scheduled_hosts(network: &Value) -> Option<Vec<String>> {
    network.get(DHCP_HOSTS)?.as_array().map(|l| {
        l.iter()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect()
    })
}

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
        let net = tx.get("network", network).await.map_err(db)?;
        let scheduled = net.as_ref().and_then(|n| scheduled_hosts(&n.body));
        // By hand: one port per scheduled host. Automatic: the port in place keeps its host;
        // without one, the scheduler picks.
        let targets: Vec<String> = match (&scheduled, ports.first()) {
            (Some(hosts), _) => hosts.clone(),
            (None, Some(p)) => vec![s(&p.body, "binding:host_id").to_string()],
            (None, None) => self
                .dhcp_host(tx, network)
                .await?
                .map(|(host, _)| host)
                .into_iter()
                .collect(),
        };
        let mut kept: Vec<Record> = Vec::new();
        for p in ports {
            let host = s(&p.body, "binding:host_id").to_string();
            let duplicate = kept.iter().any(|k| s(&k.body, "binding:host_id") == host);
            if scheduled.is_some() && (!targets.contains(&host) || duplicate) {
                self.remove_service_port(tx, &p).await?;
            } else {
                kept.push(p);
            }
        }
        let project = net
            .as_ref()
            .map(|n| n.project_id.clone())
            .unwrap_or_default();
        for host in &targets {
            if kept.iter().any(|k| s(&k.body, "binding:host_id") == host) {
                continue;
            }
            let Some(agent) = tx
                .claim_owner(&format!("agent:{AGENT_TYPE}"), host)
                .await
                .map_err(db)?
            else {
                continue;
            };
            let ips: Vec<Value> = served.iter().map(|id| json!({"subnet_id": id})).collect();
            let device = format!("dhcp{agent}-{network}");
            self.insert_service_port(tx, &project, network, Some(json!(ips)), DHCP_OWNER, &device)
                .await?;
        }
        for port in kept {
            self.sync_dhcp_addresses(tx, port, &subnets, &served, &automatic)
                .await?;
        }
        Ok(())
    }

    /// Brings one DHCP port's addresses in line with the served subnets.
    async fn sync_dhcp_addresses(
        &self,
        tx: &mut Tx,
        mut port: Record,
        subnets: &[Record],
        served: &[&str],
        automatic: &[&str],
    ) -> ApiResult<()> {
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

impl App {
    /// The agent `id` to schedule DHCP to: its host. 404 for no agent; 409
    /// `InvalidDHCPAgent` for one that serves no DHCP or is disabled.
    async fn dhcp_agent_host(&self, tx: &mut Tx, id: &str, valid: bool) -> ApiResult<String> {
        let rec = tx
            .get("agent", id)
            .await
            .map_err(db)?
            .ok_or_else(|| ApiError::not_found("agent", id))?;
        let serves = rec.body["agent_type"] == DHCP_AGENT_TYPE
            || (!is_role_entry(&rec.body) && rec.body["configurations"]["dhcp"] != false);
        if valid && (!serves || rec.body["admin_state_up"] == false) {
            return Err(ApiError::conflict(
                "InvalidDHCPAgent",
                format!("Agent {id} is not a valid DHCP Agent or has been disabled."),
            ));
        }
        Ok(s(&rec.body, "host").to_string())
    }

    /// The hosts serving a network's DHCP: the scheduled ones, else its DHCP ports' hosts.
    async fn dhcp_hosting(&self, tx: &mut Tx, network: &Record) -> ApiResult<Vec<String>> {
        if let Some(hosts) = scheduled_hosts(&network.body) {
            return Ok(hosts);
        }
        Ok(self
            .network_ports_in_roles(tx, &network.id, &[DHCP_OWNER])
            .await?
            .iter()
            .map(|p| s(&p.body, "binding:host_id").to_string())
            .filter(|h| !h.is_empty())
            .collect())
    }

    /// The network `id`, locked (404).
    async fn locked_network(&self, tx: &mut Tx, id: &str) -> ApiResult<Record> {
        tx.lock("network", id).await.map_err(db)?;
        tx.get("network", id)
            .await
            .map_err(db)?
            .ok_or_else(|| ApiError::not_found("network", id))
    }

    /// Schedules a network's DHCP to `hosts` by hand and brings its ports in line.
    async fn schedule_dhcp_to(
        &self,
        tx: &mut Tx,
        mut network: Record,
        hosts: Vec<String>,
    ) -> ApiResult<()> {
        network.body[DHCP_HOSTS] = json!(hosts);
        tx.update("network", &network.id, &network.body)
            .await
            .map_err(db)?;
        self.sync_dhcp_port(tx, &network.id).await
    }

    /// `GET /v2.0/networks/{id}/dhcp-agents`: the DHCP agents hosting a network.
    pub async fn dhcp_agents_hosting_network(
        &self,
        ctx: &Context,
        network: &str,
    ) -> ApiResult<Value> {
        self.check_rule(ctx, "get_dhcp-agents", &Default::default())?;
        let beats = self.inner.store.heartbeats().await.map_err(db)?;
        let mut tx = self.read().await?;
        let net = tx
            .get("network", network)
            .await
            .map_err(db)?
            .ok_or_else(|| ApiError::not_found("network", network))?;
        let hosts = self.dhcp_hosting(&mut tx, &net).await?;
        let agents = tx.list("agent", &Default::default()).await.map_err(db)?;
        let mut out = Vec::new();
        for host in &hosts {
            // The host's "DHCP agent" entry, or its own agent where it has none.
            let on_host = || agents.iter().filter(|a| s(&a.body, "host") == host);
            let entry = on_host().any(|a| a.body["agent_type"] == DHCP_AGENT_TYPE);
            for agent in on_host() {
                let wanted = if entry {
                    agent.body["agent_type"] == DHCP_AGENT_TYPE
                } else {
                    !is_role_entry(&agent.body)
                };
                if wanted {
                    let beat = beats.iter().find(|(h, _)| h == host).map(|(_, at)| *at);
                    out.push(self.render_agent(agent.body.clone(), beat));
                }
            }
        }
        Ok(json!({"agents": out}))
    }

    /// `GET /v2.0/agents/{id}/dhcp-networks`: the networks a DHCP agent hosts.
    pub async fn dhcp_agent_networks(&self, ctx: &Context, agent: &str) -> ApiResult<Value> {
        self.check_rule(ctx, "get_dhcp-networks", &Default::default())?;
        let ids: Vec<String> = {
            let mut tx = self.read().await?;
            let host = self.dhcp_agent_host(&mut tx, agent, false).await?;
            let sel = Selector {
                roles: Some(vec![DHCP_OWNER.to_string()]),
                ..Default::default()
            };
            let on_host: Vec<String> = tx
                .list("port", &sel)
                .await
                .map_err(db)?
                .into_iter()
                .filter(|p| s(&p.body, "binding:host_id") == host)
                .filter_map(|p| p.parent_id)
                .collect();
            tx.list("network", &Default::default())
                .await
                .map_err(db)?
                .into_iter()
                .filter(|n| match scheduled_hosts(&n.body) {
                    Some(hosts) => hosts.contains(&host),
                    None => on_host.contains(&n.id),
                })
                .map(|n| n.id)
                .collect()
        };
        if ids.is_empty() {
            return Ok(json!({"networks": []}));
        }
        let pairs: Vec<(String, String)> = ids.into_iter().map(|i| ("id".to_string(), i)).collect();
        let networks = super::Collection::by_path("networks").ok_or_else(ApiError::internal)?;
        let page = self.list(ctx, networks, &pairs).await?;
        let networks: Vec<Value> = page.items.into_iter().map(Value::Object).collect();
        Ok(json!({ "networks": networks }))
    }

    /// `POST /v2.0/agents/{id}/dhcp-networks` with `{"network_id": ...}`: the agent's host
    /// serves the network's DHCP too (409 `NetworkHostedByDHCPAgent` when it does already).
    pub async fn add_network_to_dhcp_agent(
        &self,
        ctx: &Context,
        agent: &str,
        body: Value,
    ) -> ApiResult<Value> {
        self.check_rule(ctx, "create_dhcp-network", &Default::default())?;
        let network = body
            .get("network_id")
            .and_then(Value::as_str)
            .filter(|n| neutrino_types::attrs::is_uuid(n))
            .ok_or_else(|| ApiError::bad_request("Invalid input for network_id"))?
            .to_string();
        let mut tx = self.write().await?;
        let host = self.dhcp_agent_host(&mut tx, agent, true).await?;
        let net = self.locked_network(&mut tx, &network).await?;
        let mut hosts = self.dhcp_hosting(&mut tx, &net).await?;
        if hosts.contains(&host) {
            return Err(ApiError::conflict(
                "NetworkHostedByDHCPAgent",
                format!("The network {network} has been already hosted by the DHCP Agent {agent}."),
            ));
        }
        hosts.push(host);
        self.schedule_dhcp_to(&mut tx, net, hosts).await?;
        tx.commit().await.map_err(db)?;
        Ok(Value::Null)
    }

    /// `DELETE /v2.0/agents/{id}/dhcp-networks/{network}`: the agent's host stops serving
    /// the network's DHCP (409 `NetworkNotHostedByDhcpAgent` when it does not).
    pub async fn remove_network_from_dhcp_agent(
        &self,
        ctx: &Context,
        agent: &str,
        network: &str,
    ) -> ApiResult<()> {
        self.check_rule(ctx, "delete_dhcp-network", &Default::default())?;
        let mut tx = self.write().await?;
        let host = self.dhcp_agent_host(&mut tx, agent, false).await?;
        let net = self.locked_network(&mut tx, network).await?;
        let hosts = self.dhcp_hosting(&mut tx, &net).await?;
        if !hosts.contains(&host) {
            return Err(ApiError::conflict(
                "NetworkNotHostedByDhcpAgent",
                format!("The network {network} is not hosted by the DHCP agent {agent}."),
            ));
        }
        let rest = hosts.into_iter().filter(|h| *h != host).collect();
        self.schedule_dhcp_to(&mut tx, net, rest).await?;
        tx.commit().await.map_err(db)
    }
}
