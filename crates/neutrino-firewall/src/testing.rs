//! Test support: the `nft -j -n` listing the kernel would print after applying
//! `plan(model, previous)`, so pure tests can chain plans without a kernel. Kept rules keep
//! their handles, new objects get handles above every observed one, as nft assigns them.

use serde_json::{json, Value};

use crate::compile::desired;
use crate::model::FirewallModel;
use crate::nft::{Atom, Data, DataKind, Field, SetDef, TableDef, TABLE};
use crate::observe::{ObservedTable, ObservedTables};

/// The listing (both tables, one document) after applying `plan(model, previous)`.
pub fn simulated_listing(model: &FirewallModel, previous: &ObservedTables) -> String {
    let d = desired(model, previous);
    let mut items = vec![json!({"metainfo": {"json_schema_version": 1}})];
    for table in [&d.inet, &d.bridge] {
        items.extend(table_json(table, previous.tables.get(&table.family)));
    }
    json!({ "nftables": items }).to_string()
}

fn table_json(t: &TableDef, old: Option<&ObservedTable>) -> Vec<Value> {
    let family = t.family.as_str();
    let empty = ObservedTable::default();
    let old = old.unwrap_or(&empty);
    let mut next = old
        .chains
        .values()
        .flatten()
        .map(|r| r.handle)
        .max()
        .unwrap_or(0)
        + 1;
    let mut out = vec![json!({"table": {"family": family, "name": TABLE}})];
    for s in &t.sets {
        out.push(set_json(family, s));
    }
    for c in &t.chains {
        out.push(json!({"chain": {"family": family, "table": TABLE, "name": c.name}}));
    }
    for c in &t.chains {
        let mut unclaimed: Vec<_> = old.chains.get(&c.name).cloned().unwrap_or_default();
        for r in &c.rules {
            let comment = r.comment();
            let handle = match unclaimed
                .iter()
                .position(|o| o.comment.as_deref() == Some(comment.as_str()))
            {
                Some(i) => unclaimed.remove(i).handle,
                None => {
                    next += 1;
                    next
                }
            };
            out.push(json!({"rule": {
                "family": family, "table": TABLE, "chain": c.name,
                "handle": handle, "comment": comment, "expr": []
            }}));
        }
    }
    out
}

fn set_json(family: &str, s: &SetDef) -> Value {
    let types: Vec<&str> = s.fields.iter().map(|f| f.decl()).collect();
    let mut obj = json!({
        "family": family, "name": s.name, "table": TABLE,
        "type": if types.len() == 1 { json!(types[0]) } else { json!(types) },
    });
    if s.interval {
        obj["flags"] = json!(["interval"]);
    }
    let elems: Vec<Value> = s
        .elems
        .iter()
        .map(|(k, e)| {
            let atoms: Vec<Value> = k.iter().zip(&s.fields).map(|(a, f)| atom(*f, a)).collect();
            let mut key = if atoms.len() == 1 {
                atoms.into_iter().next().expect("one atom")
            } else {
                json!({ "concat": atoms })
            };
            if let Some(c) = &e.comment {
                key = json!({"elem": {"val": key, "comment": c}});
            }
            match &e.data {
                None => key,
                Some(Data::Mark(m)) => json!([key, m]),
                Some(Data::Zone(z)) => json!([key, z]),
                Some(Data::Goto(c)) => json!([key, {"goto": {"target": c}}]),
            }
        })
        .collect();
    if !elems.is_empty() {
        obj["elem"] = json!(elems);
    }
    match s.data {
        None => json!({ "set": obj }),
        Some(kind) => {
            obj["map"] = json!(match kind {
                DataKind::Mark => "mark",
                DataKind::Zone => "integer",
                DataKind::Verdict => "verdict",
            });
            json!({ "map": obj })
        }
    }
}

fn atom(f: Field, a: &Atom) -> Value {
    let (lo, hi) = match a {
        Atom::Name(n) => return json!(n),
        Atom::Range(lo, hi) => (*lo, *hi),
    };
    let scalar = |v: u128| match f {
        Field::Ipv4 => json!(std::net::Ipv4Addr::from(v as u32).to_string()),
        Field::Ipv6 => json!(std::net::Ipv6Addr::from(v).to_string()),
        Field::Ether => json!(crate::nft::format_mac(v as u64)),
        _ => json!(v as u64),
    };
    if lo == hi {
        return scalar(lo);
    }
    let bits = match f {
        Field::Ipv4 => 32,
        Field::Ipv6 => 128,
        _ => return json!({"range": [scalar(lo), scalar(hi)]}),
    };
    let span = hi - lo;
    if span & span.wrapping_add(1) == 0 && lo & span == 0 {
        let host = 128 - span.leading_zeros();
        return json!({"prefix": {"addr": scalar(lo), "len": bits - host}});
    }
    json!({"range": [scalar(lo), scalar(hi)]})
}

/// `tables` with every rule handle that `before` does not hold replaced by the unknown
/// handle 0: what [`crate::after_apply`] predicts without nft's echo.
pub fn with_unknown_handles(tables: &ObservedTables, before: &ObservedTables) -> ObservedTables {
    let known: std::collections::BTreeSet<u64> = before
        .tables
        .values()
        .flat_map(|t| t.chains.values().flatten().map(|r| r.handle))
        .collect();
    let mut out = tables.clone();
    for table in out.tables.values_mut() {
        for rule in table.chains.values_mut().flatten() {
            if !known.contains(&rule.handle) {
                rule.handle = 0;
            }
        }
    }
    out
}
