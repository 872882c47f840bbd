//! The Neutron resources: one generic request flow ([`flow`]) and one module per resource
//! kind for what is its own ([`kind::Kind`]). A kind is registered by one line in
//! [`COLLECTIONS`].

mod address_groups;
mod address_scopes;
mod authz;
mod auto_topology;
mod bgp;
mod conntrack_helpers;
mod dhcp;
mod flavors;
mod floatingips;
mod flow;
mod ip_availability;
mod kind;
mod l2gw;
mod l3_ha;
mod local_ips;
mod logging;
mod metering;
mod metering_counters;
mod ndp_proxies;
mod networks;
mod owners;
mod port_forwardings;
mod port_pools;
mod ports;
mod qos;
mod quotas;
mod rbac;
mod router_flavour;
mod routers;
mod routers_dvr;
mod scheduler;
mod scopes;
mod secgroups;
mod segment_ranges;
mod sfc;
mod subnetpools;
mod subnets;
mod trunks;
mod view;
mod zones;

use neutrino_store::{Record, Tx};
use neutrino_types::attrs::Attr;
use neutrino_types::{ApiError, ApiResult};
use serde_json::{json, Value};

use crate::{db, now, Context};
use authz::Extras;

pub use kind::Doc;
pub use quotas::QUOTA_RESOURCES;
pub(crate) use view::View;

/// Every collection the API serves, in the order `GET /v2.0/` lists the core ones.
pub static COLLECTIONS: &[&Collection] = &[
    &networks::COLLECTION,
    &subnets::COLLECTION,
    &ports::COLLECTION,
    &secgroups::GROUPS,
    &secgroups::RULES,
    &routers::COLLECTION,
    &floatingips::COLLECTION,
    &subnetpools::COLLECTION,
    &address_scopes::COLLECTION,
    &secgroups::RULE_TEMPLATES,
    &address_groups::COLLECTION,
    &trunks::COLLECTION,
    &rbac::COLLECTION,
    &sfc::FLOW_CLASSIFIERS,
    &sfc::PORT_PAIRS,
    &sfc::PORT_PAIR_GROUPS,
    &sfc::PORT_CHAINS,
    &sfc::SERVICE_GRAPHS,
    &l2gw::GATEWAYS,
    &l2gw::CONNECTIONS,
    &l2gw::REMOTE_GATEWAYS,
    &l2gw::REMOTE_CONNECTIONS,
    &l2gw::REMOTE_MACS,
    &bgp::SPEAKERS,
    &bgp::PEERS,
    &flavors::FLAVORS,
    &flavors::SERVICE_PROFILES,
    &metering::LABELS,
    &metering::RULES,
    &logging::LOGS,
    &qos::POLICIES,
    &qos::BANDWIDTH_LIMIT_RULES,
    &qos::DSCP_MARKING_RULES,
    &qos::MINIMUM_BANDWIDTH_RULES,
    &qos::MINIMUM_PACKET_RATE_RULES,
    &qos::ALIAS_BANDWIDTH_LIMIT_RULES,
    &qos::ALIAS_DSCP_MARKING_RULES,
    &qos::ALIAS_MINIMUM_BANDWIDTH_RULES,
    &qos::ALIAS_MINIMUM_PACKET_RATE_RULES,
    &port_forwardings::COLLECTION,
    &ndp_proxies::COLLECTION,
    &segment_ranges::COLLECTION,
    &conntrack_helpers::COLLECTION,
    &local_ips::LOCAL_IPS,
    &local_ips::PORT_ASSOCIATIONS,
];

/// A collection the API serves: its URL, attributes and standard behaviour, and the kind
/// that does the rest.
pub struct Collection {
    /// URL segment, e.g. `security-groups`.
    pub path: &'static str,
    /// Resource key, e.g. `security_group` (also the storage kind).
    pub resource: &'static str,
    /// Attribute specification.
    pub spec: &'static [Attr],
    /// Has the `/tags` sub-resource.
    pub taggable: bool,
    /// Accepts `If-Match: revision_number=N` and has standard attributes.
    pub revised: bool,
    /// Updates allowed at all.
    pub updatable: bool,
    /// Whether a POST may carry several items (networking-sfc and RBAC refuse bulk).
    pub bulk: bool,
    /// Filter names the spec does not carry but the resource understands.
    pub extra_filters: &'static [&'static str],
    /// The filter that names the parent of a record (`network_id` of a subnet).
    pub(crate) parent_key: Option<&'static str>,
    /// Side effects of a create write into the new rows: render them as stored.
    pub(crate) reread_after_create: bool,
    /// Other projects read records granted to them by `access_as_shared` RBAC policies.
    pub(crate) rbac_shared: bool,
    /// Served under a member of another collection (`/{parent}/{parent_id}/{path}`).
    pub nest: Option<Nest>,
    /// The key of one item in request and response bodies (`resource` unless an alias).
    pub key: &'static str,
    /// What is this resource's own.
    pub(crate) kind: &'static dyn kind::Kind,
}

/// Where a nested collection lives: under a member of the collection at path `parent`, whose
/// id its records carry as `attr` (and as their parent id).
#[derive(Clone, Copy, Debug)]
pub struct Nest {
    /// The parent collection's path, e.g. `qos/policies`.
    pub parent: &'static str,
    /// The attribute naming the parent, e.g. `qos_policy_id`.
    pub attr: &'static str,
}

impl std::fmt::Debug for Collection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Collection")
            .field("path", &self.path)
            .field("resource", &self.resource)
            .finish_non_exhaustive()
    }
}

impl Collection {
    /// A taggable, revised, updatable collection that accepts bulk creates.
    pub(crate) const fn new(
        path: &'static str,
        resource: &'static str,
        spec: &'static [Attr],
        kind: &'static dyn kind::Kind,
    ) -> Collection {
        Collection {
            path,
            resource,
            spec,
            taggable: true,
            revised: true,
            updatable: true,
            bulk: true,
            extra_filters: &[],
            parent_key: None,
            reread_after_create: false,
            rbac_shared: false,
            nest: None,
            key: resource,
            kind,
        }
    }

    /// Served as `/{parent}/{parent_id}/{path}`; records name their parent in `attr`.
    pub(crate) const fn nested(mut self, parent: &'static str, attr: &'static str) -> Collection {
        self.nest = Some(Nest { parent, attr });
        self.parent_key = Some(attr);
        self
    }

    /// Items are keyed `key` in bodies (an alias of another collection's records).
    pub(crate) const fn keyed(mut self, key: &'static str) -> Collection {
        self.key = key;
        self
    }

    /// A collection of a member of a kind family (networking-sfc's, networking-l2gw's):
    /// without tags and standard attributes, which those projects' resources lack.
    pub(crate) const fn family<F>(
        path: &'static str,
        kind: &'static kind::FamilyKind<F>,
    ) -> Collection
    where
        kind::FamilyKind<F>: kind::Kind,
    {
        Collection::new(path, kind.resource, kind.spec, kind)
            .untagged()
            .unrevised()
    }

    /// Shared with other projects through `access_as_shared` RBAC policies: the flow loads
    /// the policies of the records, lets granted projects read them, gives the policy target
    /// `shared`, and renders a `shared` attribute of the spec as whether the caller was
    /// granted (a kind's own `render` may refine it).
    pub(crate) const fn shared_through_rbac(mut self) -> Collection {
        self.rbac_shared = true;
        self
    }

    /// What the policy target of `rec` needs beyond the record: `shared` for collections
    /// shared through RBAC, then the kind's own extras.
    pub(crate) fn policy_extras(&self, view: &View, ctx: &Context, rec: &Record) -> Extras {
        let mut extras = if self.rbac_shared {
            authz::shared(view, ctx, rec)
        } else {
            Vec::new()
        };
        extras.extend(self.kind.policy_extras(view, ctx, rec));
        extras
    }

    /// Without the `/tags` sub-resource.
    pub(crate) const fn untagged(mut self) -> Collection {
        self.taggable = false;
        self
    }

    /// Without standard attributes (timestamps, revision) and If-Match.
    pub(crate) const fn unrevised(mut self) -> Collection {
        self.revised = false;
        self
    }

    /// Created and deleted, never updated.
    pub(crate) const fn immutable(mut self) -> Collection {
        self.updatable = false;
        self
    }

    /// One item per POST.
    pub(crate) const fn single(mut self) -> Collection {
        self.bulk = false;
        self
    }

    /// Filter names beyond the spec.
    pub(crate) const fn filters(mut self, names: &'static [&'static str]) -> Collection {
        self.extra_filters = names;
        self
    }

    /// Records are children of another kind, named by the `key` filter.
    pub(crate) const fn parent(mut self, key: &'static str) -> Collection {
        self.parent_key = Some(key);
        self
    }

    /// Rendered from the stored rows after a create.
    pub(crate) const fn reread(mut self) -> Collection {
        self.reread_after_create = true;
        self
    }

    /// Finds a top-level collection by URL segment. As Neutron's router, `-` and `_` are
    /// one: `/network-segment-ranges` (Tempest's) is `/network_segment_ranges` (the SDK's).
    pub fn by_path(path: &str) -> Option<&'static Collection> {
        COLLECTIONS
            .iter()
            .copied()
            .find(|c| c.path == path && c.nest.is_none())
            .or_else(|| {
                let wanted = path.replace('-', "_");
                COLLECTIONS
                    .iter()
                    .copied()
                    .find(|c| c.path.replace('-', "_") == wanted && c.nest.is_none())
            })
    }

    /// The 404 for record `id` (under the parent member `parent` when nested).
    pub(crate) fn not_found(&self, parent: Option<&str>, id: &str) -> ApiError {
        self.kind
            .not_found(parent, id)
            .unwrap_or_else(|| ApiError::not_found(self.resource, id))
    }

    /// Finds the collection nested as `child` under the collection at `parent`.
    pub fn child(parent: &str, child: &str) -> Option<&'static Collection> {
        COLLECTIONS
            .iter()
            .copied()
            .find(|c| c.path == child && c.nest.is_some_and(|n| n.parent == parent))
    }

    /// The names of its `PUT /{collection}/{id}/{action}` actions.
    pub fn actions(&self) -> &'static [&'static str] {
        self.kind.actions()
    }

    /// Finds a collection by resource name.
    pub(crate) fn of(resource: &str) -> ApiResult<&'static Collection> {
        COLLECTIONS
            .iter()
            .copied()
            .find(|c| c.resource == resource && c.key == resource)
            .ok_or_else(ApiError::internal)
    }

    /// The key of a listing's item array (`port_chains` for `sfc/port_chains`).
    pub fn plural(&self) -> String {
        self.path
            .rsplit('/')
            .next()
            .unwrap_or(self.path)
            .replace('-', "_")
    }
}

/// One page of a listing.
#[derive(Debug)]
pub struct ListResult {
    /// The rendered items.
    pub items: Vec<Doc>,
    /// A `next` link is due.
    pub next: bool,
    /// A `previous` link is due.
    pub previous: bool,
}

/// Reads a string attribute.
pub(crate) fn s<'a>(doc: &'a Value, key: &str) -> &'a str {
    doc.get(key).and_then(Value::as_str).unwrap_or_default()
}

/// Sets `id`, project, timestamps and revision on a new document.
pub(crate) fn stamp_new(doc: &mut Doc, id: &str, project: &str) {
    let t = now();
    doc.insert("id".into(), json!(id));
    doc.insert("project_id".into(), json!(project));
    doc.insert("tenant_id".into(), json!(project));
    doc.insert("created_at".into(), json!(t));
    doc.insert("updated_at".into(), json!(t));
    doc.insert("revision_number".into(), json!(1));
}

/// The records of `kind` an index claim scope lists (keys: their ids), e.g. a port's
/// floating IPs or forwardings.
pub(crate) async fn indexed_records(
    tx: &mut Tx,
    scope: &str,
    kind: &str,
) -> ApiResult<Vec<Record>> {
    let ids = tx
        .claimed_keys(scope, "", None, i64::MAX)
        .await
        .map_err(db)?;
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let sel = neutrino_store::Selector {
        ids: Some(ids),
        ..Default::default()
    };
    tx.list(kind, &sel).await.map_err(db)
}

/// Deletes the records of `kind` an index claim scope lists, with every claim they own under
/// `owned` (a port's NDP proxies or Local IP associations, when the port goes).
pub(crate) async fn drop_indexed(
    tx: &mut Tx,
    scope: &str,
    kind: &str,
    owned: &str,
) -> ApiResult<()> {
    let ids = tx
        .claimed_keys(scope, "", None, i64::MAX)
        .await
        .map_err(db)?;
    for id in ids {
        tx.release_owned(owned, &id).await.map_err(db)?;
        tx.delete(kind, &id).await.map_err(db)?;
    }
    Ok(())
}

/// Chosen attributes of each record (null when absent), as a parent lists its children (a
/// floating IP's `port_forwardings`, a router's `conntrack_helpers`).
pub(crate) fn listed_attributes(records: &[Record], keys: &[&str]) -> Value {
    records
        .iter()
        .map(|r| {
            let doc: Doc = keys
                .iter()
                .map(|k| {
                    (
                        k.to_string(),
                        r.body.get(*k).cloned().unwrap_or(Value::Null),
                    )
                })
                .collect();
            Value::Object(doc)
        })
        .collect()
}

/// Records an update: newer `updated_at`, next revision.
pub(crate) fn bump(doc: &mut Value) {
    if let Some(obj) = doc.as_object_mut() {
        let rev = obj
            .get("revision_number")
            .and_then(Value::as_i64)
            .unwrap_or(0);
        obj.insert("revision_number".into(), json!(rev + 1));
        obj.insert("updated_at".into(), json!(now()));
    }
}

/// Locks a record's row and reloads it, so concurrent changes to one object serialise
/// (PostgreSQL row lock; SQLite runs one writer at a time anyway).
pub(crate) async fn relock(tx: &mut Tx, rec: &mut Record) -> ApiResult<()> {
    let (kind, id) = (rec.kind.clone(), rec.id.clone());
    *rec = lock_existing(tx, &kind, &id, || ApiError::not_found(&kind, &id)).await?;
    Ok(())
}

/// Locks the row of the `kind` record `id` and reads it, so that it cannot go while a new
/// record comes to depend on it; `missing` is the error when there is none.
pub(crate) async fn lock_existing(
    tx: &mut Tx,
    kind: &str,
    id: &str,
    missing: impl FnOnce() -> ApiError,
) -> ApiResult<Record> {
    tx.lock(kind, id).await.map_err(db)?;
    tx.get(kind, id).await.map_err(db)?.ok_or_else(missing)
}

/// Decides the owning project of a new resource from the body and the caller.
pub(crate) fn owner_project(ctx: &Context, body: &mut Doc, coll: &Collection) -> ApiResult<String> {
    let resource = coll.resource;
    let p = body.remove("project_id");
    let t = body.remove("tenant_id");
    let project = match (
        p.as_ref().and_then(Value::as_str),
        t.as_ref().and_then(Value::as_str),
    ) {
        (Some(a), Some(b)) if a != b => {
            return Err(ApiError::bad_request(
                "'project_id' and 'tenant_id' do not match",
            ))
        }
        (Some(a), _) | (None, Some(a)) => a.to_string(),
        (None, None) => ctx.project_id.clone(),
    };
    if project.is_empty() && coll.kind.allows_no_project() && ctx.is_admin() {
        return Ok(project);
    }
    if project.is_empty() {
        return Err(ApiError::bad_request(format!(
            "Failed to parse request. Required attribute 'project_id' not specified for {resource}"
        )));
    }
    if project != ctx.project_id && !ctx.is_admin() {
        return Err(coll
            .kind
            .foreign_project(&format!("create_{resource}"), &project));
    }
    Ok(project)
}

/// The caller must be at least a member to write.
pub(crate) fn require_member(ctx: &Context, action: &str) -> ApiResult<()> {
    if ctx.is_member() {
        Ok(())
    } else {
        Err(ApiError::forbidden(action))
    }
}

pub(super) fn check_if_match(doc: &Value, if_match: Option<i64>) -> ApiResult<()> {
    if let Some(want) = if_match {
        let have = doc
            .get("revision_number")
            .and_then(Value::as_i64)
            .unwrap_or(0);
        if have != want {
            return Err(ApiError::new(
                412,
                "RevisionNumberConstraintFailed",
                format!("Constrained to {want}, but current revision is {have}"),
            ));
        }
    }
    Ok(())
}

/// Validates a tag list: strings of at most 255 characters, unique, at most 50.
pub fn validate_tags(tags: &Value) -> ApiResult<Vec<String>> {
    let list = tags
        .as_array()
        .ok_or_else(|| ApiError::invalid_input("tags must be a list"))?;
    let mut out: Vec<String> = Vec::with_capacity(list.len());
    for t in list {
        let t = t
            .as_str()
            .filter(|t| !t.is_empty() && t.chars().count() <= 255 && !t.contains(','))
            .ok_or_else(|| ApiError::invalid_input(format!("'{t}' is not a valid tag")))?;
        if !out.iter().any(|o| o == t) {
            out.push(t.to_string());
        }
    }
    if out.len() > 50 {
        return Err(ApiError::bad_request(
            "The number of tags exceed the per-resource limit of 50",
        ));
    }
    Ok(out)
}
