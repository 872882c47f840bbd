//! Trunks (extensions `trunk`, `trunk-details`): a parent port carries subports, each told
//! apart on the wire by a segmentation (a VLAN id). A port is in at most one trunk, as parent
//! or subport (claim `trunkport`, key = port, owner = trunk), and a segmentation is used once
//! per trunk (claim `trunkseg:<trunk>`, owner = trunk), so concurrent servers cannot hand out
//! either twice. Checks, their order and exception names follow Neutron's trunk plugin. A
//! subport gets device owner `trunk:subport`, the parent's binding host and, in its binding
//! profile, `parent_name` and `tag`. The status is `DOWN` (set again by every subport change,
//! and when the parent becomes unbound) until the agent of the parent's host reports the
//! wiring (`PUT /neutrino/v1/trunk-status`, [`App::report_trunk_status`]).

use neutrino_store::{Record, Selector, Tx};
use neutrino_types::attrs::is_uuid;
use neutrino_types::{ApiError, ApiResult};
use serde_json::{json, Value};

use super::owners::SUBPORT_OWNER;
use super::ports::rebind;
use async_trait::async_trait;
use neutrino_types::resources as spec;

use super::kind::Kind;
use super::{bump, relock, s, Collection, Doc, View};
use crate::{db, App, Context};

/// `/v2.0/trunks`.
pub(super) static COLLECTION: Collection = Collection::new("trunks", "trunk", spec::TRUNK, &Trunks);

/// Trunks: a parent port and subports added and removed through actions.
struct Trunks;

#[async_trait]
impl Kind for Trunks {
    async fn create(
        &self,
        app: &App,
        tx: &mut Tx,
        ctx: &Context,
        body: &mut Doc,
    ) -> ApiResult<Option<String>> {
        app.create_trunk(tx, ctx, body).await
    }

    async fn delete(
        &self,
        app: &App,
        tx: &mut Tx,
        _ctx: &Context,
        rec: &Record,
        _view: &View,
    ) -> ApiResult<()> {
        app.delete_trunk(tx, rec).await
    }

    fn actions(&self) -> &'static [&'static str] {
        &["add_subports", "remove_subports"]
    }

    async fn action(
        &self,
        app: &App,
        tx: &mut Tx,
        ctx: &Context,
        rec: &mut Record,
        action: &str,
        body: Value,
    ) -> ApiResult<Value> {
        app.trunk_action(tx, ctx, rec, action, body).await?;
        Ok(Value::Object(app.render(
            &View::default(),
            ctx,
            &COLLECTION,
            rec,
        )))
    }

    async fn get_action(
        &self,
        app: &App,
        ctx: &Context,
        id: &str,
        action: &str,
    ) -> ApiResult<Value> {
        if action != "get_subports" {
            return Err(ApiError::no_such_url());
        }
        let trunk = app.show(ctx, &COLLECTION, id, &[]).await?;
        Ok(json!({"sub_ports": trunk.get("sub_ports").cloned().unwrap_or(json!([]))}))
    }
}

const PORT_SCOPE: &str = "trunkport";
const DOWN: &str = "DOWN";
const VLAN_IDS: std::ops::RangeInclusive<i64> = 1..=4094;

fn seg_scope(trunk: &str) -> String {
    format!("trunkseg:{trunk}")
}

fn seg_key(kind: &str, id: i64) -> String {
    format!("{kind}:{id:010}")
}

/// A subport as stored and shown.
#[derive(Clone, Debug, PartialEq)]
struct SubPort {
    port_id: String,
    segmentation_type: String,
    segmentation_id: i64,
}

impl SubPort {
    fn to_json(&self) -> Value {
        json!({"port_id": self.port_id, "segmentation_type": self.segmentation_type,
               "segmentation_id": self.segmentation_id})
    }

    fn from_json(v: &Value) -> SubPort {
        SubPort {
            port_id: s(v, "port_id").to_string(),
            segmentation_type: s(v, "segmentation_type").to_string(),
            segmentation_id: v["segmentation_id"].as_i64().unwrap_or_default(),
        }
    }
}

fn subports_of(trunk: &Value) -> Vec<SubPort> {
    trunk["sub_ports"]
        .as_array()
        .map(|l| l.iter().map(SubPort::from_json).collect())
        .unwrap_or_default()
}

fn show(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Neutron's `validate_subports`: the shape of a subport list (a list of dicts with unique,
/// valid port ids; segmentation type and id both given, or neither, unless `inherit`; no
/// segmentation twice). Returns the message Neutron gives.
fn validate_subports(v: &Value) -> Result<Vec<Doc>, String> {
    let list = v.as_array().ok_or_else(|| {
        format!(
            "Invalid data format for subports: '{}' is not a list",
            show(v)
        )
    })?;
    let mut out: Vec<Doc> = Vec::with_capacity(list.len());
    let mut segmentations: Vec<(String, String)> = Vec::new();
    for item in list {
        let sub = item.as_object().ok_or_else(|| {
            format!(
                "Invalid data format for subport: '{}' is not a dict",
                show(item)
            )
        })?;
        let port = sub
            .get("port_id")
            .ok_or_else(|| "A valid port UUID must be specified".to_string())?;
        let port = port
            .as_str()
            .filter(|p| is_uuid(p))
            .ok_or_else(|| format!("Invalid UUID for subport: '{}'", show(port)))?;
        if out.iter().any(|o| o["port_id"] == port) {
            return Err(format!("Non unique UUID for subport: '{port}'"));
        }
        out.push(sub.clone());
        let kind = sub.get("segmentation_type").filter(|t| !t.is_null());
        if kind.and_then(Value::as_str) == Some("inherit") {
            continue;
        }
        let id = sub.get("segmentation_id").filter(|i| !i.is_null());
        let empty_kind = kind.is_none_or(|k| k == "");
        if (empty_kind || id.is_none()) && sub.len() > 1 {
            return Err(format!("Invalid subport details '{}': missing segmentation information. Must specify both segmentation_id and segmentation_type", show(item)));
        }
        if let Some(id) = id {
            let pair = (kind.map(show).unwrap_or_default(), show(id));
            if segmentations.contains(&pair) {
                return Err(format!(
                    "Segmentation ID '{}' for '{port}' is not unique",
                    pair.1
                ));
            }
            segmentations.push(pair);
        }
    }
    Ok(out)
}

/// The requested subports of an action body (`{"sub_ports": [...]}`), shape-checked.
fn action_subports(body: &Value) -> ApiResult<Vec<Doc>> {
    let list = body.get("sub_ports").unwrap_or(&Value::Null);
    validate_subports(list).map_err(ApiError::invalid_input)
}

fn parent_port_in_use(port: &str) -> ApiError {
    ApiError::conflict(
        "ParentPortInUse",
        format!("Port {port} is currently in use and is not eligible for use as a parent port."),
    )
}

fn trunk_port_in_use(port: &str) -> ApiError {
    ApiError::conflict(
        "TrunkPortInUse",
        format!("Port {port} is in use by another trunk."),
    )
}

fn disabled(trunk: &str) -> ApiError {
    ApiError::conflict(
        "TrunkDisabled",
        format!("Trunk {trunk} is currently disabled."),
    )
}

/// `TrunkDisabled` unless the trunk is administratively up.
fn check_manageable(trunk: &Record) -> ApiResult<()> {
    if trunk.body["admin_state_up"] == false {
        return Err(disabled(&trunk.id));
    }
    Ok(())
}

impl App {
    /// A port the caller may see (its own, one on its network, or any for an admin).
    pub(super) async fn visible_port(
        &self,
        tx: &mut Tx,
        ctx: &Context,
        id: &str,
    ) -> ApiResult<Option<Record>> {
        let found = tx.get("port", id).await.map_err(db)?;
        let view = View::check(tx, &super::ports::COLLECTION, found.as_slice()).await?;
        Ok(match found {
            Some(p) if self.visible(&view, ctx, &super::ports::COLLECTION, &p) => Some(p),
            _ => None,
        })
    }

    /// The trunk `port` belongs to, and whether it is that trunk's parent.
    async fn trunk_of(&self, tx: &mut Tx, port: &str) -> ApiResult<Option<(String, bool)>> {
        let Some(trunk) = tx.claim_owner(PORT_SCOPE, port).await.map_err(db)? else {
            return Ok(None);
        };
        let parent = tx
            .get("trunk", &trunk)
            .await
            .map_err(db)?
            .and_then(|t| t.parent_id);
        let is_parent = parent.as_deref() == Some(port);
        Ok(Some((trunk, is_parent)))
    }

    /// `TrunkPortInUse` / `ParentPortInUse` when `port` already belongs to a trunk.
    async fn check_not_trunked(&self, tx: &mut Tx, port: &str) -> ApiResult<()> {
        match self.trunk_of(tx, port).await? {
            None => Ok(()),
            Some((_, true)) => Err(parent_port_in_use(port)),
            Some((_, false)) => Err(trunk_port_in_use(port)),
        }
    }

    /// Refuses to delete a port that is a trunk's parent or subport.
    pub(super) async fn check_port_untrunked(&self, tx: &mut Tx, port: &str) -> ApiResult<()> {
        match self.trunk_of(tx, port).await? {
            None => Ok(()),
            Some((trunk, true)) => Err(ApiError::conflict(
                "PortInUseAsTrunkParent",
                format!("Port {port} is currently a parent port for trunk {trunk}."),
            )),
            Some((trunk, false)) => Err(ApiError::conflict(
                "PortInUseAsSubPort",
                format!("Port {port} is currently a subport for trunk {trunk}."),
            )),
        }
    }

    /// The MTU of a port's network.
    async fn port_mtu(&self, tx: &mut Tx, port: &Record) -> ApiResult<Option<i64>> {
        let net = port.parent_id.as_deref().unwrap_or_default();
        Ok(tx
            .get("network", net)
            .await
            .map_err(db)?
            .and_then(|n| n.body["mtu"].as_i64()))
    }

    /// Neutron's `SubPortsValidator`: resolves `inherit` from the subport's network, then
    /// checks each subport (not the parent, MTU not above the parent's, a valid VLAN, in no
    /// trunk yet, visible, not used by a device).
    async fn check_subports(
        &self,
        tx: &mut Tx,
        ctx: &Context,
        parent: &Record,
        requested: Vec<Doc>,
    ) -> ApiResult<Vec<SubPort>> {
        let parent_mtu = self.port_mtu(tx, parent).await?;
        // Each request with its port (if visible), that port's network MTU and, for
        // `inherit`, the network it inherited from.
        type Found = (Doc, Option<Record>, Option<i64>, Option<Record>);
        let mut found: Vec<Found> = Vec::new();
        for mut sub in requested {
            let port = self
                .visible_port(tx, ctx, s(&json!(sub), "port_id"))
                .await?;
            let mut mtu = None;
            let mut inherited = None;
            if let Some(p) = &port {
                let net_id = p.parent_id.as_deref().unwrap_or_default();
                if let Some(net) = tx.get("network", net_id).await.map_err(db)? {
                    mtu = net.body["mtu"].as_i64();
                    if sub.get("segmentation_type").and_then(Value::as_str) == Some("inherit") {
                        sub.insert(
                            "segmentation_type".into(),
                            net.body["provider:network_type"].clone(),
                        );
                        sub.insert(
                            "segmentation_id".into(),
                            net.body["provider:segmentation_id"].clone(),
                        );
                        inherited = Some(net);
                    }
                }
            }
            found.push((sub, port, mtu, inherited));
        }
        let mut out = Vec::with_capacity(found.len());
        for (sub, port, mtu, inherited) in found {
            let port_id = s(&json!(sub), "port_id").to_string();
            if port_id == parent.id {
                return Err(parent_port_in_use(&port_id));
            }
            if let (Some(p), Some(m)) = (parent_mtu, mtu) {
                if m > p {
                    return Err(ApiError::conflict(
                        "SubPortMtuGreaterThanTrunkPortMtu",
                        format!("MTU {m} of subport {port_id} cannot be greater than MTU {p} of trunk {}.", parent.id),
                    ));
                }
            }
            if let Some(net) = inherited.filter(|n| n.body["provider:network_type"] != "vlan") {
                // Upstream answers "Unknown segmentation_type 'vxlan'", which reads as if the
                // request had said vxlan: name the network and what `inherit` needs instead.
                let net_type = show(&net.body["provider:network_type"]);
                return Err(ApiError::invalid_input(format!(
                    "Subport {port_id} cannot inherit a segmentation: its network {} is a \
                     {net_type} network, and segmentation_type 'inherit' needs a VLAN network",
                    net.id
                )));
            }
            let (Some(kind), Some(raw_id)) = (
                sub.get("segmentation_type").filter(|v| !v.is_null()),
                sub.get("segmentation_id").filter(|v| !v.is_null()),
            ) else {
                return Err(ApiError::invalid_input(format!("Invalid subport details '{}': missing segmentation information. Must specify both segmentation_id and segmentation_type", json!(sub))));
            };
            let id = raw_id
                .as_i64()
                .or_else(|| raw_id.as_str().and_then(|t| t.trim().parse().ok()))
                .ok_or_else(|| {
                    ApiError::invalid_input(format!(
                        "Invalid subport details: segmentation_id '{}' is not an integer",
                        show(raw_id)
                    ))
                })?;
            if kind != "vlan" {
                return Err(ApiError::invalid_input(format!(
                    "Unknown segmentation_type '{}'",
                    show(kind)
                )));
            }
            if !VLAN_IDS.contains(&id) {
                return Err(ApiError::invalid_input(format!(
                    "Segmentation ID '{id}' is not in range"
                )));
            }
            self.check_not_trunked(tx, &port_id).await?;
            let Some(port) = port else {
                return Err(ApiError::not_found("port", &port_id));
            };
            let device = s(&port.body, "device_id");
            if !device.is_empty() {
                return Err(ApiError::conflict(
                    "PortInUse",
                    format!("Unable to complete operation on port {port_id} for network {}. Port already has an attached device {device}.", port.parent_id.as_deref().unwrap_or_default()),
                ));
            }
            out.push(SubPort {
                port_id,
                segmentation_type: "vlan".into(),
                segmentation_id: id,
            });
        }
        Ok(out)
    }

    /// Claims the subports' ports and segmentations for `trunk` and marks the ports as
    /// subports of `parent`.
    async fn attach_subports(
        &self,
        tx: &mut Tx,
        trunk: &str,
        parent: &Record,
        subports: &[SubPort],
    ) -> ApiResult<()> {
        for sub in subports {
            if !tx
                .claim(PORT_SCOPE, &sub.port_id, trunk)
                .await
                .map_err(db)?
            {
                return Err(trunk_port_in_use(&sub.port_id));
            }
            let key = seg_key(&sub.segmentation_type, sub.segmentation_id);
            if !tx.claim(&seg_scope(trunk), &key, trunk).await.map_err(db)? {
                return Err(ApiError::conflict(
                    "DuplicateSubPort",
                    format!(
                        "segmentation_type {} and segmentation_id {} already in use on trunk {trunk}.",
                        sub.segmentation_type, sub.segmentation_id
                    ),
                ));
            }
            let host = s(&parent.body, "binding:host_id").to_string();
            self.edit_port(tx, &sub.port_id, |port| {
                port["device_owner"] = json!(SUBPORT_OWNER);
                if !host.is_empty() {
                    rebind(port, &host);
                }
                let mut profile = port["binding:profile"]
                    .as_object()
                    .cloned()
                    .unwrap_or_default();
                profile.insert("parent_name".into(), json!(parent.id));
                profile.insert("tag".into(), json!(sub.segmentation_id));
                port["binding:profile"] = Value::Object(profile);
            })
            .await?;
        }
        Ok(())
    }

    /// Releases a subport's claims and gives its port back its plain form.
    async fn detach_subport(&self, tx: &mut Tx, trunk: &str, sub: &SubPort) -> ApiResult<()> {
        tx.release(PORT_SCOPE, &sub.port_id).await.map_err(db)?;
        tx.release(
            &seg_scope(trunk),
            &seg_key(&sub.segmentation_type, sub.segmentation_id),
        )
        .await
        .map_err(db)?;
        self.edit_port(tx, &sub.port_id, |port| {
            if port["device_owner"] == SUBPORT_OWNER {
                port["device_owner"] = json!("");
                rebind(port, "");
            }
            if let Some(profile) = port["binding:profile"].as_object_mut() {
                profile.remove("parent_name");
                profile.remove("tag");
            }
        })
        .await
    }

    /// Changes a port under its row lock, with a new revision (nothing if it is gone).
    async fn edit_port(
        &self,
        tx: &mut Tx,
        id: &str,
        edit: impl FnOnce(&mut Value),
    ) -> ApiResult<()> {
        let Some(mut port) = tx.get("port", id).await.map_err(db)? else {
            return Ok(());
        };
        relock(tx, &mut port).await?;
        edit(&mut port.body);
        bump(&mut port.body);
        tx.update("port", id, &port.body).await.map_err(db)?;
        Ok(())
    }

    pub(super) async fn create_trunk(
        &self,
        tx: &mut Tx,
        ctx: &Context,
        body: &mut Doc,
    ) -> ApiResult<Option<String>> {
        let requested =
            validate_subports(body.get("sub_ports").unwrap_or(&json!([]))).map_err(|m| {
                ApiError::bad_request(format!("Invalid input for sub_ports. Reason: {m}."))
            })?;
        let id = s(&json!(body), "id").to_string();
        let parent_id = s(&json!(body), "port_id").to_string();
        self.check_not_trunked(tx, &parent_id).await?;
        // A bound parent is accepted: the Linux dataplane can trunk a port in use.
        let parent = self
            .visible_port(tx, ctx, &parent_id)
            .await?
            .ok_or_else(|| ApiError::not_found("port", &parent_id))?;
        let subports = self.check_subports(tx, ctx, &parent, requested).await?;
        if !tx.claim(PORT_SCOPE, &parent_id, &id).await.map_err(db)? {
            return Err(parent_port_in_use(&parent_id));
        }
        self.attach_subports(tx, &id, &parent, &subports).await?;
        body.insert("status".into(), json!(DOWN));
        body.insert(
            "sub_ports".into(),
            json!(subports.iter().map(SubPort::to_json).collect::<Vec<_>>()),
        );
        Ok(Some(parent_id))
    }

    pub(super) async fn delete_trunk(&self, tx: &mut Tx, rec: &Record) -> ApiResult<()> {
        let mut rec = rec.clone();
        relock(tx, &mut rec).await?;
        check_manageable(&rec)?;
        for sub in subports_of(&rec.body) {
            self.detach_subport(tx, &rec.id, &sub).await?;
        }
        tx.release_owned("trunk", &rec.id).await.map_err(db)
    }

    /// `add_subports` / `remove_subports`: all or nothing; the trunk goes `DOWN`.
    pub(super) async fn trunk_action(
        &self,
        tx: &mut Tx,
        ctx: &Context,
        rec: &mut Record,
        action: &str,
        body: Value,
    ) -> ApiResult<()> {
        relock(tx, rec).await?;
        let mut current = subports_of(&rec.body);
        if action == "add_subports" {
            let requested = action_subports(&body)?;
            let parent_id = rec.parent_id.clone().unwrap_or_default();
            let parent = tx
                .get("port", &parent_id)
                .await
                .map_err(db)?
                .ok_or_else(|| ApiError::not_found("port", &parent_id))?;
            let added = self.check_subports(tx, ctx, &parent, requested).await?;
            check_manageable(rec)?;
            if rec.body["status"] == "ERROR" {
                return Err(ApiError::conflict(
                    "TrunkInErrorState",
                    format!("Trunk {} is in error state. Attempt to resolve the error condition before proceeding.", rec.id),
                ));
            }
            self.attach_subports(tx, &rec.id, &parent, &added).await?;
            current.extend(added);
        } else {
            check_manageable(rec)?;
            for sub in action_subports(&body)? {
                let port = s(&json!(sub), "port_id").to_string();
                let Some(pos) = current.iter().position(|c| c.port_id == port) else {
                    return Err(ApiError::new(
                        404,
                        "SubPortNotFound",
                        format!("SubPort {port} on trunk {} could not be found.", rec.id),
                    ));
                };
                let removed = current.remove(pos);
                self.detach_subport(tx, &rec.id, &removed).await?;
            }
        }
        rec.body["sub_ports"] = json!(current.iter().map(SubPort::to_json).collect::<Vec<_>>());
        rec.body["status"] = json!(DOWN);
        bump(&mut rec.body);
        tx.update("trunk", &rec.id, &rec.body).await.map_err(db)?;
        Ok(())
    }

    /// After a parent port's binding host changed, its subports follow it.
    pub(super) async fn subports_follow_parent(&self, tx: &mut Tx, port: &Record) -> ApiResult<()> {
        let Some((trunk, true)) = self.trunk_of(tx, &port.id).await? else {
            return Ok(());
        };
        let Some(trunk) = tx.get("trunk", &trunk).await.map_err(db)? else {
            return Ok(());
        };
        let host = s(&port.body, "binding:host_id").to_string();
        for sub in subports_of(&trunk.body) {
            self.edit_port(tx, &sub.port_id, |p| rebind(p, &host))
                .await?;
        }
        // No agent has an unbound parent: nobody else would say the trunk is down.
        if host.is_empty() && trunk.body["status"] != DOWN {
            let mut trunk = trunk;
            relock(tx, &mut trunk).await?;
            trunk.body["status"] = json!(DOWN);
            bump(&mut trunk.body);
            tx.update("trunk", &trunk.id, &trunk.body)
                .await
                .map_err(db)?;
        }
        Ok(())
    }

    /// The agent of a parent port's host reports its trunks' status:
    /// `{"host": H, "trunks": [{"id", "status"}]}` with Neutron's statuses. Trunks whose
    /// parent is not bound to `host` (or that are gone) are skipped; the caller must be that
    /// host's agent (the port status rule and host check). Returns how many changed.
    pub async fn report_trunk_status(&self, ctx: &Context, body: Value) -> ApiResult<Value> {
        self.check_rule(ctx, "report_port_status", &Default::default())?;
        let host = crate::agents::reporting_host(ctx, &body)?;
        let reports = crate::agents::report_list(&body, "trunks")?;
        let mut wanted = Vec::with_capacity(reports.len());
        for r in reports {
            let id = r.get("id").and_then(Value::as_str).unwrap_or_default();
            let status = r.get("status").and_then(Value::as_str).unwrap_or_default();
            if !is_uuid(id) || !TRUNK_STATUSES.contains(&status) {
                return Err(ApiError::bad_request(format!(
                    "Invalid trunk status report: {r}"
                )));
            }
            wanted.push((id.to_string(), status.to_string()));
        }
        let mut tx = self.write().await?;
        let mut changed = 0;
        for (id, status) in wanted {
            let Some(mut trunk) = tx.get("trunk", &id).await.map_err(db)? else {
                continue;
            };
            let parent = trunk.parent_id.clone().unwrap_or_default();
            let bound_here = tx
                .get("port", &parent)
                .await
                .map_err(db)?
                .is_some_and(|p| p.body["binding:host_id"] == host);
            if !bound_here || trunk.body["status"] == status.as_str() {
                continue;
            }
            relock(&mut tx, &mut trunk).await?;
            trunk.body["status"] = json!(status);
            bump(&mut trunk.body);
            tx.update("trunk", &id, &trunk.body).await.map_err(db)?;
            changed += 1;
        }
        tx.commit().await.map_err(db)?;
        Ok(json!({"updated": changed}))
    }
}

/// The statuses of Neutron's trunk state machine.
const TRUNK_STATUSES: &[&str] = &["ACTIVE", "DOWN", "BUILD", "DEGRADED", "ERROR"];

impl View {
    /// Loads `trunk_details` for the ports among `ports` that are trunk parents: the trunk
    /// and its subports with their MAC addresses.
    pub(super) async fn load_trunk_details(
        &mut self,
        tx: &mut Tx,
        ports: Option<Vec<String>>,
    ) -> ApiResult<()> {
        let sel = Selector {
            parent_ids: ports,
            ..Default::default()
        };
        let trunks = tx.list("trunk", &sel).await.map_err(db)?;
        if trunks.is_empty() {
            return Ok(());
        }
        let sub_ids: Vec<String> = trunks
            .iter()
            .flat_map(|t| subports_of(&t.body))
            .map(|s| s.port_id)
            .collect();
        let mut macs = std::collections::HashMap::new();
        if !sub_ids.is_empty() {
            let sel = Selector {
                ids: Some(sub_ids),
                ..Default::default()
            };
            for p in tx.list("port", &sel).await.map_err(db)? {
                macs.insert(p.id.clone(), p.body["mac_address"].clone());
            }
        }
        for t in trunks {
            let subs: Vec<Value> = subports_of(&t.body)
                .iter()
                .map(|sub| {
                    let mut v = sub.to_json();
                    v["mac_address"] = macs.get(&sub.port_id).cloned().unwrap_or(Value::Null);
                    v
                })
                .collect();
            if let Some(parent) = t.parent_id {
                self.trunk_details
                    .insert(parent, json!({"trunk_id": t.id, "sub_ports": subs}));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const P1: &str = "0b3b8a1c-1d2e-4f50-9a0b-0c1d2e3f4a5b";
    const P2: &str = "1b3b8a1c-1d2e-4f50-9a0b-0c1d2e3f4a5b";

    #[test]
    fn subport_lists_are_shape_checked_like_neutron() {
        let ok = json!([{"port_id": P1, "segmentation_type": "vlan", "segmentation_id": 2},
                        {"port_id": P2}]);
        assert_eq!(validate_subports(&ok).unwrap().len(), 2);
        let cases = [
            (json!({"port_id": P1}), "is not a list"),
            (json!(["x"]), "is not a dict"),
            (
                json!([{"segmentation_id": 3}]),
                "A valid port UUID must be specified",
            ),
            (json!([{"port_id": "nope"}]), "Invalid UUID"),
            (json!([{"port_id": P1}, {"port_id": P1}]), "Non unique UUID"),
            (
                json!([{"port_id": P1, "segmentation_type": "vlan"}]),
                "missing segmentation",
            ),
            (
                json!([{"port_id": P1, "segmentation_id": 3}]),
                "missing segmentation",
            ),
            (
                json!([{"port_id": P1, "segmentation_type": "vlan", "segmentation_id": 2},
                       {"port_id": P2, "segmentation_type": "vlan", "segmentation_id": 2}]),
                "is not unique",
            ),
        ];
        for (input, want) in cases {
            let e = validate_subports(&input).unwrap_err();
            assert!(e.contains(want), "{input}: {e}");
        }
        let inherit = json!([{"port_id": P1, "segmentation_type": "inherit"}]);
        assert!(validate_subports(&inherit).is_ok());
    }
}
