//! Highly available routers (`l3-ha`): the `ha` attribute, the per-project HA network and the
//! HA ports that record which agents host a router.
//!
//! A router runs on one host at a time: its interface and gateway ports are bound there, and
//! that host's agent builds the router's namespace. The host is a claim (`l3-agent`, key =
//! router, owner = host), set when the router is first scheduled and moved in the same
//! transaction as the ports' bindings. An HA router also has a standby host (claim
//! `l3-ha-standby`, "" while there is none) and, like upstream, one `network:router_ha_interface`
//! port per hosting agent on its project's HA network ("HA network project <id>", owned by no
//! project, created with the project's first HA router and deleted with its last). The
//! failover itself is in [`super::l3_scheduler`].

use neutrino_store::{Record, Selector, Tx};
use neutrino_types::attrs::{self, Op};
use neutrino_types::{ApiError, ApiResult};
use serde_json::{json, Value};

use super::owners::HA_PORT_OWNER;
use super::router_flavour::{is_ha, Flavour};
use super::scopes::{HOST_SCOPE, STANDBY_SCOPE};
use super::{s, Doc, View};
use crate::{db, new_id, App, Context};

/// Addresses of the HA networks (Neutron's `l3_ha_net_cidr` default).
const HA_CIDR: &str = "169.254.192.0/18";
/// Claim scope: project → its HA network.
const NETWORK_SCOPE: &str = "ha-network";

fn service() -> Context {
    Context::new("neutrino", "", &["admin".to_string()])
}

impl App {
    /// Sets `ha` on a new router (admins only may ask; default from the server option, or
    /// `flavour` when the router's flavor decides) and, for an HA router, schedules it on an
    /// active and a standby host.
    pub(super) async fn ha_on_create(
        &self,
        tx: &mut Tx,
        ctx: &Context,
        body: &mut Doc,
        flavour: Option<bool>,
    ) -> ApiResult<()> {
        let requested = body.get("ha").cloned();
        // Any value, also `false`, asks the policy (Neutron's default is "not specified").
        if requested.is_some() {
            self.check_rule(ctx, "create_router:ha", body)?;
        }
        let ha = requested
            .and_then(|v| v.as_bool())
            .or(flavour)
            .unwrap_or(self.config().l3_ha);
        body.insert("ha".into(), json!(ha));
        if !ha {
            return Ok(());
        }
        let rec = Record {
            kind: "router".into(),
            id: s(&json!(body), "id").to_string(),
            project_id: s(&json!(body), "project_id").to_string(),
            parent_id: None,
            body: Value::Object(body.clone()),
        };
        self.ha_network(tx, &rec.project_id).await?;
        let alive = self.agent_hosts(tx, "l3").await?;
        let (active, standby) =
            super::scheduler::plan_hosts(&rec.id, true, true, None, None, &alive);
        if let Some(host) = &active {
            self.set_router_host(tx, &rec.id, host).await?;
        }
        self.set_standby(tx, &rec, active.as_deref(), standby.as_deref())
            .await
    }

    /// Applies a change of `ha` (`update_router:ha`, router administratively down first, as in
    /// Neutron): interfaces change owner, HA ports and the standby come or go.
    pub(super) async fn ha_on_update(
        &self,
        tx: &mut Tx,
        rec: &mut Record,
        changes: &Doc,
    ) -> ApiResult<()> {
        let Some(requested) = self.change_flavour(tx, rec, changes, Flavour::Ha).await? else {
            return Ok(());
        };
        if requested {
            self.ha_network(tx, &rec.project_id).await?;
            let current = self.router_host(tx, &rec.id).await?;
            let current = (!current.is_empty()).then_some(current);
            let alive = self.agent_hosts(tx, "l3").await?;
            let (active, standby) =
                super::scheduler::plan_hosts(&rec.id, true, true, current.as_deref(), None, &alive);
            if active != current {
                let host = active.clone().unwrap_or_default();
                self.set_router_host(tx, &rec.id, &host).await?;
            }
            self.set_standby(tx, rec, active.as_deref(), standby.as_deref())
                .await
        } else {
            self.ha_teardown(tx, rec).await
        }
    }

    /// Removes what makes a router highly available: its HA ports, its standby and, with the
    /// project's last HA router, the HA network.
    pub(super) async fn ha_teardown(&self, tx: &mut Tx, router: &Record) -> ApiResult<()> {
        for port in self.ha_ports(tx, router).await? {
            self.remove_service_port(tx, &port).await?;
        }
        tx.release(STANDBY_SCOPE, &router.id).await.map_err(db)?;
        self.release_ha_network(tx, router).await
    }

    /// Forgets where a deleted router ran.
    pub(super) async fn router_hosting_deleted(
        &self,
        tx: &mut Tx,
        router: &Record,
    ) -> ApiResult<()> {
        if is_ha(&router.body) {
            self.ha_teardown(tx, router).await?;
        }
        tx.release(HOST_SCOPE, &router.id).await.map_err(db)
    }

    /// Records the standby of an HA router and makes its HA ports those of `active` and
    /// `standby`.
    pub(super) async fn set_standby(
        &self,
        tx: &mut Tx,
        router: &Record,
        active: Option<&str>,
        standby: Option<&str>,
    ) -> ApiResult<()> {
        tx.release(STANDBY_SCOPE, &router.id).await.map_err(db)?;
        tx.claim(STANDBY_SCOPE, &router.id, standby.unwrap_or_default())
            .await
            .map_err(db)?;
        let hosts: Vec<&str> = active.into_iter().chain(standby).collect();
        let network = self.ha_network(tx, &router.project_id).await?;
        let mut kept: Vec<String> = Vec::new();
        for port in self.ha_ports(tx, router).await? {
            let host = s(&port.body, "binding:host_id").to_string();
            if hosts.contains(&host.as_str()) && !kept.contains(&host) {
                kept.push(host);
            } else {
                self.remove_service_port(tx, &port).await?;
            }
        }
        for host in hosts {
            if kept.iter().any(|k| k == host) {
                continue;
            }
            let mut port = self
                .insert_service_port(tx, "", &network, None, HA_PORT_OWNER, &router.id)
                .await?;
            port.body["name"] = json!(format!("HA port project {}", router.project_id));
            port.body["binding:host_id"] = json!(host);
            tx.update("port", &port.id, &port.body).await.map_err(db)?;
        }
        Ok(())
    }

    /// The HA ports of a router.
    pub(super) async fn ha_ports(&self, tx: &mut Tx, router: &Record) -> ApiResult<Vec<Record>> {
        let Some(network) = tx
            .claim_owner(NETWORK_SCOPE, &router.project_id)
            .await
            .map_err(db)?
        else {
            return Ok(Vec::new());
        };
        Ok(self
            .network_ports_in_roles(tx, &network, &[HA_PORT_OWNER])
            .await?
            .into_iter()
            .filter(|p| s(&p.body, "device_id") == router.id)
            .collect())
    }

    /// The project's HA network, created (with its subnet) on first use. A claim makes it
    /// one per project even with several servers.
    async fn ha_network(&self, tx: &mut Tx, project: &str) -> ApiResult<String> {
        if let Some(id) = tx.claim_owner(NETWORK_SCOPE, project).await.map_err(db)? {
            // Serialises with the deletion of the project's last HA router (which locks it
            // too, then looks for other HA routers).
            tx.lock("network", &id).await.map_err(db)?;
            if tx.get("network", &id).await.map_err(db)?.is_some() {
                return Ok(id);
            }
            // Deleted by hand: start over.
            tx.release(NETWORK_SCOPE, project).await.map_err(db)?;
        }
        let id = new_id();
        if !tx.claim(NETWORK_SCOPE, project, &id).await.map_err(db)? {
            return tx
                .claim_owner(NETWORK_SCOPE, project)
                .await
                .map_err(db)?
                .ok_or_else(ApiError::internal);
        }
        let ctx = service();
        let net = &super::networks::COLLECTION;
        let body = json!({"name": format!("HA network project {project}"), "admin_state_up": true,
                          "shared": false});
        let body = attrs::validate(
            net.spec,
            body.as_object().unwrap_or(&Doc::new()),
            Op::Create,
        )?;
        // Boxed: creating a router may create a network (and the compiler sees a cycle).
        Box::pin(self.insert_record(tx, &ctx, net, body, String::new(), id.clone())).await?;
        let sub = &super::subnets::COLLECTION;
        let body = json!({"network_id": id, "name": format!("HA subnet project {project}"),
                          "ip_version": 4, "cidr": HA_CIDR, "enable_dhcp": false,
                          "gateway_ip": null});
        let body = attrs::validate(
            sub.spec,
            body.as_object().unwrap_or(&Doc::new()),
            Op::Create,
        )?;
        Box::pin(self.insert_record(tx, &ctx, sub, body, String::new(), new_id())).await?;
        Ok(id)
    }

    /// Deletes the project's HA network when `router` was the project's last HA router and
    /// no port is left on it.
    async fn release_ha_network(&self, tx: &mut Tx, router: &Record) -> ApiResult<()> {
        let project = router.project_id.as_str();
        let Some(id) = tx.claim_owner(NETWORK_SCOPE, project).await.map_err(db)? else {
            return Ok(());
        };
        // Serialises with `ha_network` in a concurrent HA router creation (PostgreSQL).
        tx.lock("network", &id).await.map_err(db)?;
        let Some(net) = tx.get("network", &id).await.map_err(db)? else {
            return tx.release(NETWORK_SCOPE, project).await.map_err(db);
        };
        let sel = Selector {
            project_ids: Some(vec![project.to_string()]),
            ..Default::default()
        };
        let others = tx.list("router", &sel).await.map_err(db)?;
        if others.iter().any(|r| r.id != router.id && is_ha(&r.body))
            || !self.network_ports(tx, &id).await?.is_empty()
        {
            return Ok(());
        }
        let coll = &super::networks::COLLECTION;
        let view =
            View::check(tx, &super::networks::COLLECTION, std::slice::from_ref(&net)).await?;
        Box::pin(self.remove(tx, &service(), coll, &net, &view)).await?;
        tx.release(NETWORK_SCOPE, project).await.map_err(db)
    }
}
