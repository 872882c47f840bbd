//! The Neutron resources: one generic request flow (policy, validation, standard attributes,
//! tags, If-Match, quotas, list queries) and one module per resource for what is its own.

mod address_groups;
mod address_scopes;
mod auto_topology;
mod dhcp;
mod floatingips;
mod ip_availability;
mod l3_ha;
mod l3_scheduler;
mod networks;
mod ports;
mod quotas;
mod rbac;
mod routers;
mod routers_dvr;
mod secgroups;
mod sfc;
mod subnetpools;
mod subnets;
mod trunks;

use std::collections::HashMap;

use neutrino_store::{Record, Selector, Tx};
use neutrino_types::attrs::{self, Attr, Op};
use neutrino_types::query::{self, ListQuery};
use neutrino_types::resources as spec;
use neutrino_types::sfc as sfc_spec;
use neutrino_types::{ApiError, ApiResult};
use serde_json::{json, Map, Value};

use crate::{db, new_id, now, App, Context};

pub use quotas::QUOTA_RESOURCES;

/// A JSON object.
pub type Doc = Map<String, Value>;

/// A collection the API serves.
#[derive(Debug)]
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
    /// Filter names the spec does not carry but the resource understands.
    pub extra_filters: &'static [&'static str],
}

/// Every collection, in the order `GET /v2.0/` lists the core ones.
pub const COLLECTIONS: &[Collection] = &[
    Collection {
        path: "networks",
        resource: "network",
        spec: spec::NETWORK,
        taggable: true,
        revised: true,
        updatable: true,
        extra_filters: &[],
    },
    Collection {
        path: "subnets",
        resource: "subnet",
        spec: spec::SUBNET,
        taggable: true,
        revised: true,
        updatable: true,
        extra_filters: &["shared", "router:external"],
    },
    Collection {
        path: "ports",
        resource: "port",
        spec: spec::PORT,
        taggable: true,
        revised: true,
        updatable: true,
        extra_filters: &["ip_address", "subnet_id"],
    },
    Collection {
        path: "security-groups",
        resource: "security_group",
        spec: spec::SECURITY_GROUP,
        taggable: true,
        revised: true,
        updatable: true,
        extra_filters: &[],
    },
    Collection {
        path: "security-group-rules",
        resource: "security_group_rule",
        spec: spec::SECURITY_GROUP_RULE,
        taggable: false,
        revised: true,
        updatable: false,
        extra_filters: &[],
    },
    Collection {
        path: "routers",
        resource: "router",
        spec: spec::ROUTER,
        taggable: true,
        revised: true,
        updatable: true,
        extra_filters: &[],
    },
    Collection {
        path: "floatingips",
        resource: "floatingip",
        spec: spec::FLOATINGIP,
        taggable: true,
        revised: true,
        updatable: true,
        extra_filters: &[],
    },
    Collection {
        path: "subnetpools",
        resource: "subnetpool",
        spec: spec::SUBNETPOOL,
        taggable: true,
        revised: true,
        updatable: true,
        extra_filters: &[],
    },
    Collection {
        path: "address-scopes",
        resource: "address_scope",
        spec: spec::ADDRESS_SCOPE,
        taggable: false,
        revised: false,
        updatable: true,
        extra_filters: &[],
    },
    Collection {
        path: "default-security-group-rules",
        resource: "default_security_group_rule",
        spec: spec::DEFAULT_SECURITY_GROUP_RULE,
        taggable: false,
        revised: false,
        updatable: false,
        extra_filters: &[],
    },
    Collection {
        path: "address-groups",
        resource: "address_group",
        spec: spec::ADDRESS_GROUP,
        taggable: false,
        revised: true,
        updatable: true,
        extra_filters: &[],
    },
    Collection {
        path: "trunks",
        resource: "trunk",
        spec: spec::TRUNK,
        taggable: true,
        revised: true,
        updatable: true,
        extra_filters: &[],
    },
    Collection {
        path: "rbac-policies",
        resource: "rbac_policy",
        spec: spec::RBAC_POLICY,
        taggable: false,
        revised: false,
        updatable: true,
        extra_filters: &[],
    },
    Collection {
        path: "sfc/flow_classifiers",
        resource: "flow_classifier",
        spec: sfc_spec::FLOW_CLASSIFIER,
        taggable: false,
        revised: false,
        updatable: true,
        extra_filters: &[],
    },
    Collection {
        path: "sfc/port_pairs",
        resource: "port_pair",
        spec: sfc_spec::PORT_PAIR,
        taggable: false,
        revised: false,
        updatable: true,
        extra_filters: &[],
    },
    Collection {
        path: "sfc/port_pair_groups",
        resource: "port_pair_group",
        spec: sfc_spec::PORT_PAIR_GROUP,
        taggable: false,
        revised: false,
        updatable: true,
        extra_filters: &[],
    },
    Collection {
        path: "sfc/port_chains",
        resource: "port_chain",
        spec: sfc_spec::PORT_CHAIN,
        taggable: false,
        revised: false,
        updatable: true,
        extra_filters: &[],
    },
    Collection {
        path: "sfc/service_graphs",
        resource: "service_graph",
        spec: sfc_spec::SERVICE_GRAPH,
        taggable: false,
        revised: false,
        updatable: true,
        extra_filters: &[],
    },
];

impl Collection {
    /// Finds a collection by URL segment.
    pub fn by_path(path: &str) -> Option<&'static Collection> {
        COLLECTIONS.iter().find(|c| c.path == path)
    }

    /// Finds a collection by resource name.
    pub(crate) fn of(resource: &str) -> ApiResult<&'static Collection> {
        COLLECTIONS
            .iter()
            .find(|c| c.resource == resource)
            .ok_or_else(ApiError::internal)
    }

    fn quota_resource(&self) -> &'static str {
        self.resource
    }

    /// The key of a listing's item array (`port_chains` for `sfc/port_chains`).
    pub fn plural(&self) -> String {
        self.path
            .rsplit('/')
            .next()
            .unwrap_or(self.path)
            .replace('-', "_")
    }

    /// Whether a POST may carry several items (networking-sfc and RBAC refuse bulk).
    pub fn bulk(&self) -> bool {
        self.resource != "rbac_policy" && !sfc::is_sfc(self)
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

/// What rendering and visibility checks need beyond the record itself, loaded once per request.
#[derive(Default)]
pub(crate) struct View {
    /// RBAC policies by object id.
    rbac: HashMap<String, Vec<Doc>>,
    /// Networks by id (for subnet/port visibility).
    networks: HashMap<String, Record>,
    /// Security group rules by group id.
    rules: HashMap<String, Vec<Doc>>,
    /// Projects that have a default security group, mapped to its id.
    default_groups: HashMap<String, String>,
    /// Owner project of every security group.
    group_owners: HashMap<String, String>,
    /// Subnet ids of each network (rendered as the network's `subnets`).
    subnet_ids: HashMap<String, Vec<String>>,
    /// `trunk_details` of the trunk parents among the ports, by port id.
    trunk_details: HashMap<String, Value>,
    /// `port_details` of the ports floating IPs are associated with, by port id.
    port_details: HashMap<String, Value>,
}

impl View {
    /// Loads every RBAC policy: enough to decide the visibility of networks, security
    /// groups, subnet pools and address scopes. (Subnets, ports and rules need
    /// [`View::for_records`].)
    async fn load(tx: &mut Tx, _resource: &str) -> ApiResult<View> {
        let mut view = View::default();
        for p in tx
            .list("rbac_policy", &Selector::default())
            .await
            .map_err(db)?
        {
            let object = p.parent_id.clone().unwrap_or_default();
            if let Value::Object(doc) = p.body {
                view.rbac.entry(object).or_default().push(doc);
            }
        }
        Ok(view)
    }

    /// Loads only what rendering (not checking) `records` needs: nothing for resources whose
    /// rendering depends on no other row.
    pub(crate) async fn for_render(
        tx: &mut Tx,
        resource: &str,
        records: &[Record],
    ) -> ApiResult<View> {
        if resource == "port" {
            let mut view = View::default();
            let ids = records.iter().map(|r| r.id.clone()).collect();
            view.load_trunk_details(tx, Some(ids)).await?;
            return Ok(view);
        }
        if matches!(resource, "subnet" | "router") {
            return Ok(View::default());
        }
        if resource == "floatingip" {
            let mut view = View::default();
            view.load_port_details(tx, records).await?;
            return Ok(view);
        }
        View::for_records(tx, resource, records).await
    }

    /// Loads only what checking and rendering `records` needs: the RBAC policies of the
    /// objects concerned, the parent networks of subnets and ports, the rules and default
    /// groups of security groups. (Very wide listings fall back to loading a whole kind.)
    pub(crate) async fn for_records(
        tx: &mut Tx,
        resource: &str,
        records: &[Record],
    ) -> ApiResult<View> {
        const WIDE: usize = 256;
        let narrow = |mut ids: Vec<String>| -> Option<Vec<String>> {
            ids.sort();
            ids.dedup();
            (ids.len() <= WIDE).then_some(ids)
        };
        let own_ids = || records.iter().map(|r| r.id.clone()).collect::<Vec<_>>();
        let parent_ids = || {
            records
                .iter()
                .filter_map(|r| r.parent_id.clone())
                .collect::<Vec<_>>()
        };
        let mut view = View::default();
        if records.is_empty() {
            return Ok(view);
        }
        let rbac_objects = match resource {
            "network" | "security_group" | "subnetpool" | "address_scope" | "address_group" => {
                Some(own_ids())
            }
            "subnet" | "port" | "security_group_rule" => Some(parent_ids()),
            _ => None,
        };
        if let Some(objects) = rbac_objects {
            let sel = Selector {
                parent_ids: narrow(objects),
                ..Default::default()
            };
            for p in tx.list("rbac_policy", &sel).await.map_err(db)? {
                let object = p.parent_id.clone().unwrap_or_default();
                if let Value::Object(doc) = p.body {
                    view.rbac.entry(object).or_default().push(doc);
                }
            }
        }
        if resource == "network" {
            let ids = narrow(own_ids());
            for (network, subnet) in tx.child_ids("subnet", ids.as_deref()).await.map_err(db)? {
                view.subnet_ids.entry(network).or_default().push(subnet);
            }
        }
        if resource == "port" {
            view.load_trunk_details(tx, narrow(own_ids())).await?;
        }
        if resource == "floatingip" {
            view.load_port_details(tx, records).await?;
        }
        if matches!(resource, "subnet" | "port") {
            let sel = Selector {
                ids: narrow(parent_ids()),
                ..Default::default()
            };
            for n in tx.list("network", &sel).await.map_err(db)? {
                view.networks.insert(n.id.clone(), n);
            }
        }
        let mut owners: Vec<String> = Vec::new();
        if resource == "security_group" {
            let sel = Selector {
                parent_ids: narrow(own_ids()),
                ..Default::default()
            };
            for r in tx.list("security_group_rule", &sel).await.map_err(db)? {
                if let Value::Object(doc) = r.body {
                    view.rules
                        .entry(r.parent_id.unwrap_or_default())
                        .or_default()
                        .push(doc);
                }
            }
            for sg in records {
                view.group_owners
                    .insert(sg.id.clone(), sg.project_id.clone());
                owners.push(sg.project_id.clone());
            }
        }
        if resource == "security_group_rule" {
            let sel = Selector {
                ids: narrow(parent_ids()),
                ..Default::default()
            };
            for sg in tx.list("security_group", &sel).await.map_err(db)? {
                owners.push(sg.project_id.clone());
                view.group_owners.insert(sg.id, sg.project_id);
            }
        }
        owners.sort();
        owners.dedup();
        for project in owners {
            if let Some(id) = tx.claim_owner("default-sg", &project).await.map_err(db)? {
                view.default_groups.insert(project, id);
            }
        }
        Ok(view)
    }

    /// Whether an RBAC policy with `action` on `object` grants `project`.
    pub(crate) fn granted(&self, object: &str, action: &str, project: &str) -> bool {
        self.rbac.get(object).is_some_and(|ps| {
            ps.iter().any(|p| {
                p.get("action").and_then(Value::as_str) == Some(action)
                    && matches!(p.get("target_tenant").and_then(Value::as_str), Some(t) if t == "*" || t == project)
            })
        })
    }

    pub(crate) fn wildcard(&self, object: &str, action: &str) -> bool {
        self.granted(object, action, "\u{0}none")
    }

    /// Whether a network is external: `router:external` or an `access_as_external` policy.
    pub(crate) fn is_external(&self, net: &Record) -> bool {
        net.body["router:external"] == true
            || self.rbac.get(&net.id).is_some_and(|ps| {
                ps.iter()
                    .any(|p| p.get("action").and_then(Value::as_str) == Some("access_as_external"))
            })
    }

    /// Whether the caller can read a network.
    pub(crate) fn network_visible(&self, ctx: &Context, net: &Record) -> bool {
        ctx.owns(&net.project_id)
            || self.granted(&net.id, "access_as_shared", &ctx.project_id)
            || self.granted(&net.id, "access_as_external", &ctx.project_id)
    }
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
    tx.lock(&rec.kind, &rec.id).await.map_err(db)?;
    match tx.get(&rec.kind, &rec.id).await.map_err(db)? {
        Some(fresh) => {
            *rec = fresh;
            Ok(())
        }
        None => Err(ApiError::not_found(&rec.kind, &rec.id)),
    }
}

/// Decides the owning project of a new resource from the body and the caller.
pub(crate) fn owner_project(ctx: &Context, body: &mut Doc, resource: &str) -> ApiResult<String> {
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
    if project.is_empty() {
        return Err(ApiError::bad_request(format!(
            "Failed to parse request. Required attribute 'project_id' not specified for {resource}"
        )));
    }
    if project != ctx.project_id && !ctx.is_admin() {
        if sfc::KINDS.contains(&resource) {
            return Err(ApiError::bad_request(
                "Specifying 'project_id' or 'tenant_id' other than the authenticated project in request requires admin privileges",
            ));
        }
        if matches!(resource, "port" | "subnet") {
            return Err(ApiError::bad_request(format!(
                "Tenant {project} not allowed to create {resource} on this network"
            )));
        }
        return Err(ApiError::forbidden(&format!("create_{resource}")));
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

fn check_if_match(doc: &Value, if_match: Option<i64>) -> ApiResult<()> {
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

pub(super) fn strip_hidden(coll: &Collection, ctx: &Context, mut doc: Doc) -> Doc {
    if !ctx.is_admin() {
        for a in coll.spec.iter().filter(|a| a.admin_only) {
            doc.remove(a.name);
        }
    }
    doc
}

impl App {
    async fn visible(&self, view: &View, ctx: &Context, coll: &Collection, rec: &Record) -> bool {
        if ctx.is_admin() || rec.project_id == ctx.project_id {
            return true;
        }
        match coll.resource {
            "network" => view.network_visible(ctx, rec),
            "subnet" | "port" => {
                let net = rec.parent_id.as_deref().and_then(|n| view.networks.get(n));
                match (coll.resource, net) {
                    (_, None) => false,
                    ("subnet", Some(net)) => {
                        net.project_id == ctx.project_id
                            || view.granted(&net.id, "access_as_shared", &ctx.project_id)
                    }
                    (_, Some(net)) => net.project_id == ctx.project_id,
                }
            }
            "security_group" => view.granted(&rec.id, "access_as_shared", &ctx.project_id),
            "security_group_rule" => {
                let group = rec.parent_id.as_deref().unwrap_or_default();
                view.group_owners.get(group) == Some(&ctx.project_id)
                    || view.granted(group, "access_as_shared", &ctx.project_id)
            }
            "subnetpool" => view.granted(&rec.id, "access_as_shared", &ctx.project_id),
            "default_security_group_rule" => true,
            "address_scope" | "address_group" => {
                view.granted(&rec.id, "access_as_shared", &ctx.project_id)
            }
            _ => false,
        }
    }

    fn render(&self, view: &View, ctx: &Context, coll: &Collection, rec: &Record) -> Doc {
        let doc = rec.body.as_object().cloned().unwrap_or_default();
        self.render_doc(view, ctx, coll, rec, doc)
    }

    /// Renders `doc` (the body of `rec`, taken out of it) for the caller.
    fn render_doc(
        &self,
        view: &View,
        ctx: &Context,
        coll: &Collection,
        rec: &Record,
        mut doc: Doc,
    ) -> Doc {
        match coll.resource {
            "network" => {
                let shared = view.granted(&rec.id, "access_as_shared", &ctx.project_id);
                doc.insert("shared".into(), json!(shared));
                let subnets = view.subnet_ids.get(&rec.id).cloned().unwrap_or_default();
                doc.insert("subnets".into(), json!(subnets));
                if doc.get("router:external") == Some(&Value::Bool(true)) {
                    let is_default = doc.get("is_default") == Some(&Value::Bool(true));
                    doc.insert("is_default".into(), json!(is_default));
                } else {
                    doc.remove("is_default");
                }
            }
            "security_group" => {
                let rules = view.rules.get(&rec.id).cloned().unwrap_or_default();
                let default = view.default_groups.get(&rec.project_id) == Some(&rec.id);
                let rules: Vec<Value> = rules
                    .into_iter()
                    .map(|mut r| {
                        r.insert("belongs_to_default_sg".into(), json!(default));
                        Value::Object(r)
                    })
                    .collect();
                doc.insert("security_group_rules".into(), json!(rules));
                doc.insert(
                    "shared".into(),
                    json!(view.wildcard(&rec.id, "access_as_shared")),
                );
            }
            "subnetpool" | "address_scope" => {
                let shared = view.granted(&rec.id, "access_as_shared", &ctx.project_id);
                doc.insert("shared".into(), json!(shared));
            }
            // Pairs created before the health attributes existed have none stored.
            "port_pair" => neutrino_types::sfc_status::fill_health(&mut doc),
            "port" => {
                if let Some(details) = view.trunk_details.get(&rec.id) {
                    doc.insert("trunk_details".into(), details.clone());
                }
            }
            "floatingip" => {
                let port = doc
                    .get("port_id")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                let details = view.port_details.get(port).cloned().unwrap_or(Value::Null);
                doc.insert("port_details".into(), details);
            }
            "security_group_rule" => {
                let sg = rec.parent_id.clone().unwrap_or_default();
                let default = view.default_groups.get(&rec.project_id) == Some(&sg)
                    || view.default_groups.values().any(|v| *v == sg);
                doc.insert("belongs_to_default_sg".into(), json!(default));
            }
            _ => {}
        }
        strip_hidden(coll, ctx, doc)
    }

    /// `GET /v2.0/{collection}`.
    pub async fn list(
        &self,
        ctx: &Context,
        coll: &Collection,
        pairs: &[(String, String)],
    ) -> ApiResult<ListResult> {
        let sfc_pairs;
        let pairs = if sfc::is_sfc(coll) {
            sfc_pairs = sfc::known_query(coll, pairs);
            &sfc_pairs
        } else {
            pairs
        };
        let mut q = query::parse(pairs, coll.spec, coll.extra_filters)?;
        if !ctx.is_admin() {
            for a in coll.spec.iter().filter(|a| a.admin_only) {
                q.filters.retain(|(k, _)| k != a.name);
            }
        }
        if coll.resource == "security_group" {
            // Like Neutron: listing a project's groups creates its default group.
            let mut projects = vec![ctx.project_id.clone()];
            if ctx.is_admin() {
                if let Some(ps) = q.filter("project_id") {
                    projects.extend(ps.iter().filter_map(|p| p.as_str().map(str::to_string)));
                }
            }
            if ctx.is_member() {
                for p in projects {
                    self.ensure_default_group_committed(&p).await?;
                }
            }
        }
        let mut tx = self.read().await?;
        let mut sel = Selector::default();
        let strings = |vals: &[Value]| -> Vec<String> {
            vals.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        };
        if let Some(ids) = q.filter("id") {
            sel.ids = Some(strings(ids));
        }
        if let Some(p) = q.filter("project_id") {
            sel.project_ids = Some(strings(p));
        }
        let parent_key = match coll.resource {
            "subnet" | "port" => Some("network_id"),
            "security_group_rule" => Some("security_group_id"),
            _ => None,
        };
        if let Some(parents) = parent_key.and_then(|k| q.filter(k)) {
            sel.parent_ids = Some(strings(parents));
        }
        let records = tx.list(coll.resource, &sel).await.map_err(db)?;
        let view = View::for_records(&mut tx, coll.resource, &records).await?;
        drop(tx);
        let fixed_ip_filters = ports::fixed_ip_filters(&mut q);
        // Subnets have no visible `shared`, but filter on their network's.
        let mut network_flag = |name: &str| match coll.resource {
            "subnet" => q.take_filter(name).map(|v| {
                v.iter()
                    .any(|x| neutrino_types::attrs::to_bool(x) == Some(true))
            }),
            _ => None,
        };
        let subnet_shared = network_flag("shared");
        let subnet_external = network_flag("router:external");
        let mut items = Vec::with_capacity(records.len());
        for mut record in records {
            let rec = &record;
            if !self.visible(&view, ctx, coll, rec).await {
                continue;
            }
            if !fixed_ip_filters.is_empty()
                && !ports::matches_fixed_ips(&rec.body, &fixed_ip_filters)
            {
                continue;
            }
            let net = rec.parent_id.as_deref().unwrap_or_default();
            if let Some(want) = subnet_shared {
                if view.granted(net, "access_as_shared", &ctx.project_id) != want {
                    continue;
                }
            }
            if let Some(want) = subnet_external {
                let external = view
                    .networks
                    .get(net)
                    .is_some_and(|n| n.body["router:external"] == true);
                if external != want {
                    continue;
                }
            }
            let body = match std::mem::take(&mut record.body) {
                Value::Object(doc) => doc,
                _ => Doc::new(),
            };
            let doc = self.render_doc(&view, ctx, coll, &record, body);
            if query::matches(&doc, &q) {
                items.push(doc);
            }
        }
        let page = query::page(items, &q, coll.resource)?;
        let fields = effective_fields(&q);
        Ok(ListResult {
            items: page
                .items
                .into_iter()
                .map(|d| query::project(d, &fields))
                .collect(),
            next: page.next,
            previous: page.previous,
        })
    }

    /// `GET /v2.0/{collection}/{id}`.
    pub async fn show(
        &self,
        ctx: &Context,
        coll: &Collection,
        id: &str,
        fields: &[String],
    ) -> ApiResult<Doc> {
        let mut tx = self.read().await?;
        let rec = tx.get(coll.resource, id).await.map_err(db)?;
        let view = View::for_records(&mut tx, coll.resource, rec.as_slice()).await?;
        drop(tx);
        match rec {
            Some(rec) if self.visible(&view, ctx, coll, &rec).await => {
                Ok(query::project(self.render(&view, ctx, coll, &rec), fields))
            }
            _ => Err(ApiError::not_found(coll.resource, id)),
        }
    }

    /// Creates one validated resource inside `tx`: quota, standard attributes, the
    /// resource's own rules, tags; returns the stored record.
    pub(crate) async fn insert_new(
        &self,
        tx: &mut Tx,
        ctx: &Context,
        coll: &Collection,
        body: Doc,
        project: String,
    ) -> ApiResult<Record> {
        quotas::check(tx, &project, coll.quota_resource(), 1).await?;
        self.insert_record(tx, ctx, coll, body, project, new_id())
            .await
    }

    /// [`App::insert_new`] without the quota check and with a chosen id (resources the
    /// server creates for itself, such as HA networks).
    pub(crate) async fn insert_record(
        &self,
        tx: &mut Tx,
        ctx: &Context,
        coll: &Collection,
        mut body: Doc,
        project: String,
        id: String,
    ) -> ApiResult<Record> {
        stamp_new(&mut body, &id, &project);
        let parent = match coll.resource {
            "network" => self.create_network(tx, ctx, &mut body).await?,
            "subnet" => self.create_subnet(tx, ctx, &mut body).await?,
            "port" => self.create_port(tx, ctx, &mut body).await?,
            "security_group" => self.create_security_group(tx, ctx, &mut body).await?,
            "security_group_rule" => self.create_rule(tx, ctx, &mut body).await?,
            "rbac_policy" => self.create_rbac(tx, ctx, &mut body).await?,
            "router" => self.create_router(tx, ctx, &mut body).await?,
            "floatingip" => self.create_floatingip(tx, ctx, &mut body).await?,
            "subnetpool" => self.create_subnetpool(tx, ctx, &mut body).await?,
            "address_scope" => self.create_address_scope(tx, ctx, &mut body).await?,
            "address_group" => self.create_address_group(tx, ctx, &mut body).await?,
            "trunk" => self.create_trunk(tx, ctx, &mut body).await?,
            "default_security_group_rule" => self.create_rule_template(tx, ctx, &mut body).await?,
            _ if sfc::is_sfc(coll) => self.create_sfc(tx, ctx, coll.resource, &mut body).await?,
            _ => return Err(ApiError::no_such_url()),
        };
        if coll.taggable && !body.contains_key("tags") {
            body.insert("tags".into(), json!([]));
        }
        if let Some(tags) = body.get("tags") {
            let tags = validate_tags(tags)?;
            body.insert("tags".into(), json!(tags));
        }
        if !coll.revised {
            for k in ["created_at", "updated_at", "revision_number"] {
                body.remove(k);
            }
        }
        let record = Record {
            kind: coll.resource.to_string(),
            id: id.clone(),
            project_id: project,
            parent_id: parent,
            body: Value::Object(body),
        };
        tx.insert(&record).await.map_err(db)?;
        if coll.resource == "subnet" {
            let network = record.parent_id.clone().unwrap_or_default();
            self.sync_dhcp_port(tx, &network).await?;
        }
        if coll.resource == "security_group" {
            self.add_default_egress_rules(tx, &id).await?;
        }
        Ok(record)
    }

    /// `POST /v2.0/{collection}` with one or several (bulk, all or nothing) bodies.
    pub async fn create(
        &self,
        ctx: &Context,
        coll: &Collection,
        bodies: Vec<Doc>,
    ) -> ApiResult<Vec<Doc>> {
        require_member(ctx, &format!("create_{}", coll.resource))?;
        // Checks that need no database run before the write transaction starts.
        let mut checked = Vec::with_capacity(bodies.len());
        for body in bodies {
            let mut body = attrs::validate(coll.spec, &body, Op::Create)?;
            let project = owner_project(ctx, &mut body, coll.resource)?;
            checked.push((body, project));
        }
        let mut tx = self.write().await?;
        if matches!(coll.resource, "network" | "security_group") {
            // Like Neutron: a project's first network or group brings its default group.
            self.ensure_default_group(&mut tx, &ctx.project_id).await?;
        }
        let mut created = Vec::with_capacity(checked.len());
        for (body, project) in checked {
            created.push(self.insert_new(&mut tx, ctx, coll, body, project).await?);
        }
        // Resource code may have written more into the row (e.g. RBAC side effects).
        let records = if matches!(coll.resource, "rbac_policy" | "network") {
            let ids = created.iter().map(|r| r.id.clone()).collect();
            tx.list(
                coll.resource,
                &Selector {
                    ids: Some(ids),
                    ..Default::default()
                },
            )
            .await
            .map_err(db)?
        } else {
            created
        };
        // A new port is no trunk's parent yet: nothing more to load for it.
        let view = if coll.resource == "port" {
            View::default()
        } else {
            View::for_render(&mut tx, coll.resource, &records).await?
        };
        let out = records
            .iter()
            .map(|rec| self.render(&view, ctx, coll, rec))
            .collect();
        tx.commit().await.map_err(db)?;
        Ok(out)
    }

    /// Loads a record the caller may write: 404 if invisible, 403 if only readable.
    async fn writable(
        &self,
        tx: &mut Tx,
        ctx: &Context,
        coll: &Collection,
        id: &str,
        action: &str,
    ) -> ApiResult<(Record, View)> {
        let rec = tx
            .get(coll.resource, id)
            .await
            .map_err(db)?
            .filter(|r| r.kind == coll.resource);
        let Some(rec) = rec else {
            return Err(ApiError::not_found(coll.resource, id));
        };
        let view = View::for_records(tx, coll.resource, std::slice::from_ref(&rec)).await?;
        if !self.visible(&view, ctx, coll, &rec).await {
            return Err(ApiError::not_found(coll.resource, id));
        }
        // The owner of a network may also delete other projects' ports on it.
        let network_owner = coll.resource == "port"
            && action == "delete"
            && rec
                .parent_id
                .as_deref()
                .and_then(|n| view.networks.get(n))
                .is_some_and(|n| n.project_id == ctx.project_id);
        // Like Neutron, a shared address group is not revealed to those who may not change it.
        if coll.resource == "address_group" && !ctx.owns(&rec.project_id) {
            return Err(ApiError::not_found(coll.resource, id));
        }
        let owner_ok = ctx.is_admin()
            || ((rec.project_id == ctx.project_id || network_owner) && ctx.is_member());
        if !owner_ok {
            return Err(ApiError::forbidden(&format!("{action}_{}", coll.resource)));
        }
        Ok((rec, view))
    }

    /// `PUT /v2.0/{collection}/{id}`.
    pub async fn update(
        &self,
        ctx: &Context,
        coll: &Collection,
        id: &str,
        body: Doc,
        if_match: Option<i64>,
    ) -> ApiResult<Doc> {
        if !coll.updatable {
            return Err(ApiError::new(
                405,
                "HTTPMethodNotAllowed",
                "The method is not allowed for the requested resource.",
            ));
        }
        let changes = attrs::validate(coll.spec, &body, Op::Update)?;
        if changes.contains_key("project_id") || changes.contains_key("tenant_id") {
            return Err(ApiError::bad_request(
                "Cannot update read-only attribute project_id",
            ));
        }
        let mut tx = self.write().await?;
        let (mut rec, _) = self.writable(&mut tx, ctx, coll, id, "update").await?;
        check_if_match(&rec.body, if_match)?;
        match coll.resource {
            "network" => self.update_network(&mut tx, ctx, &mut rec, changes).await?,
            "subnet" => self.update_subnet(&mut tx, ctx, &mut rec, changes).await?,
            "port" => self.update_port(&mut tx, ctx, &mut rec, changes).await?,
            "security_group" => {
                self.update_security_group(&mut tx, ctx, &mut rec, changes)
                    .await?
            }
            "rbac_policy" => self.update_rbac(&mut tx, ctx, &mut rec, changes).await?,
            "router" => self.update_router(&mut tx, ctx, &mut rec, changes).await?,
            "floatingip" => {
                self.update_floatingip(&mut tx, ctx, &mut rec, changes)
                    .await?
            }
            "subnetpool" => {
                self.update_subnetpool(&mut tx, ctx, &mut rec, changes)
                    .await?
            }
            "address_scope" => {
                self.update_address_scope(&mut tx, ctx, &mut rec, changes)
                    .await?
            }
            "address_group" | "trunk" => {
                for (k, v) in changes {
                    rec.body[k.as_str()] = v;
                }
            }
            _ if sfc::is_sfc(coll) => self.update_sfc(&mut tx, ctx, &mut rec, changes).await?,
            _ => return Err(ApiError::no_such_url()),
        }
        if coll.revised {
            bump(&mut rec.body);
        }
        tx.update(coll.resource, id, &rec.body).await.map_err(db)?;
        if coll.resource == "subnet" {
            self.sync_dhcp_port(&mut tx, rec.parent_id.as_deref().unwrap_or_default())
                .await?;
        }
        let view = View::for_render(&mut tx, coll.resource, std::slice::from_ref(&rec)).await?;
        let out = self.render(&view, ctx, coll, &rec);
        tx.commit().await.map_err(db)?;
        Ok(out)
    }

    /// `DELETE /v2.0/{collection}/{id}`.
    pub async fn delete(
        &self,
        ctx: &Context,
        coll: &Collection,
        id: &str,
        if_match: Option<i64>,
    ) -> ApiResult<()> {
        let mut tx = self.write().await?;
        let (rec, view) = self.writable(&mut tx, ctx, coll, id, "delete").await?;
        check_if_match(&rec.body, if_match)?;
        self.remove(&mut tx, ctx, coll, &rec, &view).await?;
        tx.commit().await.map_err(db)?;
        Ok(())
    }

    /// Deletes a record the caller may write, with its resource's rules, inside `tx`.
    pub(crate) async fn remove(
        &self,
        tx: &mut Tx,
        ctx: &Context,
        coll: &Collection,
        rec: &Record,
        view: &View,
    ) -> ApiResult<()> {
        match coll.resource {
            "network" => self.delete_network(tx, ctx, rec).await?,
            "subnet" => self.delete_subnet(tx, ctx, rec).await?,
            "port" => self.delete_port(tx, ctx, rec).await?,
            "security_group" => self.delete_security_group(tx, ctx, rec, view).await?,
            "security_group_rule" => self.delete_rule(tx, ctx, rec).await?,
            "rbac_policy" => self.delete_rbac(tx, ctx, rec).await?,
            "router" => self.delete_router(tx, ctx, rec).await?,
            "floatingip" => self.delete_floatingip(tx, ctx, rec).await?,
            "subnetpool" => self.delete_subnetpool(tx, ctx, rec).await?,
            "address_scope" => self.delete_address_scope(tx, ctx, rec).await?,
            "address_group" => self.delete_address_group(tx, rec).await?,
            "trunk" => self.delete_trunk(tx, rec).await?,
            "default_security_group_rule" if ctx.is_admin() => {}
            _ if sfc::is_sfc(coll) => self.delete_sfc(tx, rec).await?,
            _ => return Err(ApiError::no_such_url()),
        }
        tx.delete(coll.resource, &rec.id).await.map_err(db)?;
        if coll.resource == "subnet"
            || (coll.resource == "port" && s(&rec.body, "device_owner") == dhcp::DHCP_OWNER)
        {
            self.sync_dhcp_port(tx, rec.parent_id.as_deref().unwrap_or_default())
                .await?;
        }
        Ok(())
    }

    /// `PUT /v2.0/{collection}/{id}/{action}`: router interfaces and extra routes, subnet
    /// pool prefix operations. Returns the action's own body.
    pub async fn action(
        &self,
        ctx: &Context,
        coll: &Collection,
        id: &str,
        action: &str,
        body: Value,
    ) -> ApiResult<Value> {
        let known = matches!(
            (coll.resource, action),
            (
                "router",
                "add_router_interface"
                    | "remove_router_interface"
                    | "add_extraroutes"
                    | "remove_extraroutes"
            ) | (
                "subnetpool",
                "add_prefixes" | "remove_prefixes" | "onboard_network_subnets"
            ) | ("address_group", "add_addresses" | "remove_addresses")
                | ("trunk", "add_subports" | "remove_subports")
        );
        if !known {
            return Err(ApiError::no_such_url());
        }
        let mut tx = self.write().await?;
        let (mut rec, _) = self.writable(&mut tx, ctx, coll, id, action).await?;
        let out = match coll.resource {
            "router" => {
                self.router_action(&mut tx, ctx, &mut rec, action, body)
                    .await?
            }
            "address_group" => {
                let doc = self
                    .address_group_action(&mut tx, &mut rec, action, body)
                    .await?;
                let view =
                    View::for_render(&mut tx, coll.resource, std::slice::from_ref(&rec)).await?;
                let out = self.render_doc(&view, ctx, coll, &rec, doc);
                json!({ "address_group": out })
            }
            "trunk" => {
                self.trunk_action(&mut tx, ctx, &mut rec, action, body)
                    .await?;
                Value::Object(self.render(&View::default(), ctx, coll, &rec))
            }
            _ => {
                self.subnetpool_action(&mut tx, ctx, &mut rec, action, body)
                    .await?
            }
        };
        tx.commit().await.map_err(db)?;
        Ok(out)
    }

    /// `GET /v2.0/{collection}/{id}/{action}`: a trunk's `get_subports`, a port chain's
    /// `statistics` (Neutrino extension).
    pub async fn get_action(
        &self,
        ctx: &Context,
        coll: &Collection,
        id: &str,
        action: &str,
    ) -> ApiResult<Value> {
        if (coll.resource, action) == ("port_chain", "statistics") {
            return self.port_chain_statistics(ctx, id).await;
        }
        if (coll.resource, action) != ("trunk", "get_subports") {
            return Err(ApiError::no_such_url());
        }
        let trunk = self.show(ctx, coll, id, &[]).await?;
        Ok(json!({"sub_ports": trunk.get("sub_ports").cloned().unwrap_or(json!([]))}))
    }

    /// `GET /v2.0/{collection}/{id}/tags`.
    pub async fn tags(&self, ctx: &Context, coll: &Collection, id: &str) -> ApiResult<Vec<String>> {
        let doc = self.show(ctx, coll, id, &[]).await?;
        Ok(doc
            .get("tags")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|t| t.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default())
    }

    /// Changes the tags of a resource: `edit` gets the current list and returns the new one.
    pub async fn edit_tags<F>(
        &self,
        ctx: &Context,
        coll: &Collection,
        id: &str,
        edit: F,
    ) -> ApiResult<Vec<String>>
    where
        F: FnOnce(Vec<String>) -> ApiResult<Vec<String>>,
    {
        let mut tx = self.write().await?;
        let (mut rec, _) = self.writable(&mut tx, ctx, coll, id, "update").await?;
        let current: Vec<String> = rec
            .body
            .get("tags")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|t| t.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        let new = edit(current.clone())?;
        let new = validate_tags(&json!(new))?;
        if new != current {
            rec.body["tags"] = json!(new);
            bump(&mut rec.body);
            tx.update(coll.resource, id, &rec.body).await.map_err(db)?;
            tx.commit().await.map_err(db)?;
        }
        Ok(new)
    }
}

/// `fields` plus nothing else; an empty list means all.
fn effective_fields(q: &ListQuery) -> Vec<String> {
    q.fields.clone()
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
