//! The steering table as data (desired or observed) and the one nft transaction that turns
//! what is into what should be.
//!
//! Chains are compared by the comments of their rules (`KEY#DIGEST`, the digest covers the
//! rule's text): a chain whose list differs is flushed and refilled inside the transaction,
//! so packets see either the old or the new rules, never a mix. Sets keep the elements the
//! packet path added (flow pins); maps with managed elements are changed element by element.
//! Named counters (what the agent reports and the prober reads) outlive the rewrite of the
//! chains that use them: only a counter no longer wanted is deleted, last.
//! Everything goes into one `nft -f` run: atomic.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;

/// The table's family and name.
pub const TABLE: &str = "netdev neutrino_sfc";

/// A netdev hook of a base chain.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Hook {
    /// Frames a device receives (leaving an instance).
    Ingress(String),
    /// Frames a device sends (toward an instance).
    Egress(String),
}

/// One rule: its text and the comment that identifies it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    /// The statement (empty when observed).
    pub text: String,
    /// `KEY#DIGEST`.
    pub comment: String,
    /// Counter values when observed (`packets`, `bytes`).
    pub counter: Option<(u64, u64)>,
}

impl Rule {
    /// A rule identified by `key`; its digest is computed from the text.
    pub fn new(key: &str, text: impl Into<String>) -> Rule {
        Rule::salted(key, text, "")
    }

    /// A rule whose digest also covers `salt`: what the text names but does not show
    /// (the interface index behind a device name).
    pub fn salted(key: &str, text: impl Into<String>, salt: &str) -> Rule {
        let text = text.into();
        let comment = format!("{key}#{:08x}", digest(&format!("{text}{salt}")));
        Rule {
            text,
            comment,
            counter: None,
        }
    }
}

/// A chain: a base chain (with a hook) or a regular one.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Chain {
    /// The hook of a base chain.
    pub hook: Option<Hook>,
    /// Rules in order.
    pub rules: Vec<Rule>,
}

/// A named set or map.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Set {
    /// `map` or `set`.
    pub map: bool,
    /// Declaration body (`type …; flags …;`); empty when observed.
    pub decl: String,
    /// Elements the planner manages (canonical text); `None`: filled by the packet path.
    pub elements: Option<BTreeSet<String>>,
}

/// The steering table.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Table {
    /// The table exists (observed) / is wanted (desired).
    pub present: bool,
    /// Chains by name.
    pub chains: BTreeMap<String, Chain>,
    /// Sets and maps by name.
    pub sets: BTreeMap<String, Set>,
    /// Named counters.
    pub counters: BTreeSet<String>,
}

/// FNV-1a over the text: stable across runs and builds.
pub fn digest(text: &str) -> u32 {
    text.bytes().fold(0x811c_9dc5_u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

fn comment_list(chain: &Chain) -> Vec<&str> {
    chain.rules.iter().map(|r| r.comment.as_str()).collect()
}

/// The transaction from `have` to `want`: empty when they match.
pub fn plan(want: &Table, have: &Table) -> Plan {
    let mut p = Plan::default();
    if !want.present {
        if have.present {
            p.push(format!("delete table {TABLE}"));
        }
        return p;
    }
    if !have.present {
        p.push(format!("add table {TABLE}"));
    }
    // Counters and sets first (rules name them), removed elements out, new chains declared
    // (rules and verdict map elements may refer to chains declared later), new elements in.
    for name in want.counters.difference(&have.counters) {
        p.push(format!("add counter {TABLE} {name}"));
    }
    let mut additions = Vec::new();
    for (name, set) in &want.sets {
        let kind = if set.map { "map" } else { "set" };
        let old = have.sets.get(name);
        if old.is_none() {
            p.push(format!("add {kind} {TABLE} {name} {{ {} }}", set.decl));
        }
        let Some(want_elems) = &set.elements else {
            continue;
        };
        let empty = BTreeSet::new();
        let have_elems = old.and_then(|s| s.elements.as_ref()).unwrap_or(&empty);
        let gone: Vec<&str> = have_elems
            .difference(want_elems)
            .map(String::as_str)
            .collect();
        let new: Vec<&str> = want_elems
            .difference(have_elems)
            .map(String::as_str)
            .collect();
        for chunk in gone.chunks(500) {
            p.push(format!(
                "delete element {TABLE} {name} {{ {} }}",
                element_keys(set.map, chunk).join(", ")
            ));
        }
        for chunk in new.chunks(500) {
            additions.push(format!(
                "add element {TABLE} {name} {{ {} }}",
                chunk.join(", ")
            ));
        }
    }
    for (name, chain) in &want.chains {
        if !have.chains.contains_key(name) {
            p.push(declare_chain(name, chain));
        }
    }
    for command in additions {
        p.push(command);
    }
    for (name, chain) in &want.chains {
        let old = have.chains.get(name);
        if old.is_some_and(|o| comment_list(o) == comment_list(chain) && o.hook == chain.hook) {
            continue;
        }
        if let Some(o) = old {
            if o.hook != chain.hook {
                // A base chain cannot change its hook: replace it.
                p.push(format!("delete chain {TABLE} {name}"));
                p.push(declare_chain(name, chain));
            } else if !o.rules.is_empty() {
                p.push(format!("flush chain {TABLE} {name}"));
            }
        }
        for rule in &chain.rules {
            p.push(format!(
                "add rule {TABLE} {name} {} comment \"{}\"",
                rule.text, rule.comment
            ));
        }
    }
    // What is no longer wanted: empty the chains first (they may refer to each other).
    let obsolete: Vec<&String> = have
        .chains
        .keys()
        .filter(|n| !want.chains.contains_key(*n))
        .collect();
    for name in &obsolete {
        if !have.chains[*name].rules.is_empty() {
            p.push(format!("flush chain {TABLE} {name}"));
        }
    }
    // Sets and maps before chains: a verdict map's elements jump to chains.
    for (name, set) in &have.sets {
        if !want.sets.contains_key(name) {
            let kind = if set.map { "map" } else { "set" };
            p.push(format!("delete {kind} {TABLE} {name}"));
        }
    }
    for name in &obsolete {
        p.push(format!("delete chain {TABLE} {name}"));
    }
    for name in have.counters.difference(&want.counters) {
        p.push(format!("delete counter {TABLE} {name}"));
    }
    p
}

fn declare_chain(name: &str, chain: &Chain) -> String {
    match &chain.hook {
        None => format!("add chain {TABLE} {name}"),
        Some(Hook::Ingress(dev)) => format!(
            "add chain {TABLE} {name} {{ type filter hook ingress device \"{dev}\" priority 0; policy accept; }}"
        ),
        Some(Hook::Egress(dev)) => format!(
            "add chain {TABLE} {name} {{ type filter hook egress device \"{dev}\" priority 0; policy accept; }}"
        ),
    }
}

/// Map elements are deleted by key alone.
fn element_keys(map: bool, elems: &[&str]) -> Vec<String> {
    elems
        .iter()
        .map(|e| {
            if map {
                e.split(" : ").next().unwrap_or(e).to_string()
            } else {
                e.to_string()
            }
        })
        .collect()
}

/// The commands of one transaction.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    commands: Vec<String>,
}

impl Plan {
    fn push(&mut self, command: String) {
        self.commands.push(command);
    }

    /// Nothing to do.
    pub fn is_empty(&self) -> bool {
        self.commands.is_empty()
    }

    /// The commands.
    pub fn commands(&self) -> &[String] {
        &self.commands
    }

    /// The `nft -f` script (one transaction).
    pub fn script(&self) -> String {
        let mut s = String::new();
        for c in &self.commands {
            let _ = writeln!(s, "{c}");
        }
        s
    }
}
