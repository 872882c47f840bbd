//! Address scopes: address space in which subnet pools never overlap and routers route without
//! NAT. Sharing is an RBAC policy (`object_type=address_scope`); a shared scope cannot be
//! unshared; a scope referenced by a pool cannot be deleted.

use neutrino_store::{Record, Selector, Tx};
use neutrino_types::{ApiError, ApiResult};
use serde_json::{json, Value};

use async_trait::async_trait;
use neutrino_types::resources as spec;

use super::kind::Kind;
use super::scopes::rbac_key;
use super::{s, Collection, Doc, View};
use crate::{db, App, Context};

/// `/v2.0/address-scopes`.
pub(super) static COLLECTION: Collection = Collection::new(
    "address-scopes",
    "address_scope",
    spec::ADDRESS_SCOPE,
    &AddressScopes,
)
.untagged()
.unrevised()
.shared_through_rbac();

/// Address scopes, shared through RBAC policies.
struct AddressScopes;

#[async_trait]
impl Kind for AddressScopes {
    async fn create(
        &self,
        app: &App,
        tx: &mut Tx,
        ctx: &Context,
        body: &mut Doc,
    ) -> ApiResult<Option<String>> {
        app.create_address_scope(tx, ctx, body).await
    }

    async fn update(
        &self,
        app: &App,
        tx: &mut Tx,
        ctx: &Context,
        rec: &mut Record,
        changes: Doc,
    ) -> ApiResult<()> {
        app.update_address_scope(tx, ctx, rec, changes).await
    }

    async fn delete(
        &self,
        app: &App,
        tx: &mut Tx,
        ctx: &Context,
        rec: &Record,
        _view: &View,
    ) -> ApiResult<()> {
        app.delete_address_scope(tx, ctx, rec).await
    }
}

impl App {
    pub(super) async fn create_address_scope(
        &self,
        tx: &mut Tx,
        ctx: &Context,
        body: &mut Doc,
    ) -> ApiResult<Option<String>> {
        let shared = body
            .remove("shared")
            .and_then(|v| v.as_bool())
            .unwrap_or(false);
        if shared {
            self.check_rule(ctx, "create_address_scope:shared", body)?;
        }
        for k in ["created_at", "updated_at", "revision_number"] {
            body.remove(k);
        }
        let doc = json!(body);
        if shared {
            self.insert_rbac(
                tx,
                s(&doc, "project_id"),
                "address_scope",
                s(&doc, "id"),
                "access_as_shared",
                "*",
            )
            .await?;
        }
        Ok(None)
    }

    pub(super) async fn update_address_scope(
        &self,
        tx: &mut Tx,
        ctx: &Context,
        rec: &mut Record,
        changes: Doc,
    ) -> ApiResult<()> {
        for (key, value) in changes {
            if key == "shared" {
                self.check_rule(
                    ctx,
                    "update_address_scope:shared",
                    super::authz::body_of(rec),
                )?;
                let view = View::load(tx, "address_scope").await?;
                let now_shared = view.wildcard(&rec.id, "access_as_shared");
                match (now_shared, value.as_bool() == Some(true)) {
                    (true, false) => {
                        return Err(ApiError::bad(
                            "AddressScopeUpdateError",
                            format!("Unable to update address scope {}: Shared address scope can't be unshared", rec.id),
                        ))
                    }
                    (false, true) => {
                        self.insert_rbac(tx, &rec.project_id, "address_scope", &rec.id, "access_as_shared", "*").await?;
                    }
                    _ => {}
                }
            } else {
                rec.body[key.as_str()] = value;
            }
        }
        Ok(())
    }

    pub(super) async fn delete_address_scope(
        &self,
        tx: &mut Tx,
        _ctx: &Context,
        rec: &Record,
    ) -> ApiResult<()> {
        let pools = tx
            .list("subnetpool", &Selector::default())
            .await
            .map_err(db)?;
        if pools
            .iter()
            .any(|p| s(&p.body, "address_scope_id") == rec.id)
        {
            return Err(ApiError::conflict(
                "AddressScopeInUse",
                format!("Unable to complete operation on address scope {}. There are one or more subnet pools in use on the address scope", rec.id),
            ));
        }
        let sel = Selector {
            parent_ids: Some(vec![rec.id.clone()]),
            ..Default::default()
        };
        for p in tx.list("rbac_policy", &sel).await.map_err(db)? {
            tx.release("rbac", &rbac_key(&p.body)).await.map_err(db)?;
            tx.delete("rbac_policy", &p.id).await.map_err(db)?;
        }
        Ok(())
    }

    /// The pools that sit in an address scope.
    pub(super) async fn scope_pools(&self, tx: &mut Tx, scope: &str) -> ApiResult<Vec<Record>> {
        Ok(tx
            .list("subnetpool", &Selector::default())
            .await
            .map_err(db)?
            .into_iter()
            .filter(|p| p.body.get("address_scope_id").and_then(Value::as_str) == Some(scope))
            .collect())
    }
}
