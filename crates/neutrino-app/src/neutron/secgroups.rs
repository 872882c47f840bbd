//! Security groups and rules: the per-project `default` group (created on first use, once,
//! even under concurrency: a `default-sg` claim), default egress rules, rule validation and
//! duplicate detection with Neutron's exception names, in-use checks through `sgport:` claims.

use ipnet::IpNet;
use neutrino_store::{Record, Selector, Tx};
use neutrino_types::{ApiError, ApiResult};
use serde_json::{json, Value};

use async_trait::async_trait;
use neutrino_types::query::ListQuery;
use neutrino_types::resources as spec;

use super::authz::Extras;
use super::kind::{apply_changes, Kind};
use super::view::{narrow, own_ids, parent_ids, Need};
use super::{bump, s, stamp_new, Collection, Doc, View};
use crate::{db, new_id, App, Context};

/// `/v2.0/security-groups`.
pub(super) static GROUPS: Collection = Collection::new(
    "security-groups",
    "security_group",
    spec::SECURITY_GROUP,
    &Groups,
)
.shared_through_rbac();

/// `/v2.0/security-group-rules`.
pub(super) static RULES: Collection = Collection::new(
    "security-group-rules",
    "security_group_rule",
    spec::SECURITY_GROUP_RULE,
    &Rules,
)
.untagged()
.immutable()
.parent("security_group_id");

/// `/v2.0/default-security-group-rules`: the rules every new group starts with.
pub(super) static RULE_TEMPLATES: Collection = Collection::new(
    "default-security-group-rules",
    "default_security_group_rule",
    spec::DEFAULT_SECURITY_GROUP_RULE,
    &RuleTemplates,
)
.untagged()
.unrevised()
.immutable();

/// Security groups, with their rules rendered inside.
struct Groups;

#[async_trait]
impl Kind for Groups {
    async fn load_view(
        &self,
        tx: &mut Tx,
        records: &[Record],
        view: &mut View,
        _need: Need,
    ) -> ApiResult<()> {
        view.load_rules(tx, narrow(own_ids(records))).await?;
        for sg in records {
            view.group_owners
                .insert(sg.id.clone(), sg.project_id.clone());
        }
        let owners = records.iter().map(|sg| sg.project_id.clone()).collect();
        view.load_default_groups(tx, owners).await
    }

    fn render(&self, view: &View, _ctx: &Context, rec: &Record, doc: &mut Doc) {
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

    async fn before_list(&self, app: &App, ctx: &Context, q: &ListQuery) -> ApiResult<()> {
        // Like Neutron: listing a project's groups creates its default group.
        let mut projects = vec![ctx.project_id.clone()];
        if ctx.is_admin() {
            if let Some(ps) = q.filter("project_id") {
                projects.extend(ps.iter().filter_map(|p| p.as_str().map(str::to_string)));
            }
        }
        if ctx.is_member() {
            for p in projects {
                app.ensure_default_group_committed(&p).await?;
            }
        }
        Ok(())
    }

    async fn before_create(&self, app: &App, tx: &mut Tx, ctx: &Context) -> ApiResult<()> {
        app.ensure_default_group(tx, &ctx.project_id).await?;
        Ok(())
    }

    async fn create(
        &self,
        app: &App,
        tx: &mut Tx,
        ctx: &Context,
        body: &mut Doc,
    ) -> ApiResult<Option<String>> {
        app.create_security_group(tx, ctx, body).await
    }

    async fn after_create(
        &self,
        app: &App,
        tx: &mut Tx,
        _ctx: &Context,
        rec: &Record,
    ) -> ApiResult<()> {
        app.add_default_egress_rules(tx, &rec.id).await
    }

    async fn update(
        &self,
        app: &App,
        tx: &mut Tx,
        ctx: &Context,
        rec: &mut Record,
        changes: Doc,
    ) -> ApiResult<()> {
        app.update_security_group(tx, ctx, rec, changes).await
    }

    async fn delete(
        &self,
        app: &App,
        tx: &mut Tx,
        ctx: &Context,
        rec: &Record,
        view: &View,
    ) -> ApiResult<()> {
        app.delete_security_group(tx, ctx, rec, view).await
    }
}

/// Security group rules: children of groups, visible with their group.
struct Rules;

#[async_trait]
impl Kind for Rules {
    async fn load_view(
        &self,
        tx: &mut Tx,
        records: &[Record],
        view: &mut View,
        _need: Need,
    ) -> ApiResult<()> {
        view.load_rbac(tx, narrow(parent_ids(records))).await?;
        view.load_group_owners(tx, narrow(parent_ids(records)))
            .await
    }

    fn visible_to_others(&self, view: &View, ctx: &Context, rec: &Record) -> bool {
        let group = rec.parent_id.as_deref().unwrap_or_default();
        view.group_owners.get(group) == Some(&ctx.project_id)
            || view.granted(group, "access_as_shared", &ctx.project_id)
    }

    fn policy_extras(&self, view: &View, _ctx: &Context, rec: &Record) -> Extras {
        let group = rec.parent_id.as_deref().unwrap_or_default();
        let Some(owner) = view.group_owners.get(group) else {
            return Vec::new();
        };
        vec![
            ("security_group:tenant_id", Value::from(owner.as_str())),
            ("security_group:project_id", Value::from(owner.as_str())),
        ]
    }

    fn render(&self, view: &View, _ctx: &Context, rec: &Record, doc: &mut Doc) {
        let sg = rec.parent_id.clone().unwrap_or_default();
        let default = view.default_groups.get(&rec.project_id) == Some(&sg)
            || view.default_groups.values().any(|v| *v == sg);
        doc.insert("belongs_to_default_sg".into(), json!(default));
    }

    async fn create(
        &self,
        app: &App,
        tx: &mut Tx,
        ctx: &Context,
        body: &mut Doc,
    ) -> ApiResult<Option<String>> {
        app.create_rule(tx, ctx, body).await
    }

    async fn delete(
        &self,
        app: &App,
        tx: &mut Tx,
        ctx: &Context,
        rec: &Record,
        _view: &View,
    ) -> ApiResult<()> {
        app.delete_rule(tx, ctx, rec).await
    }
}

/// Default security group rules: readable by all, written by admins.
struct RuleTemplates;

#[async_trait]
impl Kind for RuleTemplates {
    fn visible_to_others(&self, _view: &View, _ctx: &Context, _rec: &Record) -> bool {
        true
    }

    async fn create(
        &self,
        app: &App,
        tx: &mut Tx,
        ctx: &Context,
        body: &mut Doc,
    ) -> ApiResult<Option<String>> {
        app.create_rule_template(tx, ctx, body).await
    }

    async fn delete(
        &self,
        _app: &App,
        _tx: &mut Tx,
        ctx: &Context,
        _rec: &Record,
        _view: &View,
    ) -> ApiResult<()> {
        if ctx.is_admin() {
            Ok(())
        } else {
            Err(ApiError::no_such_url())
        }
    }
}

const PROTOCOLS: &[(&str, u8)] = &[
    ("ah", 51),
    ("dccp", 33),
    ("egp", 8),
    ("esp", 50),
    ("gre", 47),
    ("hopopt", 0),
    ("icmp", 1),
    ("igmp", 2),
    ("ip", 0),
    ("ipip", 4),
    ("ipv6-encap", 41),
    ("ipv6-frag", 44),
    ("ipv6-icmp", 58),
    ("icmpv6", 58),
    ("ipv6-nonxt", 59),
    ("ipv6-opts", 60),
    ("ipv6-route", 43),
    ("ospf", 89),
    ("pgm", 113),
    ("rsvp", 46),
    ("sctp", 132),
    ("tcp", 6),
    ("udp", 17),
    ("udplite", 136),
    ("vrrp", 112),
];
/// Storage kind of the rule templates.
const TEMPLATE: &str = "default_security_group_rule";
/// The fields a template gives to the rules made from it.
const RULE_FIELDS: &[&str] = &[
    "normalized_cidr",
    "direction",
    "ethertype",
    "protocol",
    "port_range_min",
    "port_range_max",
    "remote_ip_prefix",
    "remote_group_id",
    "remote_address_group_id",
    "description",
];

/// Protocols that only exist for IPv6.
const V6_ONLY_PROTOCOLS: &[u8] = &[41, 43, 44, 58, 59, 60];
/// Protocols whose rules may carry a port range.
const PORT_PROTOCOLS: &[u8] = &[6, 17, 132, 33, 136];

fn rule_key(r: &Value) -> String {
    let f = |k: &str| match r.get(k) {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(v) => v.to_string(),
    };
    [
        "direction",
        "ethertype",
        "protocol",
        "port_range_min",
        "port_range_max",
        "normalized_cidr",
        "remote_group_id",
        "remote_address_group_id",
    ]
    .iter()
    .map(|k| f(k))
    .collect::<Vec<_>>()
    .join("|")
}

fn protocol_number(p: &str) -> Option<u8> {
    PROTOCOLS
        .iter()
        .find(|(n, _)| *n == p)
        .map(|(_, n)| *n)
        .or_else(|| p.parse().ok())
}

fn in_use(id: &str) -> ApiError {
    ApiError::conflict("SecurityGroupInUse", format!("Security Group {id} in use."))
}

impl App {
    /// Returns the project's `default` security group, creating it (with Neutron's rules) on
    /// first use.
    pub(super) async fn ensure_default_group(
        &self,
        tx: &mut Tx,
        project: &str,
    ) -> ApiResult<String> {
        if let Some(id) = tx.claim_owner("default-sg", project).await.map_err(db)? {
            return Ok(id);
        }
        let id = new_id();
        if !tx.claim("default-sg", project, &id).await.map_err(db)? {
            return tx
                .claim_owner("default-sg", project)
                .await
                .map_err(db)?
                .ok_or_else(ApiError::internal);
        }
        let mut body = Doc::new();
        body.insert("name".into(), json!("default"));
        body.insert("description".into(), json!("Default security group"));
        body.insert("stateful".into(), json!(true));
        body.insert("tags".into(), json!([]));
        stamp_new(&mut body, &id, project);
        tx.insert(&Record {
            kind: "security_group".into(),
            id: id.clone(),
            project_id: project.to_string(),
            parent_id: None,
            body: Value::Object(body),
        })
        .await
        .map_err(db)?;
        self.rules_from_templates(tx, project, &id, "used_in_default_sg")
            .await?;
        Ok(id)
    }

    /// Creates the legacy rule templates on a fresh database (at start-up).
    pub(crate) async fn ensure_rule_templates(&self) -> ApiResult<()> {
        let mut tx = self.write().await?;
        self.rule_templates(&mut tx).await?;
        tx.commit().await.map_err(db)
    }

    /// The rule templates (`/v2.0/default-security-group-rules`); a fresh database gets
    /// Neutron's legacy four: ingress from the group itself, egress anywhere.
    async fn rule_templates(&self, tx: &mut Tx) -> ApiResult<Vec<Record>> {
        let all = tx.list(TEMPLATE, &Selector::default()).await.map_err(db)?;
        if !all.is_empty()
            || tx
                .claim_owner("sg-templates", "legacy")
                .await
                .map_err(db)?
                .is_some()
        {
            return Ok(all);
        }
        if !tx
            .claim("sg-templates", "legacy", "legacy")
            .await
            .map_err(db)?
        {
            // Another server seeded them concurrently.
            return tx.list(TEMPLATE, &Selector::default()).await.map_err(db);
        }
        for (direction, ethertype, parent, in_non_default) in [
            ("egress", "IPv4", false, true),
            ("egress", "IPv6", false, true),
            ("ingress", "IPv4", true, false),
            ("ingress", "IPv6", true, false),
        ] {
            let id = new_id();
            let description = format!("Legacy default SG rule for {direction} traffic");
            let body = json!({"id": id, "project_id": "", "tenant_id": "", "direction": direction,
                "ethertype": ethertype, "protocol": null, "port_range_min": null, "port_range_max": null,
                "remote_ip_prefix": null, "remote_group_id": if parent { json!("PARENT") } else { Value::Null },
                "remote_address_group_id": null, "description": description,
                "used_in_default_sg": true, "used_in_non_default_sg": in_non_default});
            tx.insert(&Record {
                kind: TEMPLATE.into(),
                id,
                project_id: String::new(),
                parent_id: None,
                body,
            })
            .await
            .map_err(db)?;
        }
        tx.list(TEMPLATE, &Selector::default()).await.map_err(db)
    }

    /// Adds to a new group the rules of every template flagged with `flag`
    /// (`used_in_default_sg` or `used_in_non_default_sg`); `PARENT` becomes the group.
    async fn rules_from_templates(
        &self,
        tx: &mut Tx,
        project: &str,
        group: &str,
        flag: &str,
    ) -> ApiResult<usize> {
        let mut added = 0;
        for t in self.rule_templates(tx).await? {
            if t.body[flag] != true {
                continue;
            }
            let id = new_id();
            let mut body = Doc::new();
            for k in RULE_FIELDS {
                body.insert(k.to_string(), t.body.get(k).cloned().unwrap_or(Value::Null));
            }
            if body["remote_group_id"] == "PARENT" {
                body.insert("remote_group_id".into(), json!(group));
            }
            body.insert("security_group_id".into(), json!(group));
            stamp_new(&mut body, &id, project);
            if let Some(ag) = body["remote_address_group_id"].as_str().map(str::to_string) {
                // The template's address group may have been deleted since (templates do not
                // hold it): no rule naming a group that does not exist.
                if tx.get("address_group", &ag).await.map_err(db)?.is_none() {
                    continue;
                }
                super::address_groups::claim_rule(tx, &ag, project, &id).await?;
            }
            tx.insert(&Record {
                kind: "security_group_rule".into(),
                id,
                project_id: project.to_string(),
                parent_id: Some(group.to_string()),
                body: Value::Object(body),
            })
            .await
            .map_err(db)?;
            added += 1;
        }
        Ok(added)
    }

    pub(super) async fn create_rule_template(
        &self,
        tx: &mut Tx,
        _ctx: &Context,
        body: &mut Doc,
    ) -> ApiResult<Option<String>> {
        for k in ["created_at", "updated_at", "revision_number"] {
            body.remove(k);
        }
        body.insert("project_id".into(), json!(""));
        body.insert("tenant_id".into(), json!(""));
        normalize_rule(body)?;
        check_single_remote(body)?;
        let remote_group = body
            .get("remote_group_id")
            .and_then(Value::as_str)
            .map(str::to_string);
        if let Some(rg) = remote_group.filter(|rg| rg != "PARENT") {
            if tx.get("security_group", &rg).await.map_err(db)?.is_none() {
                return Err(ApiError::not_found("security_group", &rg));
            }
        }
        if let Some(ag) = body.get("remote_address_group_id").and_then(Value::as_str) {
            if tx.get("address_group", ag).await.map_err(db)?.is_none() {
                return Err(ApiError::not_found("address_group", ag));
            }
        }
        let new = json!(body);
        for t in self.rule_templates(tx).await? {
            let same = rule_key(&t.body) == rule_key(&new);
            let overlap = (t.body["used_in_default_sg"] == true
                && new["used_in_default_sg"] == true)
                || (t.body["used_in_non_default_sg"] == true
                    && new["used_in_non_default_sg"] == true);
            if same && overlap {
                return Err(ApiError::conflict(
                    "DuplicateDefaultSgRule",
                    format!(
                        "Security group default rule already exists. Rule id is {}.",
                        t.id
                    ),
                ));
            }
        }
        Ok(None)
    }

    /// Makes sure the default group exists, in its own transaction (used before reads).
    pub(crate) async fn ensure_default_group_committed(&self, project: &str) -> ApiResult<()> {
        if project.is_empty() {
            return Ok(());
        }
        let mut tx = self.read().await?;
        if tx
            .claim_owner("default-sg", project)
            .await
            .map_err(db)?
            .is_some()
        {
            return Ok(());
        }
        drop(tx);
        let mut tx = self.write().await?;
        self.ensure_default_group(&mut tx, project).await?;
        tx.commit().await.map_err(db)
    }

    pub(super) async fn add_default_egress_rules(&self, tx: &mut Tx, group: &str) -> ApiResult<()> {
        let sg = tx
            .get("security_group", group)
            .await
            .map_err(db)?
            .ok_or_else(ApiError::internal)?;
        let wanted = self
            .rule_templates(tx)
            .await?
            .iter()
            .filter(|t| t.body["used_in_non_default_sg"] == true)
            .count();
        self.check_quota(tx, &sg.project_id, "security_group_rule", wanted as i64)
            .await?;
        self.rules_from_templates(tx, &sg.project_id, group, "used_in_non_default_sg")
            .await?;
        Ok(())
    }

    pub(super) async fn create_security_group(
        &self,
        tx: &mut Tx,
        _ctx: &Context,
        body: &mut Doc,
    ) -> ApiResult<Option<String>> {
        if body.get("name").and_then(Value::as_str) == Some("default") {
            let project = s(&json!(body), "project_id").to_string();
            if tx
                .claim_owner("default-sg", &project)
                .await
                .map_err(db)?
                .is_some()
            {
                return Err(ApiError::conflict(
                    "SecurityGroupDefaultAlreadyExists",
                    "Default security group already exists.",
                ));
            }
        }
        Ok(None)
    }

    pub(super) async fn update_security_group(
        &self,
        tx: &mut Tx,
        _ctx: &Context,
        rec: &mut Record,
        changes: Doc,
    ) -> ApiResult<()> {
        let is_default = s(&rec.body, "name") == "default";
        if let Some(name) = changes.get("name").and_then(Value::as_str) {
            if is_default && name != "default" {
                return Err(ApiError::conflict(
                    "SecurityGroupCannotUpdateDefault",
                    "Updating default security group not allowed.",
                ));
            }
            if !is_default && name == "default" {
                return Err(ApiError::conflict(
                    "SecurityGroupDefaultAlreadyExists",
                    "Default security group already exists.",
                ));
            }
        }
        if let Some(stateful) = changes.get("stateful") {
            if rec.body.get("stateful") != Some(stateful)
                && tx
                    .count_claims(&format!("sgport:{}", rec.id))
                    .await
                    .map_err(db)?
                    > 0
            {
                return Err(in_use(&rec.id));
            }
        }
        apply_changes(rec, changes);
        Ok(())
    }

    pub(super) async fn delete_security_group(
        &self,
        tx: &mut Tx,
        ctx: &Context,
        rec: &Record,
        _view: &View,
    ) -> ApiResult<()> {
        self.delete_logs_naming(tx, &rec.id).await?;
        let is_default = tx
            .claim_owner("default-sg", &rec.project_id)
            .await
            .map_err(db)?
            .as_deref()
            == Some(rec.id.as_str());
        if is_default && !ctx.is_admin() {
            return Err(ApiError::conflict(
                "SecurityGroupCannotRemoveDefault",
                "Insufficient rights for removing default security group.",
            ));
        }
        if tx
            .count_claims(&format!("sgport:{}", rec.id))
            .await
            .map_err(db)?
            > 0
        {
            return Err(in_use(&rec.id));
        }
        let all = Selector::default();
        for r in tx.list("security_group_rule", &all).await.map_err(db)? {
            if r.parent_id.as_deref() == Some(rec.id.as_str())
                || s(&r.body, "remote_group_id") == rec.id
            {
                tx.release_owned("agrule:", &r.id).await.map_err(db)?;
                tx.delete("security_group_rule", &r.id).await.map_err(db)?;
            }
        }
        self.delete_object_policies(tx, &rec.id).await?;
        if is_default {
            tx.release("default-sg", &rec.project_id)
                .await
                .map_err(db)?;
        }
        Ok(())
    }

    pub(super) async fn create_rule(
        &self,
        tx: &mut Tx,
        ctx: &Context,
        body: &mut Doc,
    ) -> ApiResult<Option<String>> {
        let group = s(&json!(body), "security_group_id").to_string();
        let view = View::load(tx, "security_group").await?;
        let sg = tx.get("security_group", &group).await.map_err(db)?;
        let Some(mut sg) = sg.filter(|g| {
            ctx.owns(&g.project_id) || view.granted(&g.id, "access_as_shared", &ctx.project_id)
        }) else {
            return Err(ApiError::not_found("security_group", &group));
        };
        if !ctx.owns(&sg.project_id) {
            return Err(ApiError::forbidden("create_security_group_rule"));
        }
        normalize_rule(body)?;
        check_single_remote(body)?;
        let remote_group = body
            .get("remote_group_id")
            .and_then(Value::as_str)
            .map(str::to_string);
        if let Some(rg) = &remote_group {
            let ok = neutrino_types::attrs::is_uuid(rg)
                && tx
                    .get("security_group", rg)
                    .await
                    .map_err(db)?
                    .is_some_and(|g| {
                        ctx.owns(&g.project_id)
                            || view.granted(rg, "access_as_shared", &ctx.project_id)
                    });
            if !ok {
                return Err(ApiError::not_found("security_group", rg));
            }
        }
        let rule_project = s(&json!(body), "project_id").to_string();
        if let Some(ag) = body
            .get("remote_address_group_id")
            .and_then(Value::as_str)
            .map(str::to_string)
        {
            self.check_rule_address_group(tx, ctx, &rule_project, &ag)
                .await?;
            let rule = s(&json!(body), "id").to_string();
            super::address_groups::claim_rule(tx, &ag, &rule_project, &rule).await?;
        }
        // A rule identical to one of the group's is refused.
        for r in tx
            .list(
                "security_group_rule",
                &Selector {
                    parent_ids: Some(vec![group.clone()]),
                    ..Default::default()
                },
            )
            .await
            .map_err(db)?
        {
            if rule_key(&r.body) == rule_key(&json!(body)) {
                return Err(ApiError::conflict(
                    "SecurityGroupRuleExists",
                    format!("Security group rule already exists. Rule id is {}.", r.id),
                ));
            }
        }
        bump(&mut sg.body);
        tx.update("security_group", &sg.id, &sg.body)
            .await
            .map_err(db)?;
        Ok(Some(group))
    }

    pub(super) async fn delete_rule(
        &self,
        tx: &mut Tx,
        _ctx: &Context,
        rec: &Record,
    ) -> ApiResult<()> {
        tx.release_owned("agrule:", &rec.id).await.map_err(db)?;
        let group = rec.parent_id.clone().unwrap_or_default();
        if let Some(mut sg) = tx.get("security_group", &group).await.map_err(db)? {
            bump(&mut sg.body);
            tx.update("security_group", &group, &sg.body)
                .await
                .map_err(db)?;
        }
        Ok(())
    }
}

/// At most one of `remote_ip_prefix`, `remote_group_id`, `remote_address_group_id`.
fn check_single_remote(rule: &Doc) -> ApiResult<()> {
    let given = [
        "remote_ip_prefix",
        "remote_group_id",
        "remote_address_group_id",
    ]
    .iter()
    .filter(|k| rule.get(**k).is_some_and(|v| !v.is_null() && v != ""))
    .count();
    if given > 1 {
        return Err(ApiError::bad(
            "SecurityGroupMultipleRemoteEntites",
            "Only one of remote_ip_prefix or remote_group_id or remote_address_group_id may be provided.",
        ));
    }
    Ok(())
}

/// Validates and normalises the match fields of a rule (or rule template): ethertype,
/// protocol, port range / ICMP type and code, remote prefix.
fn normalize_rule(body: &mut Doc) -> ApiResult<()> {
    let ethertype = match body.get("ethertype") {
            Some(Value::String(e)) if e.eq_ignore_ascii_case("ipv4") => "IPv4",
            Some(Value::String(e)) if e.eq_ignore_ascii_case("ipv6") => "IPv6",
            Some(Value::Null) | None => "IPv4",
            Some(other) => {
                return Err(ApiError::bad(
                    "SecurityGroupRuleInvalidEtherType",
                    format!("Security group rule for ethertype '{}' not supported. Allowed values are ['IPv4', 'IPv6'].", other.as_str().unwrap_or_default()),
                ))
            }
        };
    body.insert("ethertype".into(), json!(ethertype));
    let protocol = match body.get("protocol") {
        None | Some(Value::Null) => None,
        Some(Value::String(p)) if p.is_empty() => None,
        Some(v) => {
            let text = match v {
                Value::String(p) => p.to_ascii_lowercase(),
                Value::Number(n) => n.to_string(),
                _ => String::new(),
            };
            let number = protocol_number(&text);
            if number.is_none() || text.starts_with('-') {
                return Err(ApiError::bad(
                        "SecurityGroupRuleInvalidProtocol",
                        format!("Security group rule protocol {text} not supported. Only protocol values {:?} and integer representations [0 to 255] are supported.", PROTOCOLS.iter().map(|p| p.0).collect::<Vec<_>>()),
                    ));
            }
            Some((text, number.unwrap_or(0)))
        }
    };
    body.insert(
        "protocol".into(),
        json!(protocol.as_ref().map(|p| p.0.clone())),
    );
    if let Some((name, number)) = &protocol {
        if ethertype == "IPv4" && V6_ONLY_PROTOCOLS.contains(number) {
            return Err(ApiError::bad(
                "SecurityGroupEthertypeConflictWithProtocol",
                format!("Invalid ethertype {ethertype} for protocol {name}."),
            ));
        }
    }
    let port = |key: &str| -> ApiResult<Option<i64>> {
        match body.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v
                .as_i64()
                .or_else(|| v.as_str().and_then(|t| t.trim().parse().ok()))
                .map(Some)
                .ok_or_else(|| {
                    ApiError::bad(
                        "SecurityGroupInvalidPortValue",
                        format!("Invalid value for port {v}"),
                    )
                }),
        }
    };
    let (min, max) = (port("port_range_min")?, port("port_range_max")?);
    body.insert("port_range_min".into(), json!(min));
    body.insert("port_range_max".into(), json!(max));
    validate_ports(protocol.as_ref().map(|p| p.1), min, max)?;
    body.insert("normalized_cidr".into(), Value::Null);
    match body.get("remote_ip_prefix").cloned() {
        None | Some(Value::Null) => {}
        Some(Value::String(p)) => {
            let net: IpNet = p
                    .parse()
                    .or_else(|_| p.parse::<std::net::IpAddr>().map(IpNet::from))
                    .map_err(|_| ApiError::bad_request(format!("Invalid input for remote_ip_prefix. Reason: '{p}' is not a valid IP prefix.")))?;
            let v6 = matches!(net, IpNet::V6(_));
            if v6 != (ethertype == "IPv6") {
                return Err(ApiError::bad(
                    "SecurityGroupRuleParameterConflict",
                    format!("Conflicting value ethertype {ethertype} for CIDR {p}"),
                ));
            }
            // Kept as given; `normalized_cidr` holds the network it denotes.
            let cidr = if p.contains('/') {
                p.clone()
            } else {
                net.to_string()
            };
            body.insert("remote_ip_prefix".into(), json!(cidr));
            body.insert("normalized_cidr".into(), json!(net.trunc().to_string()));
        }
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "Invalid input for remote_ip_prefix. Reason: '{other}' is not a valid IP prefix."
            )))
        }
    }
    Ok(())
}

fn validate_ports(protocol: Option<u8>, min: Option<i64>, max: Option<i64>) -> ApiResult<()> {
    if min.is_none() && max.is_none() {
        return Ok(());
    }
    let Some(proto) = protocol else {
        return Err(ApiError::bad(
            "SecurityGroupProtocolRequiredWithPorts",
            "Must also specify protocol if port range is given.",
        ));
    };
    if PORT_PROTOCOLS.contains(&proto) {
        if min == Some(0) || max == Some(0) {
            return Err(ApiError::bad(
                "SecurityGroupInvalidPortValue",
                "Invalid value for port 0",
            ));
        }
        for v in [min, max].into_iter().flatten() {
            if !(1..=65535).contains(&v) {
                return Err(ApiError::bad(
                    "SecurityGroupInvalidPortValue",
                    format!("Invalid value for port {v}"),
                ));
            }
        }
        match (min, max) {
            (Some(a), Some(b)) if a <= b => Ok(()),
            _ => Err(ApiError::bad(
                "SecurityGroupInvalidPortRange",
                "For TCP/UDP protocols, port_range_min must be <= port_range_max",
            )),
        }
    } else if proto == 1 || proto == 58 {
        for (v, field, attr) in [
            (min, "type", "port_range_min"),
            (max, "code", "port_range_max"),
        ] {
            if let Some(v) = v {
                if !(0..=255).contains(&v) {
                    return Err(ApiError::bad(
                        "SecurityGroupInvalidIcmpValue",
                        format!(
                            "Invalid value for ICMP {field} ({attr}) {v}. It must be 0 to 255."
                        ),
                    ));
                }
            }
        }
        if min.is_none() {
            if let Some(m) = max {
                return Err(ApiError::bad(
                    "SecurityGroupMissingIcmpType",
                    format!("ICMP code (port-range-max) {m} is provided but ICMP type (port-range-min) is missing."),
                ));
            }
        }
        Ok(())
    } else {
        Err(ApiError::bad(
            "SecurityGroupInvalidProtocolForPort",
            format!("Invalid protocol {proto} for port range, only supported for TCP, UDP, UDPLITE, SCTP and DCCP protocols"),
        ))
    }
}
