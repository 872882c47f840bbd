//! Auto-allocated topology ("get me a network", extension `auto-allocated-topology`):
//! `GET /v2.0/auto-allocated-topology/{project}` gives a project a network, subnets from the
//! default subnet pools and a router uplinked to the default external network, built once.
//! Everything is made in one transaction and recorded by the claim `auto-topology` (key =
//! project, owner = network; `auto-topology-router` holds the router), so two requests, on one
//! server or two, end with one topology: the loser rolls back and answers with the winner's.

use neutrino_store::Tx;
use neutrino_types::attrs::{self, Op};
use neutrino_types::{ApiError, ApiResult};
use serde_json::{json, Value};

use super::authz::project_target;
use super::{owner_project, s, Collection, Doc};
use crate::{db, App, Context};

const NETWORK_CLAIM: &str = "auto-topology";
const ROUTER_CLAIM: &str = "auto-topology-router";

fn failure(reason: &str) -> ApiError {
    ApiError::conflict(
        "AutoAllocationFailure",
        format!("Deployment error: {reason}."),
    )
}

fn response(network: &str, project: &str) -> Value {
    json!({"auto_allocated_topology": {"id": network, "project_id": project}})
}

impl App {
    /// The project a request is about (`None` means the caller's), once the policy's `rule`
    /// allows the caller on it.
    fn target_project(&self, ctx: &Context, project: &str, rule: &str) -> ApiResult<String> {
        let project = if project == "None" || project.is_empty() {
            ctx.project_id.clone()
        } else {
            project.to_string()
        };
        self.check_rule(ctx, rule, &project_target(&project))?;
        Ok(project)
    }

    /// `GET /v2.0/auto-allocated-topology/{project}`; `fields=dry-run` only checks that the
    /// deployment can provide one (a default external network and default subnet pools).
    pub async fn auto_allocated_topology(
        &self,
        ctx: &Context,
        project: &str,
        fields: &[String],
    ) -> ApiResult<Value> {
        let project = self.target_project(ctx, project, "get_auto_allocated_topology")?;
        let mut tx = self.read().await?;
        if fields.iter().any(|f| f == "dry-run") {
            self.default_external_network(&mut tx).await?;
            if self.default_pools(&mut tx, ctx).await?.is_empty() {
                return Err(failure("No default subnetpools defined"));
            }
            return Ok(response("dry-run=pass", &project));
        }
        if !fields.is_empty() {
            return Err(ApiError::bad(
                "BadRequest",
                "Bad auto_allocate request: Unrecognized field.",
            ));
        }
        if let Some(network) = tx.claim_owner(NETWORK_CLAIM, &project).await.map_err(db)? {
            return Ok(response(&network, &project));
        }
        drop(tx);
        let mut tx = self.write().await?;
        let network = self.build_topology(&mut tx, ctx, &project).await?;
        if !tx
            .claim(NETWORK_CLAIM, &project, &network)
            .await
            .map_err(db)?
        {
            // Another request built one first: ours goes with the rollback.
            drop(tx);
            let mut tx = self.read().await?;
            let winner = tx.claim_owner(NETWORK_CLAIM, &project).await.map_err(db)?;
            return Ok(response(&winner.unwrap_or(network), &project));
        }
        tx.commit().await.map_err(db)?;
        Ok(response(&network, &project))
    }

    /// `DELETE /v2.0/auto-allocated-topology/{project}`: the router's interfaces, the router
    /// and the network go (a network still in use keeps everything: 409).
    pub async fn delete_auto_allocated_topology(
        &self,
        ctx: &Context,
        project: &str,
    ) -> ApiResult<()> {
        let project = self.target_project(ctx, project, "delete_auto_allocated_topology")?;
        let mut tx = self.write().await?;
        let Some(network) = tx.claim_owner(NETWORK_CLAIM, &project).await.map_err(db)? else {
            return Ok(());
        };
        let subnets = self.network_subnets(&mut tx, &network).await?;
        if let Some(router) = tx.claim_owner(ROUTER_CLAIM, &project).await.map_err(db)? {
            let coll = &super::routers::COLLECTION;
            match self
                .writable(&mut tx, ctx, coll, &router, "delete", &Doc::new())
                .await
            {
                Ok((mut rec, view)) => {
                    for sn in &subnets {
                        let body = json!({"subnet_id": sn.id});
                        match self
                            .router_action(&mut tx, ctx, &mut rec, "remove_router_interface", body)
                            .await
                        {
                            Err(e) if e.status != 404 => return Err(e),
                            _ => {}
                        }
                    }
                    self.remove(&mut tx, ctx, coll, &rec, &view).await?;
                }
                Err(e) if e.status == 404 => {}
                Err(e) => return Err(e),
            }
        }
        let coll = &super::networks::COLLECTION;
        match self
            .writable(&mut tx, ctx, coll, &network, "delete", &Doc::new())
            .await
        {
            Ok((rec, view)) => self.remove(&mut tx, ctx, coll, &rec, &view).await?,
            Err(e) if e.status == 404 => {}
            Err(e) => return Err(e),
        }
        tx.release(NETWORK_CLAIM, &project).await.map_err(db)?;
        tx.release(ROUTER_CLAIM, &project).await.map_err(db)?;
        tx.commit().await.map_err(db)
    }

    /// Forgets a project's topology when its network goes.
    pub(super) async fn forget_auto_topology(&self, tx: &mut Tx, network: &str) -> ApiResult<()> {
        tx.release_owned(NETWORK_CLAIM, network).await.map_err(db)
    }

    async fn default_external_network(&self, tx: &mut Tx) -> ApiResult<String> {
        super::networks::default_external(tx)
            .await?
            .ok_or_else(|| failure("No default router:external network"))
    }

    /// The default subnet pools (IPv4, IPv6) the caller can use.
    async fn default_pools(&self, tx: &mut Tx, ctx: &Context) -> ApiResult<Vec<(u8, String)>> {
        let mut pools = Vec::new();
        for version in [4u8, 6] {
            if let Some(pool) = self.default_pool(tx, ctx, version).await? {
                pools.push((version, pool.id));
            }
        }
        Ok(pools)
    }

    /// Creates one resource of `resource` for `project` as the API would.
    async fn create_one(
        &self,
        tx: &mut Tx,
        ctx: &Context,
        resource: &str,
        body: Value,
    ) -> ApiResult<neutrino_store::Record> {
        let coll = Collection::of(resource)?;
        let doc: Doc = body.as_object().cloned().unwrap_or_default();
        let mut doc = attrs::validate(coll.spec, &doc, Op::Create)?;
        let project = owner_project(ctx, &mut doc, coll)?;
        self.insert_new(tx, ctx, coll, doc, project).await
    }

    /// Network, subnets from the default pools and an uplinked router; the network's id.
    async fn build_topology(&self, tx: &mut Tx, ctx: &Context, project: &str) -> ApiResult<String> {
        let external = self.default_external_network(tx).await?;
        // Errors a caller could fix (bad or missing prerequisites) read as a deployment
        // failure, like Neutron's; anything else (quotas, storage) passes through.
        let unmet = |reason: &'static str| {
            move |e: ApiError| {
                if matches!(e.status, 400 | 404) || e.kind == "SubnetAllocationError" {
                    failure(reason)
                } else {
                    e
                }
            }
        };
        self.ensure_default_group(tx, project).await?;
        let private = "Unable to provide project private network";
        let network = self
            .create_one(
                tx,
                ctx,
                "network",
                json!({"name": "auto_allocated_network", "admin_state_up": true,
                       "project_id": project, "shared": false}),
            )
            .await
            .map_err(unmet(private))?;
        let pools = self.default_pools(tx, ctx).await?;
        if pools.is_empty() {
            return Err(failure(private));
        }
        let mut subnets = Vec::new();
        for (version, pool) in pools {
            let subnet = self
                .create_one(
                    tx,
                    ctx,
                    "subnet",
                    json!({"name": format!("auto_allocated_subnet_v{version}"),
                           "network_id": network.id, "project_id": project,
                           "ip_version": version, "subnetpool_id": pool}),
                )
                .await
                .map_err(unmet(private))?;
            subnets.push(subnet.id);
        }
        let uplink = "Unable to provide external connectivity";
        let mut router = self
            .create_one(
                tx,
                ctx,
                "router",
                json!({"name": "auto_allocated_router", "admin_state_up": true,
                       "project_id": project,
                       "external_gateway_info": {"network_id": external}}),
            )
            .await
            .map_err(unmet(uplink))?;
        for subnet in subnets {
            self.router_action(
                tx,
                ctx,
                &mut router,
                "add_router_interface",
                json!({ "subnet_id": subnet }),
            )
            .await
            .map_err(unmet(uplink))?;
        }
        tx.release(ROUTER_CLAIM, project).await.map_err(db)?;
        tx.claim(ROUTER_CLAIM, project, &router.id)
            .await
            .map_err(db)?;
        Ok(s(&network.body, "id").to_string())
    }
}
