//! Desired vs observed → one `nft -f` transaction. Additions and deletions are ordered so
//! that every reference is valid at each step (chains and sets exist before rules and map
//! elements use them; users go before what they use is deleted); rules are deleted by
//! handle and inserted at their position next to kept rules; tables are never flushed.

use std::collections::BTreeMap;

use crate::compile::desired;
use crate::model::FirewallModel;
use crate::nft::{ChainDef, RuleDef, SetDef, TableDef, TABLE};
use crate::observe::{ObservedRule, ObservedTable, ObservedTables};

/// Most elements per `add element` / `delete element` command.
const ELEMENTS_PER_COMMAND: usize = 500;

/// One incremental transaction, to be applied with `nft -f -`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    commands: Vec<String>,
    warnings: Vec<String>,
}

impl Plan {
    /// Nothing to change.
    pub fn is_empty(&self) -> bool {
        self.commands.is_empty()
    }

    /// The `nft -f` script (one command per line; empty when nothing changes).
    pub fn script(&self) -> String {
        let mut s = self.commands.join("\n");
        if !s.is_empty() {
            s.push('\n');
        }
        s
    }

    /// The commands of the script.
    pub fn commands(&self) -> &[String] {
        &self.commands
    }

    /// Model problems that were skipped (invalid rules, MACs...), for the agent's log.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// Whether a command names a rule by a handle that was not known ([`crate::after_apply`]
    /// without nft's echo records added rules with handle 0): plan against a listing instead.
    pub fn uses_unknown_handle(&self) -> bool {
        self.commands
            .iter()
            .any(|c| c.ends_with(" handle 0") || c.contains(" position 0 "))
    }
}

/// The full script creating Neutrino's tables for `model` (what [`plan`] returns when the
/// tables are absent).
pub fn render(model: &FirewallModel) -> String {
    plan(model, &ObservedTables::default()).script()
}

/// The transaction turning `observed` into the tables `desired` needs.
pub fn plan(desired_model: &FirewallModel, observed: &ObservedTables) -> Plan {
    let d = desired(desired_model, observed);
    let mut steps = Steps::default();
    for table in [&d.bridge, &d.inet] {
        diff_table(table, observed.tables.get(&table.family), &mut steps);
    }
    Plan {
        commands: steps.into_commands(),
        warnings: d.warnings,
    }
}

/// Commands grouped by phase; the phase order is what keeps every reference valid.
#[derive(Default)]
struct Steps {
    add_table: Vec<String>,
    add_chain: Vec<String>,
    add_set: Vec<String>,
    del_elem: Vec<String>,
    del_rule: Vec<String>,
    del_chain: Vec<String>,
    del_set: Vec<String>,
    add_elem: Vec<String>,
    add_rule: Vec<String>,
}

impl Steps {
    fn into_commands(self) -> Vec<String> {
        [
            self.add_table,
            self.add_chain,
            self.add_set,
            self.del_elem,
            self.del_rule,
            self.del_chain,
            self.del_set,
            self.add_elem,
            self.add_rule,
        ]
        .concat()
    }
}

fn diff_table(want: &TableDef, have: Option<&ObservedTable>, steps: &mut Steps) {
    let t = format!("{} {TABLE}", want.family.as_str());
    let empty = ObservedTable::default();
    if have.is_none() {
        steps.add_table.push(format!("add table {t}"));
    }
    let have = have.unwrap_or(&empty);

    // Chains: create missing ones, delete (rules first) the ones no longer wanted.
    for c in &want.chains {
        if !have.chains.contains_key(&c.name) {
            let hook = c.hook.map(|h| format!(" {{ {h} }}")).unwrap_or_default();
            steps
                .add_chain
                .push(format!("add chain {t} {}{hook}", c.name));
        }
    }
    let wanted_chains: BTreeMap<&str, &ChainDef> =
        want.chains.iter().map(|c| (c.name.as_str(), c)).collect();
    for (name, rules) in &have.chains {
        if !wanted_chains.contains_key(name.as_str()) {
            // Emptied whole: no rule handle is needed.
            if !rules.is_empty() {
                steps.del_rule.push(format!("flush chain {t} {name}"));
            }
            steps.del_chain.push(format!("delete chain {t} {name}"));
        }
    }

    // Sets and maps: element differences.
    let wanted_sets: BTreeMap<&str, &SetDef> =
        want.sets.iter().map(|s| (s.name.as_str(), s)).collect();
    for s in &want.sets {
        let old = have.sets.get(&s.name);
        if old.is_none() {
            steps.add_set.push(format!(
                "add {} {t} {} {}",
                s.keyword(),
                s.name,
                s.declaration()
            ));
        }
        let gone: Vec<String> = old
            .into_iter()
            .flat_map(|o| &o.elems)
            .filter(|(k, e)| s.elems.get(*k) != Some(*e))
            .map(|(k, _)| s.element(k, None))
            .collect();
        let new: Vec<String> = s
            .elems
            .iter()
            .filter(|(k, e)| old.and_then(|o| o.elems.get(*k)) != Some(*e))
            .map(|(k, e)| s.element(k, Some(e)))
            .collect();
        for chunk in gone.chunks(ELEMENTS_PER_COMMAND) {
            steps.del_elem.push(format!(
                "delete element {t} {} {{ {} }}",
                s.name,
                chunk.join(", ")
            ));
        }
        for chunk in new.chunks(ELEMENTS_PER_COMMAND) {
            steps.add_elem.push(format!(
                "add element {t} {} {{ {} }}",
                s.name,
                chunk.join(", ")
            ));
        }
    }
    for (name, s) in &have.sets {
        if !wanted_sets.contains_key(name.as_str()) {
            steps
                .del_set
                .push(format!("delete {} {t} {name}", s.keyword()));
        }
    }

    // Rules, chain by chain.
    for c in &want.chains {
        match have.chains.get(&c.name) {
            None => {
                for r in &c.rules {
                    steps
                        .add_rule
                        .push(format!("add rule {t} {} {}", c.name, r.text()));
                }
            }
            Some(old) => diff_rules(&t, c, old, steps),
        }
    }
}

/// Keep the observed rules that are wanted and already in the wanted order (a longest
/// increasing subsequence), delete the others, insert the missing ones next to their kept
/// predecessor.
fn diff_rules(t: &str, want: &ChainDef, have: &[ObservedRule], steps: &mut Steps) {
    let (kept_handle, keep_observed) = kept_rules(want, have);
    for (r, keep) in have.iter().zip(&keep_observed) {
        if !keep {
            steps
                .del_rule
                .push(format!("delete rule {t} {} handle {}", want.name, r.handle));
        }
    }
    // Runs of new rules after each kept rule (or at the start).
    let mut anchor: Option<u64> = None;
    let mut run: Vec<&RuleDef> = Vec::new();
    let flush = |anchor: Option<u64>, run: &mut Vec<&RuleDef>, steps: &mut Steps| {
        for r in run.drain(..).rev() {
            steps.add_rule.push(match anchor {
                Some(h) => format!("add rule {t} {} position {h} {}", want.name, r.text()),
                None => format!("insert rule {t} {} {}", want.name, r.text()),
            });
        }
    };
    for (r, h) in want.rules.iter().zip(&kept_handle) {
        match h {
            Some(h) => {
                flush(anchor, &mut run, steps);
                anchor = Some(*h);
            }
            None => run.push(r),
        }
    }
    flush(anchor, &mut run, steps);
}

/// Which observed rules a chain keeps: for each wanted rule the handle of the observed one
/// kept for it (none: it is added), and for each observed rule whether it is kept.
pub(crate) fn kept_rules(want: &ChainDef, have: &[ObservedRule]) -> (Vec<Option<u64>>, Vec<bool>) {
    let comments: Vec<String> = want.rules.iter().map(RuleDef::comment).collect();
    let mut position: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, c) in comments.iter().enumerate() {
        position.entry(c.as_str()).or_insert(i);
    }
    // (observed index, wanted index) of observed rules matching a wanted rule.
    let mut candidates = Vec::new();
    let mut claimed = vec![false; want.rules.len()];
    for (oi, r) in have.iter().enumerate() {
        if let Some(&wi) = r.comment.as_deref().and_then(|c| position.get(c)) {
            if !claimed[wi] {
                claimed[wi] = true;
                candidates.push((oi, wi));
            }
        }
    }
    let kept = longest_increasing(&candidates);
    let mut kept_handle: Vec<Option<u64>> = vec![None; want.rules.len()];
    let mut keep_observed = vec![false; have.len()];
    for &(oi, wi) in &kept {
        kept_handle[wi] = Some(have[oi].handle);
        keep_observed[oi] = true;
    }
    (kept_handle, keep_observed)
}

/// Longest subsequence of `pairs` (in order) whose second members increase.
fn longest_increasing(pairs: &[(usize, usize)]) -> Vec<(usize, usize)> {
    // tails[k]: index in `pairs` of the smallest tail of an increasing run of length k+1.
    let mut tails: Vec<usize> = Vec::new();
    let mut prev: Vec<Option<usize>> = vec![None; pairs.len()];
    for (i, &(_, w)) in pairs.iter().enumerate() {
        let k = tails.partition_point(|&j| pairs[j].1 < w);
        prev[i] = k.checked_sub(1).map(|k| tails[k]);
        if k == tails.len() {
            tails.push(i);
        } else {
            tails[k] = i;
        }
    }
    let mut out = Vec::new();
    let mut cur = tails.last().copied();
    while let Some(i) = cur {
        out.push(pairs[i]);
        cur = prev[i];
    }
    out.reverse();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lis_keeps_the_longest_ordered_run() {
        let pairs = [(0, 2), (1, 0), (2, 1), (3, 3)];
        assert_eq!(longest_increasing(&pairs), vec![(1, 0), (2, 1), (3, 3)]);
        assert!(longest_increasing(&[]).is_empty());
    }
}
