//! Floating IPs: allocation on external networks, association with a port behind a router.

use neutrino_store::{Record, Tx};
use neutrino_types::{ApiError, ApiResult};
use serde_json::Value;

use super::Doc;
use crate::{App, Context};

impl App {
    pub(super) async fn create_floatingip(&self, _tx: &mut Tx, _ctx: &Context, _body: &mut Doc) -> ApiResult<Option<String>> {
        Err(ApiError::no_such_url())
    }

    pub(super) async fn update_floatingip(&self, _tx: &mut Tx, _ctx: &Context, _rec: &mut Record, _changes: Doc) -> ApiResult<()> {
        Err(ApiError::no_such_url())
    }

    pub(super) async fn delete_floatingip(&self, _tx: &mut Tx, _ctx: &Context, _rec: &Record) -> ApiResult<()> {
        Err(ApiError::no_such_url())
    }
}
