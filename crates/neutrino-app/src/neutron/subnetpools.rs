//! Subnet pools: prefixes, prefix lengths, quotas in addresses, default pools, prefix operations.

use neutrino_store::{Record, Tx};
use neutrino_types::{ApiError, ApiResult};
use serde_json::Value;

use super::Doc;
use crate::{App, Context};

impl App {
    pub(super) async fn create_subnetpool(&self, _tx: &mut Tx, _ctx: &Context, _body: &mut Doc) -> ApiResult<Option<String>> {
        Err(ApiError::no_such_url())
    }

    pub(super) async fn update_subnetpool(&self, _tx: &mut Tx, _ctx: &Context, _rec: &mut Record, _changes: Doc) -> ApiResult<()> {
        Err(ApiError::no_such_url())
    }

    pub(super) async fn delete_subnetpool(&self, _tx: &mut Tx, _ctx: &Context, _rec: &Record) -> ApiResult<()> {
        Err(ApiError::no_such_url())
    }

    pub(super) async fn subnetpool_action(&self, _tx: &mut Tx, _ctx: &Context, _rec: &mut Record, _action: &str, _body: Value) -> ApiResult<Value> {
        Err(ApiError::no_such_url())
    }
}
