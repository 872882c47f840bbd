//! What the generic request flow asks of a resource kind. Each kind implements [`Kind`] in its
//! own module and is registered once in [`super::COLLECTIONS`]; the flow (list, show, create,
//! update, delete, bulk, tags, If-Match, pagination, fields) never names a kind.
//!
//! Every method has the behaviour of a plain owned resource as its default, so a kind states
//! only what is its own. A family of kinds that share one implementation (networking-sfc's,
//! networking-l2gw's) declares its members as [`FamilyKind`]s.

use std::marker::PhantomData;

use async_trait::async_trait;
use neutrino_store::{Record, Tx};
use neutrino_types::attrs::Attr;
use neutrino_types::query::ListQuery;
use neutrino_types::{ApiError, ApiResult};
use serde_json::{Map, Value};

use super::authz::Extras;
use super::view::{Need, View};
use crate::{App, Context};

/// A JSON object.
pub type Doc = Map<String, Value>;

/// A kind's extra condition on the items of a listing, taken out of the query.
pub(crate) type ListFilter = Box<dyn Fn(&View, &Context, &Record) -> bool + Send + Sync>;

/// One resource kind of a family `F` whose members share one [`Kind`] implementation
/// (`impl Kind for FamilyKind<F>`), which tells them apart by `resource`.
pub(crate) struct FamilyKind<F> {
    /// Resource key, as in the collection.
    pub(crate) resource: &'static str,
    /// Attribute specification, as in the collection.
    pub(crate) spec: &'static [Attr],
    family: PhantomData<F>,
}

impl<F> FamilyKind<F> {
    /// The member `resource` with attributes `spec`.
    pub(crate) const fn new(resource: &'static str, spec: &'static [Attr]) -> Self {
        FamilyKind {
            resource,
            spec,
            family: PhantomData,
        }
    }
}

/// Applies validated changes to a record's body as they are (what a plain update does).
pub(crate) fn apply_changes(rec: &mut Record, changes: Doc) {
    for (key, value) in changes {
        rec.body[key.as_str()] = value;
    }
}

/// One resource kind of the API.
#[async_trait]
pub(crate) trait Kind: Send + Sync {
    /// Loads into `view` what checking visibility of (`Need::Check`) or rendering `records`
    /// needs. Called only with records.
    async fn load_view(
        &self,
        _tx: &mut Tx,
        _records: &[Record],
        _view: &mut View,
        _need: Need,
    ) -> ApiResult<()> {
        Ok(())
    }

    /// Whether a caller who neither owns `rec` nor is admin may read it.
    fn visible_to_others(&self, _view: &View, _ctx: &Context, _rec: &Record) -> bool {
        false
    }

    /// Adds what a stored document lacks for the caller (computed attributes).
    fn render(&self, _view: &View, _ctx: &Context, _rec: &Record, _doc: &mut Doc) {}

    /// The request checks Neutron's API layer makes before the policy runs (the shape of
    /// nested attributes), on a validated create or update body.
    fn check_request(&self, _body: &Doc) -> ApiResult<()> {
        Ok(())
    }

    /// What the policy's targets need beyond the record (`network:tenant_id`, `shared`, ...),
    /// from a view loaded for checking.
    fn policy_extras(&self, _view: &View, _ctx: &Context, _rec: &Record) -> Extras {
        Vec::new()
    }

    /// Whether a record the caller may read but not write is hidden from it (404) rather
    /// than forbidden (403).
    fn hides_from(&self, _ctx: &Context, _rec: &Record) -> bool {
        false
    }

    /// The error for a non-admin creating a resource for another project: neutron-lib's
    /// check of the body, before any policy.
    fn foreign_project(&self, _action: &str, _project: &str) -> ApiError {
        ApiError::bad_request(
            "Specifying 'project_id' or 'tenant_id' other than the authenticated project in request requires admin privileges",
        )
    }

    /// Whether a create may name no project (`project_id: ""`): a shared network segment
    /// range has none.
    fn allows_no_project(&self) -> bool {
        false
    }

    /// The project a new record is stored (and filtered) under, once `create` completed its
    /// document; `project`: the one the request named or implied.
    fn stored_project(&self, _body: &Doc, project: String) -> String {
        project
    }

    /// Drops query keys the kind ignores instead of refusing (`None`: keep them all).
    fn known_query(&self, _pairs: &[(String, String)]) -> Option<Vec<(String, String)>> {
        None
    }

    /// Work before a listing (e.g. a project's default security group appears when listed).
    async fn before_list(&self, _app: &App, _ctx: &Context, _q: &ListQuery) -> ApiResult<()> {
        Ok(())
    }

    /// Takes the kind's own filters out of a listing query.
    fn list_filter(&self, _q: &mut ListQuery) -> Option<ListFilter> {
        None
    }

    /// Work once per create request, before its items (e.g. the project's default group).
    async fn before_create(&self, _app: &App, _tx: &mut Tx, _ctx: &Context) -> ApiResult<()> {
        Ok(())
    }

    /// Checks and completes a new document (standard attributes are set); returns the
    /// record's parent id.
    async fn create(
        &self,
        app: &App,
        tx: &mut Tx,
        ctx: &Context,
        body: &mut Doc,
    ) -> ApiResult<Option<String>>;

    /// Side effects once the new record is stored.
    async fn after_create(
        &self,
        _app: &App,
        _tx: &mut Tx,
        _ctx: &Context,
        _rec: &Record,
    ) -> ApiResult<()> {
        Ok(())
    }

    /// Applies validated changes to `rec` (stored by the flow afterwards).
    async fn update(
        &self,
        _app: &App,
        _tx: &mut Tx,
        _ctx: &Context,
        rec: &mut Record,
        changes: Doc,
    ) -> ApiResult<()> {
        apply_changes(rec, changes);
        Ok(())
    }

    /// Side effects once the changed record is stored.
    async fn after_update(&self, _app: &App, _tx: &mut Tx, _rec: &Record) -> ApiResult<()> {
        Ok(())
    }

    /// In-use checks and cleanup before the record is deleted.
    async fn delete(
        &self,
        _app: &App,
        _tx: &mut Tx,
        _ctx: &Context,
        _rec: &Record,
        _view: &View,
    ) -> ApiResult<()> {
        Ok(())
    }

    /// Side effects once the record is deleted.
    async fn after_delete(&self, _app: &App, _tx: &mut Tx, _rec: &Record) -> ApiResult<()> {
        Ok(())
    }

    /// The stored id of the member a request names `id` (under the parent member `parent`
    /// of a nested collection): `id` itself, unless members are named by something else (a
    /// Local IP's port association, by its port).
    fn stored_id(&self, _parent: Option<&str>, id: &str) -> String {
        id.to_string()
    }

    /// The id a new record is stored under, from its validated document (a nested one names
    /// its parent); `None`: a fresh one.
    fn new_record_id(&self, _body: &Doc) -> Option<String> {
        None
    }

    /// The kind's own 404 for record `id` (under the parent member `parent` of a nested
    /// collection); `None`: the generic `<Resource>NotFound`.
    fn not_found(&self, _parent: Option<&str>, _id: &str) -> Option<ApiError> {
        None
    }

    /// Whether a listing's `marker` that names no record the caller sees is ignored (the
    /// first page answers) rather than a 404: upstream's object-based resources (QoS
    /// policies) look the marker up as the caller and page without it when it is not found.
    fn ignores_unknown_marker(&self) -> bool {
        false
    }

    /// The names of `PUT /{collection}/{id}/{action}`.
    fn actions(&self) -> &'static [&'static str] {
        &[]
    }

    /// Runs a `PUT` action on a record the caller may write; returns the response body.
    async fn action(
        &self,
        _app: &App,
        _tx: &mut Tx,
        _ctx: &Context,
        _rec: &mut Record,
        _action: &str,
        _body: Value,
    ) -> ApiResult<Value> {
        Err(ApiError::no_such_url())
    }

    /// Answers `GET /{collection}/{id}/{action}`.
    async fn get_action(
        &self,
        _app: &App,
        _ctx: &Context,
        _id: &str,
        _action: &str,
    ) -> ApiResult<Value> {
        Err(ApiError::no_such_url())
    }
}
