//! The generic request flow every collection shares: list (filters, sorting, pagination,
//! fields), show, create (one or bulk, all or nothing), update with If-Match, delete, tags and
//! actions. What differs between resources is asked of the collection's [`super::kind::Kind`].

use neutrino_store::{Record, Selector, Tx};
use neutrino_types::attrs::{self, Op};
use neutrino_types::query;
use neutrino_types::{ApiError, ApiResult};
use serde_json::{json, Value};

use super::authz::{body_of, set_on_create};
use super::view::{Need, View};
use super::{
    bump, check_if_match, owner_project, require_member, stamp_new, validate_tags, Collection, Doc,
    ListResult,
};
use crate::{db, new_id, App, Context};

impl App {
    /// Whether the caller may read `rec`.
    pub(crate) fn visible(
        &self,
        view: &View,
        ctx: &Context,
        coll: &Collection,
        rec: &Record,
    ) -> bool {
        ctx.is_admin()
            || rec.project_id == ctx.project_id
            || (coll.rbac_shared && view.granted(&rec.id, "access_as_shared", &ctx.project_id))
            || coll.kind.visible_to_others(view, ctx, rec)
    }

    pub(crate) fn render(
        &self,
        view: &View,
        ctx: &Context,
        coll: &Collection,
        rec: &Record,
    ) -> Doc {
        let doc = rec.body.as_object().cloned().unwrap_or_default();
        self.render_doc(view, ctx, coll, rec, doc)
    }

    /// Renders `doc` (the body of `rec`, taken out of it) for the caller.
    pub(crate) fn render_doc(
        &self,
        view: &View,
        ctx: &Context,
        coll: &Collection,
        rec: &Record,
        mut doc: Doc,
    ) -> Doc {
        if coll.rbac_shared && coll.spec.iter().any(|a| a.name == "shared") {
            let shared = view.granted(&rec.id, "access_as_shared", &ctx.project_id);
            doc.insert("shared".into(), Value::Bool(shared));
        }
        coll.kind.render(view, ctx, rec, &mut doc);
        self.strip_hidden(coll, ctx, doc)
    }

    /// `GET /v2.0/{collection}`.
    pub async fn list(
        &self,
        ctx: &Context,
        coll: &Collection,
        pairs: &[(String, String)],
    ) -> ApiResult<ListResult> {
        self.list_in(ctx, coll, None, pairs).await
    }

    /// The parent record `id` of a nested collection's request, if the caller sees it
    /// (else the parent kind's 404).
    pub(crate) async fn nest_parent(
        &self,
        tx: &mut Tx,
        ctx: &Context,
        coll: &Collection,
        id: &str,
    ) -> ApiResult<Record> {
        let parent = coll
            .nest
            .and_then(|n| Collection::by_path(n.parent))
            .ok_or_else(ApiError::internal)?;
        let rec = tx.get(parent.resource, id).await.map_err(db)?;
        let view = View::of(tx, parent, rec.as_slice(), Need::Check).await?;
        if let Some(rec) = rec.filter(|r| self.visible(&view, ctx, parent, r)) {
            let doc = self.render(&view, ctx, parent, &rec);
            let extras = parent.policy_extras(&view, ctx, &rec);
            if self.may_read(ctx, parent, &doc, extras) {
                return Ok(rec);
            }
        }
        Err(parent.not_found(None, id))
    }

    /// `GET /v2.0/{collection}`, or `GET /v2.0/{parent}/{id}/{collection}` with `parent`.
    pub async fn list_in(
        &self,
        ctx: &Context,
        coll: &Collection,
        parent: Option<&str>,
        pairs: &[(String, String)],
    ) -> ApiResult<ListResult> {
        let known = coll.kind.known_query(pairs);
        let pairs = known.as_deref().unwrap_or(pairs);
        let mut q = query::parse(pairs, coll.spec, coll.extra_filters)?;
        if !ctx.is_admin() {
            for a in coll.spec.iter().filter(|a| a.admin_only) {
                q.filters.retain(|(k, _)| k != a.name);
            }
        }
        coll.kind.before_list(self, ctx, &q).await?;
        let mut tx = self.read().await?;
        let mut sel = Selector::default();
        if let Some(parent) = parent {
            self.nest_parent(&mut tx, ctx, coll, parent).await?;
            sel.parent_ids = Some(vec![parent.to_string()]);
        }
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
        if let Some(parents) = coll.parent_key.and_then(|k| q.filter(k)) {
            if parent.is_none() {
                sel.parent_ids = Some(strings(parents));
            }
        }
        let records = tx.list(coll.resource, &sel).await.map_err(db)?;
        let view = View::of(&mut tx, coll, &records, Need::Check).await?;
        drop(tx);
        let own_filter = coll.kind.list_filter(&mut q);
        let mut items = Vec::with_capacity(records.len());
        for mut record in records {
            if !self.visible(&view, ctx, coll, &record) {
                continue;
            }
            if own_filter.as_ref().is_some_and(|f| !f(&view, ctx, &record)) {
                continue;
            }
            let body = match std::mem::take(&mut record.body) {
                Value::Object(doc) => doc,
                _ => Doc::new(),
            };
            let doc = self.render_doc(&view, ctx, coll, &record, body);
            let extras = coll.policy_extras(&view, ctx, &record);
            if self.may_read(ctx, coll, &doc, extras) && query::matches(&doc, &q) {
                items.push(doc);
            }
        }
        if coll.kind.ignores_unknown_marker() {
            let known = |m: &String| {
                items
                    .iter()
                    .any(|d| d.get("id").and_then(Value::as_str) == Some(m))
            };
            if q.marker.as_ref().is_some_and(|m| !known(m)) {
                q.marker = None;
            }
        }
        let page = query::page(items, &q, coll.resource)?;
        Ok(ListResult {
            items: page
                .items
                .into_iter()
                .map(|d| query::project(d, &q.fields))
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
        self.show_in(ctx, coll, None, id, fields).await
    }

    /// `GET /v2.0/{collection}/{id}`, or under a parent's member with `parent`.
    pub async fn show_in(
        &self,
        ctx: &Context,
        coll: &Collection,
        parent: Option<&str>,
        id: &str,
        fields: &[String],
    ) -> ApiResult<Doc> {
        let mut tx = self.read().await?;
        if let Some(parent) = parent {
            self.nest_parent(&mut tx, ctx, coll, parent).await?;
        }
        let rec = tx
            .get(coll.resource, &coll.kind.stored_id(parent, id))
            .await
            .map_err(db)?
            .filter(|r| parent.is_none() || r.parent_id.as_deref() == parent);
        let view = View::of(&mut tx, coll, rec.as_slice(), Need::Check).await?;
        drop(tx);
        if let Some(rec) = rec.filter(|r| self.visible(&view, ctx, coll, r)) {
            let doc = self.render(&view, ctx, coll, &rec);
            let extras = coll.policy_extras(&view, ctx, &rec);
            if self.may_read(ctx, coll, &doc, extras) {
                return Ok(query::project(doc, fields));
            }
        }
        Err(coll.not_found(parent, id))
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
        self.check_quota(tx, &project, coll.resource, 1).await?;
        let id = coll.kind.new_record_id(&body).unwrap_or_else(new_id);
        self.insert_record(tx, ctx, coll, body, project, id).await
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
        let parent = coll.kind.create(self, tx, ctx, &mut body).await?;
        let project = coll.kind.stored_project(&body, project);
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
            id,
            project_id: project,
            parent_id: parent,
            body: Value::Object(body),
        };
        tx.insert(&record).await.map_err(db)?;
        coll.kind.after_create(self, tx, ctx, &record).await?;
        Ok(record)
    }

    /// `POST /v2.0/{collection}` with one or several (bulk, all or nothing) bodies.
    pub async fn create(
        &self,
        ctx: &Context,
        coll: &Collection,
        bodies: Vec<Doc>,
    ) -> ApiResult<Vec<Doc>> {
        self.create_in(ctx, coll, None, bodies).await
    }

    /// `POST /v2.0/{collection}`, or under a parent's member with `parent` (the new records
    /// name it in the nest's attribute).
    pub async fn create_in(
        &self,
        ctx: &Context,
        coll: &Collection,
        parent: Option<&str>,
        bodies: Vec<Doc>,
    ) -> ApiResult<Vec<Doc>> {
        // Checks that need no database run before the write transaction starts; as in
        // Neutron, the body (and naming another project) is checked before the policy.
        let mut checked = Vec::with_capacity(bodies.len());
        for request in bodies {
            let mut body = attrs::validate(coll.spec, &request, Op::Create)?;
            coll.kind.check_request(&body)?;
            let set = set_on_create(coll.spec, &request, &body);
            let project = owner_project(ctx, &mut body, coll)?;
            checked.push((body, project, set));
        }
        require_member(ctx, &format!("create_{}", coll.resource))?;
        if parent.is_some() {
            // As Neutron, a caller the create rule refuses whatever the parent hears 403
            // before the parent is looked up (admin-only rules under a missing parent).
            for (body, project, _) in &checked {
                let mut target = body.clone();
                target.insert("project_id".into(), json!(project));
                target.insert("tenant_id".into(), json!(project));
                // At best the caller owns the parent: rules on the parent's owner are
                // decided once the parent is found.
                for k in ["ext_parent:project_id", "ext_parent:tenant_id"] {
                    target.insert(k.into(), json!(ctx.project_id));
                }
                self.check_rule(ctx, &format!("create_{}", coll.resource), &target)?;
            }
        }
        let mut tx = self.write().await?;
        if let (Some(parent), Some(nest)) = (parent, coll.nest) {
            self.nest_parent(&mut tx, ctx, coll, parent).await?;
            for (body, _, _) in &mut checked {
                body.insert(nest.attr.into(), json!(parent));
            }
        }
        let action = format!("create_{}", coll.resource);
        for (body, project, set) in &checked {
            self.authorize_create(&mut tx, ctx, coll, &action, body, project, set)
                .await?;
        }
        coll.kind.before_create(self, &mut tx, ctx).await?;
        let mut created = Vec::with_capacity(checked.len());
        for (body, project, _) in checked {
            created.push(self.insert_new(&mut tx, ctx, coll, body, project).await?);
        }
        // Side effects may have written more into the rows (e.g. RBAC policies' own).
        let records = if coll.reread_after_create {
            let ids = created.iter().map(|r| r.id.clone()).collect();
            let sel = Selector {
                ids: Some(ids),
                ..Default::default()
            };
            tx.list(coll.resource, &sel).await.map_err(db)?
        } else {
            created
        };
        let view = View::of(&mut tx, coll, &records, Need::Created).await?;
        let out = records
            .iter()
            .map(|rec| self.render(&view, ctx, coll, rec))
            .collect();
        tx.commit().await.map_err(db)?;
        Ok(out)
    }

    /// Checks a create against the policy: the new document with its owner, the parent's
    /// owner and sharing (a network's, a security group's) as the kind reads them.
    #[allow(clippy::too_many_arguments)]
    async fn authorize_create(
        &self,
        tx: &mut Tx,
        ctx: &Context,
        coll: &Collection,
        action: &str,
        body: &Doc,
        project: &str,
        set: &Doc,
    ) -> ApiResult<()> {
        let mut target = body.clone();
        target.insert("project_id".into(), json!(project));
        target.insert("tenant_id".into(), json!(project));
        let parent = coll
            .parent_key
            .and_then(|k| target.get(k))
            .and_then(Value::as_str)
            .map(str::to_string);
        let rec = Record {
            kind: coll.resource.to_string(),
            id: String::new(),
            project_id: project.to_string(),
            parent_id: parent,
            body: Value::Null,
        };
        let view = match rec.parent_id {
            Some(_) => View::check(tx, coll, std::slice::from_ref(&rec)).await?,
            None => View::default(),
        };
        let extras = coll.policy_extras(&view, ctx, &rec);
        if rec.parent_id.is_some() && extras.is_empty() {
            // The parent (a network, a security group) is missing or hidden from the caller:
            // the kind answers 404 for it, as Neutron does, rather than a policy 403.
            return Ok(());
        }
        self.authorize(ctx, action, &target, extras, set)
    }

    /// Loads a record the caller may write: 404 if invisible, 403 if the policy refuses
    /// `action` (`update`, `delete` or an action's own name) with the attributes `set`.
    pub(crate) async fn writable(
        &self,
        tx: &mut Tx,
        ctx: &Context,
        coll: &Collection,
        id: &str,
        action: &str,
        set: &Doc,
    ) -> ApiResult<(Record, View)> {
        self.writable_in(tx, ctx, coll, None, id, action, set).await
    }

    /// [`App::writable`] for a record under the parent member `parent` (404 when it is
    /// another parent's).
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn writable_in(
        &self,
        tx: &mut Tx,
        ctx: &Context,
        coll: &Collection,
        parent: Option<&str>,
        id: &str,
        action: &str,
        set: &Doc,
    ) -> ApiResult<(Record, View)> {
        if let Some(parent) = parent {
            self.nest_parent(tx, ctx, coll, parent).await?;
        }
        let rec = tx
            .get(coll.resource, &coll.kind.stored_id(parent, id))
            .await
            .map_err(db)?
            .filter(|r| r.kind == coll.resource)
            .filter(|r| parent.is_none() || r.parent_id.as_deref() == parent);
        let Some(rec) = rec else {
            return Err(coll.not_found(parent, id));
        };
        let view = View::of(tx, coll, std::slice::from_ref(&rec), Need::Check).await?;
        if !self.visible(&view, ctx, coll, &rec) || coll.kind.hides_from(ctx, &rec) {
            return Err(coll.not_found(parent, id));
        }
        let action = match action {
            "update" | "delete" => format!("{action}_{}", coll.resource),
            own => own.to_string(),
        };
        // As Neutron: a refusal is 404 to whom the `get_<kind>` policy hides the record (a
        // shared group's rules from the group's grantees), 403 to the others.
        let refused = |e: ApiError| {
            let doc = self.render(&view, ctx, coll, &rec);
            let extras = coll.policy_extras(&view, ctx, &rec);
            if self.may_read(ctx, coll, &doc, extras) {
                e
            } else {
                coll.not_found(parent, id)
            }
        };
        // Readers never write, whatever a policy file says.
        require_member(ctx, &action).map_err(refused)?;
        let extras = coll.policy_extras(&view, ctx, &rec);
        self.authorize(ctx, &action, body_of(&rec), extras, set)
            .map_err(refused)?;
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
        self.update_in(ctx, coll, None, id, body, if_match).await
    }

    /// `PUT /v2.0/{collection}/{id}`, or under a parent's member with `parent`.
    pub async fn update_in(
        &self,
        ctx: &Context,
        coll: &Collection,
        parent: Option<&str>,
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
        coll.kind.check_request(&changes)?;
        if changes.contains_key("project_id") || changes.contains_key("tenant_id") {
            return Err(ApiError::bad_request(
                "Cannot update read-only attribute project_id",
            ));
        }
        let mut tx = self.write().await?;
        let (mut rec, _) = self
            .writable_in(&mut tx, ctx, coll, parent, id, "update", &changes)
            .await?;
        check_if_match(&rec.body, if_match)?;
        coll.kind
            .update(self, &mut tx, ctx, &mut rec, changes)
            .await?;
        if coll.revised {
            bump(&mut rec.body);
        }
        tx.update(coll.resource, id, &rec.body).await.map_err(db)?;
        coll.kind.after_update(self, &mut tx, &rec).await?;
        let view = View::of(&mut tx, coll, std::slice::from_ref(&rec), Need::Render).await?;
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
        self.delete_in(ctx, coll, None, id, if_match).await
    }

    /// `DELETE /v2.0/{collection}/{id}`, or under a parent's member with `parent`.
    pub async fn delete_in(
        &self,
        ctx: &Context,
        coll: &Collection,
        parent: Option<&str>,
        id: &str,
        if_match: Option<i64>,
    ) -> ApiResult<()> {
        let mut tx = self.write().await?;
        let (rec, view) = self
            .writable_in(&mut tx, ctx, coll, parent, id, "delete", &Doc::new())
            .await?;
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
        coll.kind.delete(self, tx, ctx, rec, view).await?;
        tx.delete(coll.resource, &rec.id).await.map_err(db)?;
        coll.kind.after_delete(self, tx, rec).await
    }

    /// `PUT /v2.0/{collection}/{id}/{action}`: router interfaces and extra routes, subnet
    /// pool prefix operations, address group addresses, trunk subports. Returns the action's
    /// own body.
    pub async fn action(
        &self,
        ctx: &Context,
        coll: &Collection,
        id: &str,
        action: &str,
        body: Value,
    ) -> ApiResult<Value> {
        if !coll.kind.actions().contains(&action) {
            return Err(ApiError::no_such_url());
        }
        let mut tx = self.write().await?;
        let (mut rec, _) = self
            .writable(&mut tx, ctx, coll, id, action, &Doc::new())
            .await?;
        let out = coll
            .kind
            .action(self, &mut tx, ctx, &mut rec, action, body)
            .await?;
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
        coll.kind.get_action(self, ctx, id, action).await
    }

    /// `GET /v2.0/{collection}/{id}/tags`.
    pub async fn tags(&self, ctx: &Context, coll: &Collection, id: &str) -> ApiResult<Vec<String>> {
        let doc = self.show(ctx, coll, id, &[]).await?;
        Ok(tag_list(doc.get("tags")))
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
        let mut set = Doc::new();
        set.insert("tags".into(), json!([]));
        let (mut rec, _) = self
            .writable(&mut tx, ctx, coll, id, "update", &set)
            .await?;
        let current = tag_list(rec.body.get("tags"));
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

/// The strings of a stored tag list.
fn tag_list(tags: Option<&Value>) -> Vec<String> {
    tags.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|t| t.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}
