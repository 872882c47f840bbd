//! The tables after a plan took, without listing them again: the kept rules keep their
//! handles, the added ones get those nft echoed (`nft --echo --handle -f -` prints each
//! added rule with its handle) or, without the echo (which doubles what nft costs on a
//! large host), the unknown handle 0; sets and maps hold exactly the wanted elements, chains
//! and sets no longer wanted are gone. The agent plans its next change against this instead
//! of a listing; a plan that needs an unknown handle ([`crate::Plan::uses_unknown_handle`]:
//! a rule to delete or to insert after in a chain that keeps others) is made again against a
//! listing, and the periodic full reconcile lists the kernel anyway.

use std::collections::{BTreeMap, VecDeque};

use crate::compile::desired;
use crate::model::FirewallModel;
use crate::nft::Family;
use crate::observe::{ObservedRule, ObservedTable, ObservedTables};
use crate::plan::kept_rules;

/// Rules nft echoed as added: (family, chain) → (comment, handle) in the order added.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AddedRules(BTreeMap<(Family, String), VecDeque<(String, u64)>>);

impl AddedRules {
    /// Reads the `add rule` / `insert rule` lines of nft's echo (other lines are ignored):
    /// `add rule inet neutrino CHAIN … comment "KEY #DIGEST" # handle N`.
    pub fn parse(echo: &str) -> AddedRules {
        let mut added = AddedRules::default();
        for line in echo.lines() {
            let words: Vec<&str> = line.split_whitespace().collect();
            let ([verb, "rule", family, _table, chain, ..], Some((rest, handle))) =
                (words.as_slice(), line.rsplit_once(" # handle "))
            else {
                continue;
            };
            let (Some(family), true) = (Family::parse(family), *verb == "add" || *verb == "insert")
            else {
                continue;
            };
            let (Some(comment), Ok(handle)) = (last_comment(rest), handle.trim().parse()) else {
                continue;
            };
            added
                .0
                .entry((family, chain.to_string()))
                .or_default()
                .push_back((comment.to_string(), handle));
        }
        added
    }

    /// The handle of the first unclaimed added rule with this comment in this chain.
    fn claim(&mut self, family: Family, chain: &str, comment: &str) -> Option<u64> {
        let rules = self.0.get_mut(&(family, chain.to_string()))?;
        let i = rules.iter().position(|(c, _)| c == comment)?;
        rules.remove(i).map(|(_, handle)| handle)
    }
}

/// The text of the last `comment "…"` of a rule line.
fn last_comment(rule: &str) -> Option<&str> {
    let (_, after) = rule.rsplit_once("comment \"")?;
    after.strip_suffix('"')
}

/// The tables once `plan(model, before)` was applied without an error, given the rules nft
/// echoed (`None`: not echoed, added rules get handle 0); `None` when an added rule's
/// handle is missing from an echo (list the kernel).
pub fn after_apply(
    model: &FirewallModel,
    before: &ObservedTables,
    mut added: Option<AddedRules>,
) -> Option<ObservedTables> {
    let d = desired(model, before);
    let mut after = ObservedTables::default();
    for want in [&d.bridge, &d.inet] {
        let old = before.tables.get(&want.family);
        let mut table = ObservedTable::default();
        for chain in &want.chains {
            let have = old
                .and_then(|t| t.chains.get(&chain.name))
                .map(Vec::as_slice)
                .unwrap_or_default();
            let (kept, _) = kept_rules(chain, have);
            let mut rules = Vec::with_capacity(chain.rules.len());
            for (rule, kept) in chain.rules.iter().zip(kept) {
                let comment = rule.comment();
                let handle = match kept {
                    Some(h) => h,
                    None => match &mut added {
                        Some(added) => added.claim(want.family, &chain.name, &comment)?,
                        None => 0,
                    },
                };
                rules.push(ObservedRule {
                    handle,
                    comment: Some(comment),
                });
            }
            table.chains.insert(chain.name.clone(), rules);
        }
        for set in &want.sets {
            table.sets.insert(set.name.clone(), set.clone());
        }
        after.tables.insert(want.family, table);
    }
    Some(after)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echoed_rules_are_read_by_chain_in_order() {
        let echo = "add rule inet neutrino e-tap1 handle 2 ip saddr { 1.2.3.4, 5.6.7.8 } \
                    counter comment \"r1 #ab\" # handle 7\n\
                    insert rule bridge neutrino prerouting counter comment \"r0 #cd\" # handle 9\n\
                    add chain inet neutrino c # handle 10\n\
                    add element inet neutrino s { 1 }\n\
                    # new generation 3 by process 1 (nft)\n";
        let mut added = AddedRules::parse(echo);
        assert_eq!(added.claim(Family::Inet, "e-tap1", "r1 #ab"), Some(7));
        assert_eq!(added.claim(Family::Inet, "e-tap1", "r1 #ab"), None);
        assert_eq!(added.claim(Family::Bridge, "prerouting", "r0 #cd"), Some(9));
        assert_eq!(added.claim(Family::Inet, "c", "x"), None);
    }
}
