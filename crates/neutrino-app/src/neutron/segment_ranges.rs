//! Network segment ranges, wire-compatible with Neutron's `network-segment-range` service
//! plugin: `/v2.0/network_segment_ranges`, admin-only by default policy. Specification and
//! the pure checks: `neutrino_types::segment_ranges`.
//!
//! The server keeps one default range (`default: true`, shared) per type it allocates tenant
//! segments of: VXLAN, from `--vni-range`; it is made (or moved) when the server starts
//! and can be neither updated nor deleted (400). Ranges an admin creates are shared (no
//! project) or belong to one project; ranges of one type and physical network must not
//! overlap one another (409, the default one aside). A new tenant VXLAN network of a
//! project takes the lowest free id of that project's ranges first, then of the shared
//! ranges outside every project's range (`App::allocate_tenant_vni`). `used` maps each
//! segmentation id of the range held by a network to the network's project; `available`
//! lists the free ids (at most [`AVAILABLE_SHOWN`] of them). A range cannot be deleted
//! while a network holds an id in it, nor changed so that it no longer holds them all: a
//! new minimum above the lowest such id or a new maximum below the highest (409).
//!
//! Range writes lock the default range before the overlap check, so the checks of several
//! servers on one PostgreSQL database run one after the other.
//!
//! Only the types this server allocates (`vxlan`, `vlan`) take ranges; `gre` and `geneve`
//! are refused as upstream refuses types its type drivers lack (400). VLAN ranges are kept
//! and checked, but tenant networks are VXLAN, so they do not steer any allocation.

use std::collections::{BTreeMap, HashMap};

use async_trait::async_trait;
use neutrino_store::{Record, Selector, Tx};
use neutrino_types::segment_ranges::{self as spec, check_range};
use neutrino_types::{ApiError, ApiResult};
use serde_json::{json, Value};

use super::kind::{apply_changes, Kind};
use super::networks::{seg_key, seg_scope};
use super::view::Need;
use super::{s, Collection, Doc, View};
use crate::{db, new_id, now, App, Context};

/// The storage kind.
pub(super) const KIND: &str = "network_segment_range";

/// The most free ids `available` lists (a default VXLAN range spans millions).
pub const AVAILABLE_SHOWN: usize = 65_536;

/// `/v2.0/network_segment_ranges`.
pub(super) static COLLECTION: Collection = Collection::new(
    "network_segment_ranges",
    KIND,
    spec::NETWORK_SEGMENT_RANGE,
    &SegmentRanges,
)
.filters(&["project_id", "tenant_id"]);

/// Network segment ranges.
struct SegmentRanges;

/// The network types whose ranges this server keeps.
const SUPPORTED: &[&str] = &["vxlan", "vlan"];

/// Neutron's `NetworkSegmentRangeDefaultReadOnly`.
fn default_read_only(id: &str) -> ApiError {
    ApiError::bad(
        "NetworkSegmentRangeDefaultReadOnly",
        format!("Network Segment Range {id} is a default segment range which could not be updated or deleted."),
    )
}

/// Neutron's `NetworkSegmentRangeReferencedByProject`.
fn referenced(id: &str) -> ApiError {
    ApiError::conflict(
        "NetworkSegmentRangeReferencedByProject",
        format!("Network Segment Range {id} is referenced by one or more tenant networks."),
    )
}

/// The number in a range document.
fn num(doc: &Value, key: &str) -> u32 {
    doc.get(key).and_then(Value::as_u64).unwrap_or(0) as u32
}

/// The claim scope of a range's segments.
fn range_scope(doc: &Value) -> String {
    let physnet = doc
        .get("physical_network")
        .and_then(Value::as_str)
        .filter(|p| !p.is_empty());
    seg_scope(s(doc, "network_type"), physnet)
}

/// `(segmentation id, network id)` of the networks holding ids in `[lo, hi]` of `scope`.
async fn held(tx: &mut Tx, scope: &str, lo: u32, hi: u32) -> ApiResult<Vec<(u32, String)>> {
    let ranges = [(seg_key(lo), seg_key(hi.saturating_add(1)))];
    let mut out: Vec<(u32, String)> = tx
        .claims_in_ranges(scope, &ranges)
        .await
        .map_err(db)?
        .into_iter()
        .filter_map(|(key, owner)| key.parse().ok().map(|k| (k, owner)))
        .collect();
    if hi == u32::MAX {
        // `seg_key(hi + 1)` saturated: the top id itself.
        if let Some(owner) = tx.claim_owner(scope, &seg_key(hi)).await.map_err(db)? {
            out.push((hi, owner));
        }
    }
    Ok(out)
}

/// All ranges.
async fn all_ranges(tx: &mut Tx) -> ApiResult<Vec<Record>> {
    tx.list(KIND, &Selector::default()).await.map_err(db)
}

/// Refuses a range overlapping another non-default one of its type and physical network.
/// Locks the default ranges first, so that concurrent range writes of several servers
/// (PostgreSQL) check one after the other.
async fn check_overlap(tx: &mut Tx, id: &str, doc: &Value) -> ApiResult<()> {
    let (lo, hi) = (num(doc, "minimum"), num(doc, "maximum"));
    let scope = range_scope(doc);
    for default in all_ranges(tx)
        .await?
        .iter()
        .filter(|r| r.body["default"] == true)
    {
        tx.lock(KIND, &default.id).await.map_err(db)?;
    }
    let overlapping: Vec<String> = all_ranges(tx)
        .await?
        .into_iter()
        .filter(|r| r.id != id && r.body["default"] != true && range_scope(&r.body) == scope)
        .filter(|r| lo <= num(&r.body, "maximum") && hi >= num(&r.body, "minimum"))
        .map(|r| r.id)
        .collect();
    if overlapping.is_empty() {
        return Ok(());
    }
    Err(ApiError::conflict(
        "NetworkSegmentRangeOverlaps",
        format!(
            "Network segment range overlaps with range(s) with id {}",
            overlapping.join(", ")
        ),
    ))
}

impl App {
    /// Makes the default VXLAN range match `--vni-range` (once per server start).
    pub(crate) async fn ensure_default_segment_ranges(&self) -> ApiResult<()> {
        let (lo, hi) = self.config().vni_range;
        let mut tx = self.write().await?;
        let defaults: Vec<Record> = all_ranges(&mut tx)
            .await?
            .into_iter()
            .filter(|r| r.body["default"] == true && s(&r.body, "network_type") == "vxlan")
            .collect();
        if let Some(mut rec) = defaults.into_iter().next() {
            if num(&rec.body, "minimum") != lo || num(&rec.body, "maximum") != hi {
                rec.body["minimum"] = json!(lo);
                rec.body["maximum"] = json!(hi);
                super::bump(&mut rec.body);
                tx.update(KIND, &rec.id, &rec.body).await.map_err(db)?;
            }
        } else if tx
            .claim("segment-range:default", "vxlan", "vxlan")
            .await
            .map_err(db)?
        {
            let id = new_id();
            let t = now();
            let body = json!({"id": id, "name": "", "description": "", "default": true,
                "shared": true, "project_id": null, "tenant_id": null, "network_type": "vxlan",
                "physical_network": null, "minimum": lo, "maximum": hi, "tags": [],
                "created_at": t, "updated_at": t, "revision_number": 1});
            tx.insert(&Record {
                kind: KIND.to_string(),
                id,
                project_id: String::new(),
                parent_id: None,
                body,
            })
            .await
            .map_err(db)?;
        }
        tx.commit().await.map_err(db)
    }

    /// A free VXLAN id for a tenant network `network` of `project`, claimed: from the
    /// project's own ranges first, then from the shared ranges outside any project's range;
    /// `None` when there are no ranges at all (the configured range then applies).
    pub(super) async fn allocate_tenant_vni(
        &self,
        tx: &mut Tx,
        scope: &str,
        project: &str,
        network: &str,
    ) -> ApiResult<Option<u32>> {
        let ranges: Vec<Record> = all_ranges(tx)
            .await?
            .into_iter()
            .filter(|r| s(&r.body, "network_type") == "vxlan")
            .collect();
        if ranges.is_empty() {
            return Ok(None);
        }
        let span = |r: &Record| (num(&r.body, "minimum"), num(&r.body, "maximum"));
        let private: Vec<&Record> = ranges.iter().filter(|r| r.body["shared"] != true).collect();
        let mut own: Vec<(u32, u32)> = private
            .iter()
            .filter(|r| s(&r.body, "project_id") == project)
            .map(|r| span(r))
            .collect();
        own.sort_unstable();
        let mut reserved: Vec<(u32, u32)> = private.iter().map(|r| span(r)).collect();
        reserved.sort_unstable();
        let mut shared: Vec<(u32, u32)> = Vec::new();
        for r in ranges.iter().filter(|r| r.body["shared"] == true) {
            shared.extend(subtract(span(r), &reserved));
        }
        shared.sort_unstable();
        for (lo, hi) in own.into_iter().chain(shared) {
            if let Some(id) = self
                .try_allocate_segment(tx, scope, lo, hi, network)
                .await?
            {
                return Ok(Some(id));
            }
        }
        Err(super::networks::no_network_available())
    }
}

/// `[lo, hi]` without the (sorted) intervals `cut`.
fn subtract((lo, hi): (u32, u32), cut: &[(u32, u32)]) -> Vec<(u32, u32)> {
    let mut out = Vec::new();
    let mut next = u64::from(lo);
    for &(a, b) in cut {
        if u64::from(b) < next || a > hi {
            continue;
        }
        if u64::from(a) > next {
            out.push((next as u32, a - 1));
        }
        next = next.max(u64::from(b) + 1);
    }
    if next <= u64::from(hi) {
        out.push((next as u32, hi));
    }
    out
}

#[async_trait]
impl Kind for SegmentRanges {
    async fn load_view(
        &self,
        tx: &mut Tx,
        records: &[Record],
        view: &mut View,
        _need: Need,
    ) -> ApiResult<()> {
        let mut holders: Vec<(String, Vec<(u32, String)>)> = Vec::new();
        let mut networks: Vec<String> = Vec::new();
        for r in records {
            let (lo, hi) = (num(&r.body, "minimum"), num(&r.body, "maximum"));
            let ids = held(tx, &range_scope(&r.body), lo, hi).await?;
            networks.extend(ids.iter().map(|(_, n)| n.clone()));
            holders.push((r.id.clone(), ids));
        }
        let projects: HashMap<String, String> = if networks.is_empty() {
            HashMap::new()
        } else {
            let sel = Selector {
                ids: Some(networks),
                ..Default::default()
            };
            tx.list("network", &sel)
                .await
                .map_err(db)?
                .into_iter()
                .map(|n| (n.id, n.project_id))
                .collect()
        };
        for (r, (id, ids)) in records.iter().zip(holders) {
            let (lo, hi) = (num(&r.body, "minimum"), num(&r.body, "maximum"));
            let used: BTreeMap<u32, &str> = ids
                .iter()
                .map(|(k, n)| (*k, projects.get(n).map_or("", String::as_str)))
                .collect();
            let available: Vec<u32> = (lo..=hi)
                .filter(|k| !used.contains_key(k))
                .take(AVAILABLE_SHOWN)
                .collect();
            let used: serde_json::Map<String, Value> = used
                .into_iter()
                .map(|(k, p)| (k.to_string(), json!(p)))
                .collect();
            let mut doc = Doc::new();
            doc.insert("used".into(), Value::Object(used));
            doc.insert("available".into(), json!(available));
            view.computed.insert(id, doc);
        }
        Ok(())
    }

    fn render(&self, view: &View, _ctx: &Context, rec: &Record, doc: &mut Doc) {
        // Upstream's range objects show no `tenant_id`.
        doc.remove("tenant_id");
        if let Some(extra) = view.computed.get(&rec.id) {
            for (k, v) in extra {
                doc.insert(k.clone(), v.clone());
            }
        }
    }

    fn check_request(&self, body: &Doc) -> ApiResult<()> {
        if let Some(t) = body.get("network_type").and_then(Value::as_str) {
            if !SUPPORTED.contains(&t) {
                return Err(ApiError::bad(
                    "NetworkSegmentRangeNetTypeNotSupported",
                    format!("Network type {t} does not support network segment ranges."),
                ));
            }
        }
        Ok(())
    }

    fn allows_no_project(&self) -> bool {
        true
    }

    fn stored_project(&self, body: &Doc, _project: String) -> String {
        // A shared range has no project: listings filtered by one leave it out.
        s(&json!(body), "project_id").to_string()
    }

    fn not_found(&self, _parent: Option<&str>, id: &str) -> Option<ApiError> {
        Some(ApiError::new(
            404,
            "NetworkSegmentRangeNotFound",
            format!("Network Segment Range {id} could not be found."),
        ))
    }

    async fn create(
        &self,
        _app: &App,
        tx: &mut Tx,
        _ctx: &Context,
        body: &mut Doc,
    ) -> ApiResult<Option<String>> {
        let shared = body.get("shared").and_then(Value::as_bool).unwrap_or(true);
        body.insert("shared".into(), json!(shared));
        body.insert("default".into(), json!(false));
        if shared {
            body.insert("project_id".into(), Value::Null);
            body.insert("tenant_id".into(), Value::Null);
        } else if s(&json!(body), "project_id").is_empty() {
            return Err(ApiError::bad_request(
                "A network segment range that is not shared must have a project_id",
            ));
        }
        let network_type = s(&json!(body), "network_type").to_string();
        if network_type == "vlan" {
            if s(&json!(body), "physical_network").is_empty() {
                return Err(ApiError::bad_request(
                    "Network type vlan requires 'physical_network' to be specified while creating new range",
                ));
            }
        } else {
            body.insert("physical_network".into(), Value::Null);
        }
        check_range(body)?;
        let id = s(&json!(body), "id").to_string();
        check_overlap(tx, &id, &json!(body)).await?;
        Ok(None)
    }

    async fn update(
        &self,
        _app: &App,
        tx: &mut Tx,
        _ctx: &Context,
        rec: &mut Record,
        changes: Doc,
    ) -> ApiResult<()> {
        super::relock(tx, rec).await?;
        if rec.body["default"] == true {
            return Err(default_read_only(&rec.id));
        }
        let mut doc = rec.body.as_object().cloned().unwrap_or_default();
        for (k, v) in &changes {
            doc.insert(k.clone(), v.clone());
        }
        let (lo, hi) = (num(&rec.body, "minimum"), num(&rec.body, "maximum"));
        let ids = held(tx, &range_scope(&rec.body), lo, hi).await?;
        if let (Some(low), Some(high)) = (
            ids.iter().map(|(k, _)| *k).min(),
            ids.iter().map(|(k, _)| *k).max(),
        ) {
            let new_lo = doc.get("minimum").and_then(Value::as_u64).unwrap_or(0);
            let new_hi = doc.get("maximum").and_then(Value::as_u64).unwrap_or(0);
            if new_lo > u64::from(low) || new_hi < u64::from(high) {
                return Err(referenced(&rec.id));
            }
        }
        check_range(&doc)?;
        check_overlap(tx, &rec.id, &Value::Object(doc)).await?;
        apply_changes(rec, changes);
        Ok(())
    }

    async fn delete(
        &self,
        _app: &App,
        tx: &mut Tx,
        _ctx: &Context,
        rec: &Record,
        _view: &View,
    ) -> ApiResult<()> {
        if rec.body["default"] == true {
            return Err(default_read_only(&rec.id));
        }
        let (lo, hi) = (num(&rec.body, "minimum"), num(&rec.body, "maximum"));
        if !held(tx, &range_scope(&rec.body), lo, hi).await?.is_empty() {
            return Err(referenced(&rec.id));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::subtract;

    #[test]
    fn shared_minus_project_ranges() {
        assert_eq!(subtract((1, 100), &[]), vec![(1, 100)]);
        assert_eq!(
            subtract((1, 100), &[(10, 20), (15, 30), (90, 200)]),
            vec![(1, 9), (31, 89)]
        );
        assert_eq!(subtract((5, 6), &[(1, 10)]), vec![]);
        assert_eq!(
            subtract((1, u32::MAX), &[(u32::MAX, u32::MAX)]),
            vec![(1, u32::MAX - 1)]
        );
    }
}
