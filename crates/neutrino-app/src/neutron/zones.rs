//! Availability zones, as Neutron's agents define them: each host agent says which zone its
//! host is in (`--availability-zone`, default `nova`), and its DHCP and L3 role entries carry
//! it. `GET /v2.0/availability_zones` lists the zones of DHCP agents (resource `network`)
//! and L3 agents (resource `router`), `available` while any of them is administratively up.
//! `availability_zone_hints` of a network or router must name such zones (404
//! `AvailabilityZoneNotFound`), and schedule it only to hosts of those zones; its rendered
//! `availability_zones` are the zones of the hosts serving it (the DHCP host of a network,
//! the active and standby hosts of a router).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use neutrino_store::{Record, Selector, Tx};
use neutrino_types::attrs::{ro, Attr};
use neutrino_types::query;
use neutrino_types::{ApiError, ApiResult};
use serde_json::{json, Value};

use super::owners::DHCP_OWNER;
use super::scopes::{HOST_SCOPE, STANDBY_SCOPE};
use super::{s, Doc, View};
use crate::agents::is_role_entry;
use crate::{db, App, Context};

/// The attributes of an availability zone, for filters and sorting.
const ZONE_SPEC: &[Attr] = &[ro("name"), ro("resource"), ro("state")];

/// The resource a role entry's zone serves: DHCP agents serve networks, L3 agents routers.
fn zone_resource(agent_type: &str) -> Option<&'static str> {
    match agent_type {
        "DHCP agent" => Some("network"),
        "L3 agent" => Some("router"),
        _ => None,
    }
}

/// `(zone, resource)` → whether any agent of it is administratively up.
fn zones_of(agents: &[Record]) -> BTreeMap<(String, &'static str), bool> {
    let mut out = BTreeMap::new();
    for a in agents {
        let (Some(zone), Some(resource)) = (
            a.body["availability_zone"].as_str(),
            zone_resource(s(&a.body, "agent_type")),
        ) else {
            continue;
        };
        let up = a.body["admin_state_up"] != false;
        let entry = out.entry((zone.to_string(), resource)).or_insert(false);
        *entry |= up;
    }
    out
}

/// Host → zone, from the hosts' own agent entries.
fn host_zones(agents: &[Record]) -> HashMap<String, String> {
    agents
        .iter()
        .filter(|a| !is_role_entry(&a.body))
        .filter_map(|a| {
            let zone = a.body["availability_zone"].as_str()?;
            Some((s(&a.body, "host").to_string(), zone.to_string()))
        })
        .collect()
}

/// The names of a document's `availability_zone_hints`.
pub(super) fn hints(doc: &Value) -> Vec<String> {
    doc["availability_zone_hints"]
        .as_array()
        .map(|l| {
            l.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

impl App {
    /// `GET /v2.0/availability_zones`, with filters, sorting, paging and `fields`.
    pub async fn availability_zones(
        &self,
        ctx: &Context,
        pairs: &[(String, String)],
    ) -> ApiResult<Vec<Doc>> {
        self.check_rule(ctx, "get_availability_zone", &Default::default())?;
        let q = query::parse(pairs, ZONE_SPEC, &[])?;
        let mut tx = self.read().await?;
        let agents = tx.list("agent", &Selector::default()).await.map_err(db)?;
        drop(tx);
        let items: Vec<Doc> = zones_of(&agents)
            .into_iter()
            .filter_map(|((name, resource), up)| {
                let state = if up { "available" } else { "unavailable" };
                json!({"name": name, "resource": resource, "state": state})
                    .as_object()
                    .cloned()
            })
            .filter(|d| query::matches(d, &q))
            .collect();
        let fields = q.fields.clone();
        Ok(query::page(items, &q, "availability_zone")?
            .items
            .into_iter()
            .map(|d| query::project(d, &fields))
            .collect())
    }

    /// Refuses hints naming a zone no agent serving `resource` (`network`, `router`) is in.
    pub(super) async fn check_zone_hints(
        &self,
        tx: &mut Tx,
        resource: &str,
        doc: &Value,
    ) -> ApiResult<()> {
        let wanted = hints(doc);
        if wanted.is_empty() {
            return Ok(());
        }
        let agents = tx.list("agent", &Selector::default()).await.map_err(db)?;
        let known = zones_of(&agents);
        for zone in wanted {
            if !known.contains_key(&(zone.clone(), zone_kind(resource))) {
                return Err(ApiError::new(
                    404,
                    "AvailabilityZoneNotFound",
                    format!("AvailabilityZone {zone} could not be found."),
                ));
            }
        }
        Ok(())
    }

    /// The `hosts` in the zones `doc` hints at (all of them without hints).
    pub(super) async fn hosts_in_hinted_zones(
        &self,
        tx: &mut Tx,
        hosts: Vec<String>,
        doc: Option<&Value>,
    ) -> ApiResult<Vec<String>> {
        let wanted = doc.map(hints).unwrap_or_default();
        if wanted.is_empty() {
            return Ok(hosts);
        }
        let agents = tx.list("agent", &Selector::default()).await.map_err(db)?;
        let zones = host_zones(&agents);
        Ok(hosts
            .into_iter()
            .filter(|h| zones.get(h).is_some_and(|z| wanted.contains(z)))
            .collect())
    }
}

/// The resource name of a zone for a collection's resource.
fn zone_kind(resource: &str) -> &'static str {
    if resource == "router" {
        "router"
    } else {
        "network"
    }
}

impl View {
    /// Loads the zones serving `records` (networks: their DHCP ports' hosts; routers: their
    /// active and standby hosts) into `zones`.
    pub(super) async fn load_zones(
        &mut self,
        tx: &mut Tx,
        resource: &str,
        records: &[Record],
    ) -> ApiResult<()> {
        if records.is_empty() {
            return Ok(());
        }
        let agents = tx.list("agent", &Selector::default()).await.map_err(db)?;
        let zones = host_zones(&agents);
        let mut hosts: HashMap<String, BTreeSet<String>> = HashMap::new();
        if resource == "network" {
            let sel = Selector {
                parent_ids: Some(records.iter().map(|r| r.id.clone()).collect()),
                roles: Some(vec![DHCP_OWNER.to_string()]),
                ..Default::default()
            };
            for port in tx.list("port", &sel).await.map_err(db)? {
                let host = s(&port.body, "binding:host_id").to_string();
                if let Some(net) = port.parent_id {
                    hosts.entry(net).or_default().insert(host);
                }
            }
        } else {
            // One query per scope, however many routers: a range per router id.
            let ranges: Vec<(String, String)> = records
                .iter()
                .map(|r| (r.id.clone(), format!("{}\u{1}", r.id)))
                .collect();
            for scope in [HOST_SCOPE, STANDBY_SCOPE] {
                for (router, host) in tx.claims_in_ranges(scope, &ranges).await.map_err(db)? {
                    hosts.entry(router).or_default().insert(host);
                }
            }
        }
        for (id, on) in hosts {
            let names: BTreeSet<String> = on.iter().filter_map(|h| zones.get(h).cloned()).collect();
            self.zones.insert(id, names.into_iter().collect());
        }
        Ok(())
    }

    /// The zones serving record `id`, as loaded by [`View::load_zones`].
    pub(super) fn zones_of(&self, id: &str) -> Value {
        json!(self.zones.get(id).cloned().unwrap_or_default())
    }
}
