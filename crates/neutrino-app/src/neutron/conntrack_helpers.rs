//! Router conntrack helpers, wire-compatible with Neutron's `l3-conntrack-helper` service
//! plugin: `/v2.0/routers/{router_id}/conntrack_helpers`, each record a child of its router
//! (`router_id`; its project is not shown). Specification and the pure checks:
//! `neutrino_types::segment_ranges`.
//!
//! A helper must be one of the allowed helpers with one of its protocols (upstream's default
//! `allowed_conntrack_helpers`; 400 `ConntrackHelperNotAllowed` / `InvalidProtocolForHelper`);
//! one router cannot have two helpers of the same protocol, port and helper (400, as
//! upstream's duplicate entry). The router's owner manages them (`ext_parent:project_id`),
//! routers list them as `conntrack_helpers` (`expose-l3-conntrack-helper`), and a deleted
//! router takes its helpers with it. Agents mirror them (a feed kind) and realise them in the
//! router namespaces (`neutrino_dataplane::conntrack_helpers`).

use async_trait::async_trait;
use neutrino_store::{Record, Selector, Tx};
use neutrino_types::segment_ranges::{self as spec, check_helper};
use neutrino_types::{ApiError, ApiResult};
use serde_json::{json, Value};

use super::authz::{parent_owner, Extras};
use super::kind::Kind;
use super::view::Need;
use super::{s, Collection, Doc, View};
use crate::{db, App, Context};

/// The storage kind.
pub(super) const KIND: &str = "conntrack_helper";

/// `/v2.0/routers/{router_id}/conntrack_helpers`.
pub(super) static COLLECTION: Collection = Collection::new(
    "conntrack_helpers",
    KIND,
    spec::CONNTRACK_HELPER,
    &ConntrackHelpers,
)
.untagged()
.unrevised()
.nested("routers", "router_id");

/// Conntrack helpers of routers.
struct ConntrackHelpers;

/// The helpers of the routers `routers`.
pub(super) async fn of_routers(tx: &mut Tx, routers: Vec<String>) -> ApiResult<Vec<Record>> {
    let sel = Selector {
        parent_ids: Some(routers),
        ..Default::default()
    };
    tx.list(KIND, &sel).await.map_err(db)
}

/// A router's `conntrack_helpers`: protocol, port and helper of each.
pub(super) fn shown_in_router(helpers: &[Record]) -> Value {
    super::listed_attributes(helpers, spec::SHOWN_IN_ROUTER)
}

/// Deletes the helpers of a router that goes away.
pub(super) async fn drop_router_helpers(tx: &mut Tx, router: &str) -> ApiResult<()> {
    for rec in of_routers(tx, vec![router.to_string()]).await? {
        tx.delete(KIND, &rec.id).await.map_err(db)?;
    }
    Ok(())
}

/// Checks a complete helper `doc` (id `id`) of `router`: allowed, and no other helper of the
/// router with the same protocol, port and helper.
async fn check_helper_doc(tx: &mut Tx, id: &str, router: &str, doc: &Value) -> ApiResult<()> {
    check_helper(s(doc, "helper"), s(doc, "protocol"))?;
    let same = |r: &Record| {
        r.id != id
            && ["protocol", "port", "helper"]
                .iter()
                .all(|k| r.body.get(*k) == doc.get(*k))
    };
    if of_routers(tx, vec![router.to_string()])
        .await?
        .iter()
        .any(same)
    {
        return Err(ApiError::bad_request(format!(
            "A duplicate conntrack helper entry with same attributes already exists, conflicting values are {{'router_id': '{router}', 'protocol': '{}', 'port': {}, 'helper': '{}'}}",
            s(doc, "protocol"),
            doc.get("port").cloned().unwrap_or(Value::Null),
            s(doc, "helper"),
        )));
    }
    Ok(())
}

#[async_trait]
impl Kind for ConntrackHelpers {
    async fn load_view(
        &self,
        tx: &mut Tx,
        records: &[Record],
        view: &mut View,
        need: Need,
    ) -> ApiResult<()> {
        if need == Need::Check {
            view.load_parents(tx, "router", records).await?;
        }
        Ok(())
    }

    fn visible_to_others(&self, view: &View, ctx: &Context, rec: &Record) -> bool {
        view.parent_of(rec).is_some_and(|r| ctx.owns(&r.project_id))
    }

    fn policy_extras(&self, view: &View, _ctx: &Context, rec: &Record) -> Extras {
        parent_owner(view, rec)
    }

    fn render(&self, _view: &View, _ctx: &Context, _rec: &Record, doc: &mut Doc) {
        for k in ["project_id", "tenant_id"] {
            doc.remove(k);
        }
    }

    fn not_found(&self, _parent: Option<&str>, id: &str) -> Option<ApiError> {
        Some(ApiError::new(
            404,
            "ConntrackHelperNotFound",
            format!("Conntrack Helper {id} could not be found."),
        ))
    }

    async fn create(
        &self,
        _app: &App,
        tx: &mut Tx,
        _ctx: &Context,
        body: &mut Doc,
    ) -> ApiResult<Option<String>> {
        let router = s(&json!(body), "router_id").to_string();
        if router.is_empty() {
            return Err(ApiError::no_such_url());
        }
        tx.lock("router", &router).await.map_err(db)?;
        let id = s(&json!(body), "id").to_string();
        check_helper_doc(tx, &id, &router, &json!(body)).await?;
        Ok(Some(router))
    }

    async fn update(
        &self,
        _app: &App,
        tx: &mut Tx,
        _ctx: &Context,
        rec: &mut Record,
        changes: Doc,
    ) -> ApiResult<()> {
        let router = rec.parent_id.clone().unwrap_or_default();
        tx.lock("router", &router).await.map_err(db)?;
        let mut doc = rec.body.clone();
        for (k, v) in changes {
            doc[k.as_str()] = v;
        }
        check_helper_doc(tx, &rec.id, &router, &doc).await?;
        rec.body = doc;
        Ok(())
    }
}
