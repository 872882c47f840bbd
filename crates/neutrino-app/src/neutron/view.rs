//! The per-request cache of what checking and rendering records needs beyond the records
//! themselves (RBAC policies, parent networks, rules, trunk and port details). The kinds
//! decide what to load ([`super::kind::Kind::load_view`]); this module holds the loaders.

use std::collections::HashMap;

use neutrino_store::{Record, Selector, Tx};
use neutrino_types::ApiResult;
use serde_json::Value;

use super::{Collection, Doc};
use crate::{db, Context};

/// Above this many ids a loader reads a whole kind instead of naming every id.
const WIDE: usize = 256;

/// What a view is loaded for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Need {
    /// Visibility checks and rendering.
    Check,
    /// Rendering records already known to be visible.
    Render,
    /// Rendering records created by this request.
    Created,
}

/// What rendering and visibility checks need beyond the record itself, loaded once per request.
#[derive(Default)]
pub(crate) struct View {
    /// RBAC policies by object id.
    pub(super) rbac: HashMap<String, Vec<Doc>>,
    /// Networks by id (for subnet/port visibility).
    pub(super) networks: HashMap<String, Record>,
    /// Security group rules by group id.
    pub(super) rules: HashMap<String, Vec<Doc>>,
    /// Projects that have a default security group, mapped to its id.
    pub(super) default_groups: HashMap<String, String>,
    /// Owner project of every security group.
    pub(super) group_owners: HashMap<String, String>,
    /// Subnet ids of each network (rendered as the network's `subnets`).
    pub(super) subnet_ids: HashMap<String, Vec<String>>,
    /// `trunk_details` of the trunk parents among the ports, by port id.
    pub(super) trunk_details: HashMap<String, Value>,
    /// Parent records of nested collections' records (QoS policies of rules), by id.
    pub(super) parents: HashMap<String, Record>,
    /// Child records by parent id (a QoS policy's rules).
    pub(super) children: HashMap<String, Vec<Record>>,
    /// `port_details` of the ports floating IPs are associated with, by port id.
    pub(super) port_details: HashMap<String, Value>,
    /// The availability zones serving each network or router, by id.
    pub(super) zones: HashMap<String, Vec<String>>,
    /// Computed attributes by record id (a network segment range's `used` and `available`).
    pub(super) computed: HashMap<String, Doc>,
}

/// Sorted, deduplicated ids, or `None` (meaning all) when there are too many to name.
pub(super) fn narrow(mut ids: Vec<String>) -> Option<Vec<String>> {
    ids.sort();
    ids.dedup();
    (ids.len() <= WIDE).then_some(ids)
}

/// The ids of `records`.
pub(super) fn own_ids(records: &[Record]) -> Vec<String> {
    records.iter().map(|r| r.id.clone()).collect()
}

/// The parent ids of `records`.
pub(super) fn parent_ids(records: &[Record]) -> Vec<String> {
    records.iter().filter_map(|r| r.parent_id.clone()).collect()
}

impl View {
    /// Loads the parents (kind `kind`) of nested records into [`View::parents`]: a QoS rule's
    /// policy, a port forwarding's floating IP, a conntrack helper's router.
    pub(super) async fn load_parents(
        &mut self,
        tx: &mut Tx,
        kind: &str,
        records: &[Record],
    ) -> ApiResult<()> {
        let sel = Selector {
            ids: narrow(parent_ids(records)),
            ..Default::default()
        };
        for p in tx.list(kind, &sel).await.map_err(db)? {
            self.parents.insert(p.id.clone(), p);
        }
        Ok(())
    }

    /// The loaded parent of a nested record.
    pub(super) fn parent_of(&self, rec: &Record) -> Option<&Record> {
        rec.parent_id.as_deref().and_then(|p| self.parents.get(p))
    }

    /// Loads every RBAC policy: enough to decide the visibility of networks, security
    /// groups, subnet pools and address scopes. (Subnets, ports and rules need
    /// [`View::check`].)
    pub(crate) async fn load(tx: &mut Tx, _resource: &str) -> ApiResult<View> {
        let mut view = View::default();
        view.load_rbac(tx, None).await?;
        Ok(view)
    }

    /// Loads what checking and rendering `records` of `coll` needs.
    pub(crate) async fn check(
        tx: &mut Tx,
        coll: &Collection,
        records: &[Record],
    ) -> ApiResult<View> {
        View::of(tx, coll, records, Need::Check).await
    }

    /// Loads what `need` asks for `records` of `coll`: nothing without records.
    pub(crate) async fn of(
        tx: &mut Tx,
        coll: &Collection,
        records: &[Record],
        need: Need,
    ) -> ApiResult<View> {
        let mut view = View::default();
        if !records.is_empty() {
            if coll.rbac_shared {
                view.load_rbac(tx, narrow(own_ids(records))).await?;
            }
            coll.kind.load_view(tx, records, &mut view, need).await?;
        }
        Ok(view)
    }

    /// Loads the RBAC policies of `objects` (`None`: all of them).
    pub(super) async fn load_rbac(
        &mut self,
        tx: &mut Tx,
        objects: Option<Vec<String>>,
    ) -> ApiResult<()> {
        let sel = Selector {
            parent_ids: objects,
            ..Default::default()
        };
        for p in tx.list("rbac_policy", &sel).await.map_err(db)? {
            let object = p.parent_id.clone().unwrap_or_default();
            if let Value::Object(doc) = p.body {
                self.rbac.entry(object).or_default().push(doc);
            }
        }
        Ok(())
    }

    /// Loads networks by id (`None`: all).
    pub(super) async fn load_networks(
        &mut self,
        tx: &mut Tx,
        ids: Option<Vec<String>>,
    ) -> ApiResult<()> {
        let sel = Selector {
            ids,
            ..Default::default()
        };
        for n in tx.list("network", &sel).await.map_err(db)? {
            self.networks.insert(n.id.clone(), n);
        }
        Ok(())
    }

    /// Loads the subnet ids of networks (`None`: all).
    pub(super) async fn load_subnet_ids(
        &mut self,
        tx: &mut Tx,
        networks: Option<Vec<String>>,
    ) -> ApiResult<()> {
        for (network, subnet) in tx
            .child_ids("subnet", networks.as_deref())
            .await
            .map_err(db)?
        {
            self.subnet_ids.entry(network).or_default().push(subnet);
        }
        Ok(())
    }

    /// Loads the rules of security groups (`None`: all).
    pub(super) async fn load_rules(
        &mut self,
        tx: &mut Tx,
        groups: Option<Vec<String>>,
    ) -> ApiResult<()> {
        let sel = Selector {
            parent_ids: groups,
            ..Default::default()
        };
        for r in tx.list("security_group_rule", &sel).await.map_err(db)? {
            if let Value::Object(doc) = r.body {
                self.rules
                    .entry(r.parent_id.unwrap_or_default())
                    .or_default()
                    .push(doc);
            }
        }
        Ok(())
    }

    /// Loads the owners of security groups (`None`: all) and their projects' default groups.
    pub(super) async fn load_group_owners(
        &mut self,
        tx: &mut Tx,
        groups: Option<Vec<String>>,
    ) -> ApiResult<()> {
        let sel = Selector {
            ids: groups,
            ..Default::default()
        };
        let mut owners = Vec::new();
        for sg in tx.list("security_group", &sel).await.map_err(db)? {
            owners.push(sg.project_id.clone());
            self.group_owners.insert(sg.id, sg.project_id);
        }
        self.load_default_groups(tx, owners).await
    }

    /// Loads which group is the default one of each of `projects`.
    pub(super) async fn load_default_groups(
        &mut self,
        tx: &mut Tx,
        mut projects: Vec<String>,
    ) -> ApiResult<()> {
        projects.sort();
        projects.dedup();
        for project in projects {
            if let Some(id) = tx.claim_owner("default-sg", &project).await.map_err(db)? {
                self.default_groups.insert(project, id);
            }
        }
        Ok(())
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

    /// Whether an RBAC policy with `action` on `object` grants every project.
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
