//! What the kernel has: Neutrino's two tables read from `nft -j -n list table inet neutrino`
//! and `nft -j -n list table bridge neutrino` (chains with their rules' handles and
//! comments, sets and maps with their elements). Everything outside those tables is ignored.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::nft::{Data, DataKind, Elem, Family, Field, Key, SetDef, TABLE};

/// The commands whose JSON output [`ObservedTables::parse`] reads: run each as
/// `nft -j -n COMMAND`; a table that does not exist makes nft fail, which means "absent".
pub const LIST_COMMANDS: [&str; 2] = ["list table inet neutrino", "list table bridge neutrino"];

/// Invalid `nft -j` output.
#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    /// Not JSON.
    #[error("nft output is not JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// JSON, but not what nft prints.
    #[error("unexpected nft JSON: {0}")]
    Format(String),
}

/// A rule of an observed chain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ObservedRule {
    pub handle: u64,
    pub comment: Option<String>,
}

/// An observed table.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct ObservedTable {
    /// Chain name → rules in chain order.
    pub chains: BTreeMap<String, Vec<ObservedRule>>,
    /// Set and map definitions with their elements.
    pub sets: BTreeMap<String, SetDef>,
}

/// Neutrino's tables as the kernel has them. `Default` is "no table".
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ObservedTables {
    pub(crate) tables: BTreeMap<Family, ObservedTable>,
}

impl ObservedTables {
    /// Parse one `nft -j` document; objects of other tables are ignored.
    pub fn parse(json: &str) -> Result<ObservedTables, ParseError> {
        let mut out = ObservedTables::default();
        out.add_json(json)?;
        Ok(out)
    }

    /// Add the objects of another `nft -j` document (e.g. the second table's listing).
    pub fn add_json(&mut self, json: &str) -> Result<(), ParseError> {
        let doc: Value = serde_json::from_str(json)?;
        let items = doc
            .get("nftables")
            .and_then(Value::as_array)
            .ok_or_else(|| ParseError::Format("no \"nftables\" array".into()))?;
        for item in items {
            let Some((kind, obj)) = item.as_object().and_then(|o| o.iter().next()) else {
                continue;
            };
            let family = obj
                .get("family")
                .and_then(Value::as_str)
                .and_then(Family::parse);
            let table = if kind == "table" {
                obj.get("name")
            } else {
                obj.get("table")
            };
            let (Some(family), Some(TABLE)) = (family, table.and_then(Value::as_str)) else {
                continue;
            };
            let t = self.tables.entry(family).or_default();
            let name = || {
                obj.get(if kind == "rule" { "chain" } else { "name" })
                    .and_then(Value::as_str)
                    .map(str::to_string)
                    .ok_or_else(|| ParseError::Format(format!("{kind} without a name")))
            };
            match kind.as_str() {
                "chain" => {
                    t.chains.entry(name()?).or_default();
                }
                "rule" => {
                    let handle = obj
                        .get("handle")
                        .and_then(Value::as_u64)
                        .ok_or_else(|| ParseError::Format("rule without a handle".into()))?;
                    let comment = obj
                        .get("comment")
                        .and_then(Value::as_str)
                        .map(str::to_string);
                    t.chains
                        .entry(name()?)
                        .or_default()
                        .push(ObservedRule { handle, comment });
                }
                "set" | "map" => {
                    let set = parse_set(name()?, obj)?;
                    t.sets.insert(set.name.clone(), set);
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Whether the table of this family exists.
    pub fn has_table(&self, family: Family) -> bool {
        self.tables.contains_key(&family)
    }

    /// The conntrack zone of each bridge, as the kernel has them.
    pub fn zones(&self) -> BTreeMap<String, u16> {
        self.map_elements(Family::Inet, "zones")
            .into_iter()
            .filter_map(|(bridge, d)| match d {
                crate::nft::Data::Zone(z) => Some((bridge, z)),
                _ => None,
            })
            .collect()
    }

    /// Elements of a map: key and data.
    pub(crate) fn map_entries(&self, family: Family, map: &str) -> Vec<(crate::nft::Key, Data)> {
        let Some(set) = self.tables.get(&family).and_then(|t| t.sets.get(map)) else {
            return Vec::new();
        };
        set.elems
            .iter()
            .filter_map(|(k, e)| Some((k.clone(), e.data.clone()?)))
            .collect()
    }

    /// Elements of a map keyed by one name (interface maps).
    pub(crate) fn map_elements(&self, family: Family, map: &str) -> Vec<(String, Data)> {
        self.map_entries(family, map)
            .into_iter()
            .filter_map(|(k, d)| match k.as_slice() {
                [crate::nft::Atom::Name(n)] => Some((n.clone(), d)),
                _ => None,
            })
            .collect()
    }

    /// Sets whose name starts with `prefix`, with their elements.
    pub(crate) fn sets_with_prefix(
        &self,
        family: Family,
        prefix: &str,
    ) -> Vec<(String, BTreeMap<Key, Elem>)> {
        let Some(t) = self.tables.get(&family) else {
            return Vec::new();
        };
        t.sets
            .range(prefix.to_string()..)
            .take_while(|(n, _)| n.starts_with(prefix))
            .map(|(n, s)| (n.clone(), s.elems.clone()))
            .collect()
    }
}

fn parse_set(name: String, obj: &Value) -> Result<SetDef, ParseError> {
    let types: Vec<&str> = match obj.get("type") {
        Some(Value::String(s)) => vec![s.as_str()],
        Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    let fields: Option<Vec<Field>> = types.iter().map(|t| Field::from_decl(t)).collect();
    let data = match obj.get("map").and_then(Value::as_str) {
        None => None,
        Some("mark") => Some(DataKind::Mark),
        Some("verdict") => Some(DataKind::Verdict),
        Some(_) => Some(DataKind::Zone),
    };
    let interval = obj
        .get("flags")
        .and_then(Value::as_array)
        .is_some_and(|f| f.iter().any(|x| x == "interval"));
    let mut set = SetDef {
        data,
        interval,
        ..SetDef::new(name, fields.clone().unwrap_or_default(), interval)
    };
    if fields.is_none() {
        // A set Neutrino never creates: kept without elements so that the plan deletes it.
        return Ok(set);
    }
    for e in obj
        .get("elem")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let (key, elem) = set.parse_element(e).ok_or_else(|| {
            ParseError::Format(format!("element {e} of {} not understood", set.name))
        })?;
        set.elems.insert(key, elem);
    }
    Ok(set)
}
