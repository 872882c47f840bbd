//! Service function chaining, wire-compatible with networking-sfc: flow classifiers, port
//! pairs, port pair groups (with tap), port chains and service graphs under `/v2.0/sfc/`.
//!
//! Every rule between these resources is a claim, so it holds with several servers on one
//! database and needs no scan of the other chains:
//!
//! | scope | key | owner | rule |
//! |---|---|---|---|
//! | `sfc-port` | `<port>/<pp or fc>` | pp / fc | a port used by SFC cannot be deleted |
//! | `sfc-pp-ports` | `<ingress>\|<egress>` | pp | one port pair per port combination |
//! | `sfc-pp-group` | pp | ppg | a port pair is in one group only |
//! | `sfc-group-id` / `sfc-chain-id` | zero-padded number | ppg / chain | global ids |
//! | `sfc-ppg-use` | `<ppg>/<chain>` | chain | a group used by a chain cannot be deleted |
//! | `sfc-ppg-list` | `<project>\|<sha256 of the ordered list>` | chain | no two identical hop lists |
//! | `sfc-fc-chain` | fc | chain | a classifier is in one chain only |
//! | `sfc-fc-src:<ethertype>` | source prefix key / fc | fc | classifier overlap candidates |
//! | `sfc-chain-src:<ethertype>` | source prefix key / fc | chain | overlap with other chains |
//! | `sfc-chain-graph` | chain | graph | a chain is in one graph only |
//!
//! Overlap checks read only the index keys whose source prefix can intersect (see
//! `neutrino_types::sfc::Match::index_ranges`), then compare those few classifiers in full.
//! Records go through the ordinary `Tx` insert/update/delete, so the store's change feed
//! carries them like every other resource.

mod chains;
mod classifiers;
mod pairs;
pub(crate) mod status;

use std::collections::HashMap;

use neutrino_store::{Record, Selector, Tx};
use neutrino_types::{ApiError, ApiResult};
use serde_json::Value;
use sha2::{Digest, Sha256};

use async_trait::async_trait;
use neutrino_types::attrs::Attr;
use neutrino_types::sfc as sfc_spec;

use super::kind::{apply_changes, FamilyKind, Kind};
use super::{Collection, Doc, View};
use crate::{db, App, Context};

const PORT_USE: &str = "sfc-port";
const PP_PORTS: &str = "sfc-pp-ports";
const PP_GROUP: &str = "sfc-pp-group";
const GROUP_ID: &str = "sfc-group-id";
const CHAIN_ID: &str = "sfc-chain-id";
const PPG_USE: &str = "sfc-ppg-use";
const PPG_LIST: &str = "sfc-ppg-list";
const FC_CHAIN: &str = "sfc-fc-chain";
const CHAIN_GRAPH: &str = "sfc-chain-graph";

fn fc_index(ethertype: &str) -> String {
    format!("sfc-fc-src:{ethertype}")
}

fn chain_index(ethertype: &str) -> String {
    format!("sfc-chain-src:{ethertype}")
}

/// `/v2.0/sfc/flow_classifiers` (one item per POST).
pub(crate) static FLOW_CLASSIFIERS: Collection = Collection::family(
    "sfc/flow_classifiers",
    &SfcKind::new("flow_classifier", sfc_spec::FLOW_CLASSIFIER),
)
.single();
/// `/v2.0/sfc/port_pairs` (one item per POST).
pub(crate) static PORT_PAIRS: Collection = Collection::family(
    "sfc/port_pairs",
    &SfcKind::new("port_pair", sfc_spec::PORT_PAIR),
)
.single();
/// `/v2.0/sfc/port_pair_groups` (one item per POST).
pub(crate) static PORT_PAIR_GROUPS: Collection = Collection::family(
    "sfc/port_pair_groups",
    &SfcKind::new("port_pair_group", sfc_spec::PORT_PAIR_GROUP),
)
.single();
/// `/v2.0/sfc/port_chains` (one item per POST).
pub(crate) static PORT_CHAINS: Collection = Collection::family(
    "sfc/port_chains",
    &SfcKind::new("port_chain", sfc_spec::PORT_CHAIN),
)
.single();
/// `/v2.0/sfc/service_graphs` (one item per POST).
pub(crate) static SERVICE_GRAPHS: Collection = Collection::family(
    "sfc/service_graphs",
    &SfcKind::new("service_graph", sfc_spec::SERVICE_GRAPH),
)
.single();

/// Marks the networking-sfc kinds.
struct Sfc;

/// One networking-sfc resource kind; the rules between them are claims (see above).
type SfcKind = FamilyKind<Sfc>;

#[async_trait]
impl Kind for SfcKind {
    fn render(&self, _view: &View, _ctx: &Context, _rec: &Record, doc: &mut Doc) {
        if self.resource == "port_pair" {
            // Pairs created before the health attributes existed have none stored.
            neutrino_types::sfc_status::fill_health(doc);
        }
    }

    fn known_query(&self, pairs: &[(String, String)]) -> Option<Vec<(String, String)>> {
        Some(known_query(self.spec, pairs))
    }

    async fn create(
        &self,
        app: &App,
        tx: &mut Tx,
        ctx: &Context,
        body: &mut Doc,
    ) -> ApiResult<Option<String>> {
        app.create_sfc(tx, ctx, self.resource, body).await
    }

    async fn update(
        &self,
        app: &App,
        tx: &mut Tx,
        ctx: &Context,
        rec: &mut Record,
        changes: Doc,
    ) -> ApiResult<()> {
        app.update_sfc(tx, ctx, rec, changes).await
    }

    async fn delete(
        &self,
        app: &App,
        tx: &mut Tx,
        _ctx: &Context,
        rec: &Record,
        _view: &View,
    ) -> ApiResult<()> {
        app.delete_sfc(tx, rec).await
    }

    async fn get_action(
        &self,
        app: &App,
        ctx: &Context,
        id: &str,
        action: &str,
    ) -> ApiResult<Value> {
        if (self.resource, action) != ("port_chain", "statistics") {
            return Err(ApiError::no_such_url());
        }
        app.port_chain_statistics(ctx, id).await
    }
}

/// Drops the query keys networking-sfc ignores (it disables filter validation): anything
/// that is not a filterable attribute or a list parameter.
fn known_query(spec: &[Attr], pairs: &[(String, String)]) -> Vec<(String, String)> {
    const KEEP: &[&str] = &[
        "fields",
        "sort_key",
        "sort_dir",
        "limit",
        "marker",
        "page_reverse",
        "project_id",
        "tenant_id",
    ];
    pairs
        .iter()
        .filter(|(k, _)| {
            KEEP.contains(&k.as_str())
                || neutrino_types::attrs::find(spec, k).is_some_and(|a| a.filter)
        })
        .cloned()
        .collect()
}

/// Whether the caller sees an SFC record: its owner, or an admin (no sharing in SFC).
fn sees(ctx: &Context, rec: &Record) -> bool {
    ctx.is_admin() || rec.project_id == ctx.project_id
}

fn text(doc: &Value, key: &str) -> String {
    doc.get(key)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

fn ids(doc: &Value, key: &str) -> Vec<String> {
    doc.get(key)
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Records of one kind by id (missing ids are simply absent).
async fn by_id(tx: &mut Tx, kind: &str, ids: &[String]) -> ApiResult<HashMap<String, Record>> {
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    let sel = Selector {
        ids: Some(ids.to_vec()),
        ..Default::default()
    };
    Ok(tx
        .list(kind, &sel)
        .await
        .map_err(db)?
        .into_iter()
        .map(|r| (r.id.clone(), r))
        .collect())
}

/// The records named by `ids`, in that order; the first one missing or invisible to the
/// caller is a 404 of its kind.
async fn visible(tx: &mut Tx, ctx: &Context, kind: &str, ids: &[String]) -> ApiResult<Vec<Record>> {
    let mut found = by_id(tx, kind, ids).await?;
    ids.iter()
        .map(|id| {
            found
                .remove(id)
                .filter(|r| sees(ctx, r))
                .ok_or_else(|| ApiError::not_found(kind, id))
        })
        .collect()
}

/// Claims the lowest free number in `1..=max` of `scope` for `owner`; `None` when all are
/// taken. A number another server claims first is skipped: the next query sees its claim.
async fn allocate(tx: &mut Tx, scope: &str, max: i64, owner: &str) -> ApiResult<Option<i64>> {
    loop {
        let next = tx.lowest_free_number(scope).await.map_err(db)?;
        if next > max {
            return Ok(None);
        }
        if tx
            .claim(scope, &number_key(next), owner)
            .await
            .map_err(db)?
        {
            return Ok(Some(next));
        }
    }
}

/// Digits of the keys of `sfc-group-id` / `sfc-chain-id` claims.
const NUMBER_WIDTH: usize = 10;

fn number_key(n: i64) -> String {
    format!("{n:0NUMBER_WIDTH$}")
}

fn sha256_hex(s: &str) -> String {
    Sha256::digest(s.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl App {
    /// Creates an SFC resource; the body holds the validated attributes plus id and owner.
    pub(super) async fn create_sfc(
        &self,
        tx: &mut Tx,
        ctx: &Context,
        resource: &str,
        body: &mut Doc,
    ) -> ApiResult<Option<String>> {
        match resource {
            "flow_classifier" => self.create_classifier(tx, ctx, body).await?,
            "port_pair" => self.create_port_pair(tx, ctx, body).await?,
            "port_pair_group" => self.create_port_pair_group(tx, ctx, body).await?,
            "port_chain" => self.create_port_chain(tx, ctx, body).await?,
            "service_graph" => self.create_service_graph(tx, ctx, body).await?,
            _ => return Err(ApiError::no_such_url()),
        }
        Ok(None)
    }

    /// Applies an update to an SFC resource (name and description are plain; lists rechecked).
    pub(super) async fn update_sfc(
        &self,
        tx: &mut Tx,
        ctx: &Context,
        rec: &mut Record,
        mut changes: Doc,
    ) -> ApiResult<()> {
        match rec.kind.as_str() {
            "flow_classifier" => {
                for key in ["name", "description"] {
                    if changes.get(key).is_some_and(Value::is_null) {
                        changes.insert(key.into(), Value::String(String::new()));
                    }
                }
            }
            "port_pair_group" => {
                self.update_port_pair_group(tx, ctx, rec, &mut changes)
                    .await?
            }
            "port_chain" => self.update_port_chain(tx, ctx, rec, &mut changes).await?,
            _ => {}
        }
        apply_changes(rec, changes);
        Ok(())
    }

    /// Refuses to delete what is in use, then releases the resource's claims.
    pub(super) async fn delete_sfc(&self, tx: &mut Tx, rec: &Record) -> ApiResult<()> {
        let id = rec.id.as_str();
        let used_by = match rec.kind.as_str() {
            "flow_classifier" => tx.claim_owner(FC_CHAIN, id).await.map_err(db)?,
            "port_pair" => tx.claim_owner(PP_GROUP, id).await.map_err(db)?,
            "port_pair_group" => tx
                .claimed_keys(PPG_USE, &format!("{id}/"), Some(&format!("{id}0")), 1)
                .await
                .map_err(db)?
                .pop(),
            "port_chain" => tx.claim_owner(CHAIN_GRAPH, id).await.map_err(db)?,
            _ => None,
        };
        if used_by.is_some() {
            let (kind, message) = match rec.kind.as_str() {
                "flow_classifier" => (
                    "FlowClassifierInUse",
                    format!("Flow Classifier {id} in use."),
                ),
                "port_pair" => ("PortPairInUse", format!("Port Pair {id} in use.")),
                "port_pair_group" => (
                    "PortPairGroupInUse",
                    format!("Port Pair Group {id} in use."),
                ),
                _ => (
                    "ServiceGraphPortChainInUse",
                    format!("Port Chain {id} in use."),
                ),
            };
            return Err(ApiError::conflict(kind, message));
        }
        tx.release_owned("sfc-", id).await.map_err(db)?;
        if rec.kind == "port_chain" {
            tx.delete_chain_counters(id).await.map_err(db)?;
        }
        Ok(())
    }

    /// A port that a port pair or flow classifier uses cannot go (upstream fails on its
    /// foreign key; this answers 409 instead).
    pub(super) async fn check_port_unused_by_sfc(&self, tx: &mut Tx, port: &str) -> ApiResult<()> {
        let users = tx
            .claimed_keys(PORT_USE, &format!("{port}/"), Some(&format!("{port}0")), 1)
            .await
            .map_err(db)?;
        if let Some(key) = users.first() {
            let user = key.rsplit('/').next().unwrap_or_default();
            return Err(ApiError::conflict(
                "InUse",
                format!("Port {port} is in use by service function chaining resource {user}."),
            ));
        }
        Ok(())
    }

    /// Whether the caller may use a Neutron port in an SFC resource (owner, owner of its
    /// network, or admin); the record when so.
    async fn usable_port(&self, tx: &mut Tx, ctx: &Context, id: &str) -> ApiResult<Option<Record>> {
        let Some(port) = tx.get("port", id).await.map_err(db)? else {
            return Ok(None);
        };
        if ctx.is_admin() || port.project_id == ctx.project_id {
            return Ok(Some(port));
        }
        let network = match port.parent_id.as_deref() {
            Some(n) => tx.get("network", n).await.map_err(db)?,
            None => None,
        };
        Ok(network
            .filter(|n| n.project_id == ctx.project_id)
            .map(|_| port))
    }
}

/// Marks `port` as used by the SFC resource `user`.
async fn claim_port(tx: &mut Tx, port: &str, user: &str) -> ApiResult<()> {
    tx.claim(PORT_USE, &format!("{port}/{user}"), user)
        .await
        .map_err(db)?;
    Ok(())
}
