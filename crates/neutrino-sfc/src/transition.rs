//! Live changes without loss across hosts: make before break.
//!
//! A chain change reaches every agent at about the same time, but not at exactly the same
//! time, and a loaded host may apply it seconds later than the others. If the host that
//! classifies switches its traffic to a new path before the host of a new function has the
//! rules that take the traffic on after it, packets are lost there; if a function's host
//! drops its part of an old path while a classifier still sends into it, the same. So an
//! agent whose chains span hosts applies a change in three steps:
//! 1. [`transition`]: the new paths are added and the old ones kept; entries still lead into
//!    the old paths, but where traffic leaves a function the re-classifications of newly
//!    attached classifiers are there already (the classifying host may switch first). The agent then acknowledges the revision and waits until the other
//!    hosts of its chains have acknowledged it too (they have their new paths), bounded.
//! 2. [`switched`]: the entries switch to the new paths; the old paths stay, because another
//!    host's entries may still lead into them for a moment. So do the re-classifications
//!    where traffic leaves a function that the new table no longer has (a classifier
//!    detached): the function's host cannot know whether the classifying host still sends
//!    that traffic into the function.
//! 3. After a grace period in which every other agent has switched too, the new table
//!    itself, which removes what is no longer used.
//!
//! Entries are the classifier chains (`cls-…`) and the steering ports' egress chains
//! (`egr-sfs…`): where a flow is first matched or matched again. In the first step they keep
//! their old version when they had one; device base chains (`dev-…`) keep the dispatch jumps
//! of both versions; every other chain takes its new version, and chains, sets, maps and
//! counters that only the old table had stay.

use crate::table::{Chain, Rule, Table};

/// Whether a chain is an entry: its old version is kept until the second step.
fn is_entry(name: &str) -> bool {
    name.starts_with("cls-") || name.starts_with("egr-sfs")
}

/// Whether a rule of a device base chain is a dispatch jump (`jump cls-…`).
fn is_dispatch(rule: &Rule) -> bool {
    rule.text.starts_with("jump cls-")
}

/// The table of the first step from `old` (the last table applied) to `new`: equal to
/// `new` when nothing needs to wait.
pub fn transition(old: &Table, new: &Table) -> Table {
    if !old.present || !new.present {
        return new.clone();
    }
    let mut t = new.clone();
    for (name, was) in &old.chains {
        match t.chains.get_mut(name) {
            None => {
                t.chains.insert(name.clone(), was.clone());
            }
            Some(now) if is_entry(name) => *now = with_new_reclassifications(was, now),
            Some(now) if name.starts_with("dev-") => *now = both_dispatches(was, now),
            Some(_) => {}
        }
    }
    for (name, set) in &old.sets {
        t.sets.entry(name.clone()).or_insert_with(|| set.clone());
    }
    t.counters.extend(old.counters.iter().cloned());
    t
}

/// The table of the second step from `old` (the last table applied) to `new`: entries and
/// device base chains as in `new`, the paths (chains, sets, counters) only `old` had kept.
/// Equal to `new` when nothing is removed.
pub fn switched(old: &Table, new: &Table) -> Table {
    if !old.present || !new.present {
        return new.clone();
    }
    let mut t = new.clone();
    for (name, was) in &old.chains {
        if is_entry(name) {
            let kept: Vec<Rule> = was
                .rules
                .iter()
                .filter(|r| is_reclassification(r))
                .filter(|r| {
                    !t.chains.get(name).is_some_and(|now| {
                        now.rules
                            .iter()
                            .any(|n| classifier_key(n) == classifier_key(r))
                    })
                })
                .cloned()
                .collect();
            if !kept.is_empty() {
                t.chains
                    .entry(name.clone())
                    .or_insert_with(|| Chain {
                        hook: was.hook.clone(),
                        rules: Vec::new(),
                    })
                    .rules
                    .extend(kept);
            }
        } else if !name.starts_with("dev-") {
            t.chains.entry(name.clone()).or_insert_with(|| was.clone());
        }
    }
    // A re-classification chain kept whole keeps the dispatch jump into it.
    for (name, was) in &old.chains {
        if let Some(now) = t.chains.get(name).filter(|_| name.starts_with("dev-")) {
            let gone: Vec<Rule> = was
                .rules
                .iter()
                .filter(|r| is_dispatch(r) && !now.rules.iter().any(|n| n.comment == r.comment))
                .filter(|r| {
                    r.text.strip_prefix("jump ").is_some_and(|target| {
                        !new.chains.contains_key(target) && t.chains.contains_key(target)
                    })
                })
                .cloned()
                .collect();
            if !gone.is_empty() {
                let kept = Chain {
                    hook: now.hook.clone(),
                    rules: now.rules.clone(),
                };
                let both = both_dispatches(
                    &Chain {
                        hook: was.hook.clone(),
                        rules: gone,
                    },
                    &kept,
                );
                t.chains.insert(name.clone(), both);
            }
        }
    }
    for (name, set) in &old.sets {
        t.sets.entry(name.clone()).or_insert_with(|| set.clone());
    }
    t.counters.extend(old.counters.iter().cloned());
    t
}

/// An entry chain in its old version, plus the re-classifications of classifiers it did not
/// have (a classifier attached): traffic a classifying host switches to the new path may
/// leave a function here before this host's own switch.
fn with_new_reclassifications(was: &Chain, now: &Chain) -> Chain {
    let mut rules = was.rules.clone();
    rules.extend(
        now.rules
            .iter()
            .filter(|r| is_reclassification(r))
            .filter(|r| {
                !was.rules
                    .iter()
                    .any(|o| classifier_key(o) == classifier_key(r))
            })
            .cloned(),
    );
    Chain {
        hook: was.hook.clone(),
        rules,
    }
}

/// Whether a rule of an entry chain re-classifies traffic leaving a function (keys
/// `g<group>-…` and, for symmetric chains, `rg<group>-…`), as opposed to a classifier's first
/// match at a source.
fn is_reclassification(rule: &Rule) -> bool {
    let key = rule.comment.split('#').next().unwrap_or_default();
    let rest = key
        .strip_prefix("rg")
        .or_else(|| key.strip_prefix('g'))
        .unwrap_or_default();
    rest.starts_with(|c: char| c.is_ascii_digit())
}

/// A re-classification rule's key without the classifier's position in its chain's list
/// (`g1-fc<id>-<i>` → `g1-fc<id>`): the same classifier at the same group.
fn classifier_key(rule: &Rule) -> &str {
    let key = rule.comment.split('#').next().unwrap_or_default();
    key.rsplit_once('-').map_or(key, |(head, _)| head)
}

/// A device base chain as in its new version, with the dispatch jumps only the old version
/// had added before the new version's first jump (or before its guards, when it has none).
fn both_dispatches(was: &Chain, now: &Chain) -> Chain {
    let gone: Vec<Rule> = was
        .rules
        .iter()
        .filter(|r| is_dispatch(r) && !now.rules.iter().any(|n| n.comment == r.comment))
        .cloned()
        .collect();
    let mut rules = now.rules.clone();
    let at = rules.iter().position(is_dispatch).unwrap_or_else(|| {
        rules
            .iter()
            .position(|r| !r.comment.starts_with("probe"))
            .unwrap_or(rules.len())
    });
    rules.splice(at..at, gone);
    Chain {
        hook: now.hook.clone(),
        rules,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::table::Hook;

    fn chain(rules: &[(&str, &str)]) -> Chain {
        Chain {
            hook: None,
            rules: rules.iter().map(|(k, t)| Rule::new(k, *t)).collect(),
        }
    }

    fn table(chains: Vec<(&str, Chain)>) -> Table {
        Table {
            present: true,
            chains: chains
                .into_iter()
                .map(|(n, c)| (n.to_string(), c))
                .collect(),
            sets: Default::default(),
            counters: Default::default(),
        }
    }

    #[test]
    fn entries_stay_old_new_paths_come_old_paths_stay() {
        let mut dev_old = chain(&[("c1", "jump cls-1-tapa"), ("foreign", "drop")]);
        dev_old.hook = Some(Hook::Ingress("tapa".into()));
        let mut dev_new = chain(&[("c2", "jump cls-2-tapa"), ("foreign", "drop")]);
        dev_new.hook = Some(Hook::Ingress("tapa".into()));
        let old = table(vec![
            ("cls-1-tapa", chain(&[("fc", "goto h-1-1-f")])),
            ("dev-tapa-3", dev_old),
            ("h-1-1-f", chain(&[("x", "goto m-1-1-a-f")])),
        ]);
        let new = table(vec![
            ("cls-1-tapa", chain(&[("fc", "goto h-1-0-f")])),
            ("cls-2-tapa", chain(&[("fc", "goto h-2-1-f")])),
            ("dev-tapa-3", dev_new),
            ("h-1-0-f", chain(&[("x", "goto m-1-0-b-f")])),
        ]);
        let t = transition(&old, &new);
        assert_eq!(t.chains["cls-1-tapa"], old.chains["cls-1-tapa"]);
        assert_eq!(t.chains["cls-2-tapa"], new.chains["cls-2-tapa"]);
        assert!(t.chains.contains_key("h-1-1-f") && t.chains.contains_key("h-1-0-f"));
        let dev: Vec<&str> = t.chains["dev-tapa-3"]
            .rules
            .iter()
            .map(|r| r.text.as_str())
            .collect();
        assert_eq!(dev, ["jump cls-1-tapa", "jump cls-2-tapa", "drop"]);
        // Nothing to wait for: the same table.
        assert_eq!(transition(&new, &new), new);

        // The switch: entries and device chains new, the old path still there.
        let s = switched(&old, &new);
        assert_eq!(s.chains["cls-1-tapa"], new.chains["cls-1-tapa"]);
        assert_eq!(s.chains["dev-tapa-3"], new.chains["dev-tapa-3"]);
        assert_eq!(s.chains["h-1-1-f"], old.chains["h-1-1-f"]);
        assert!(s.chains.contains_key("h-1-0-f"));
        // A classifier gone: its entry goes at the switch, with its dispatch.
        let gone = table(vec![("dev-tapa-3", new.chains["dev-tapa-3"].clone())]);
        assert!(!switched(&new, &gone).chains.contains_key("cls-2-tapa"));
        assert_eq!(switched(&new, &new), new);
    }

    #[test]
    fn a_detached_classifier_keeps_its_reclassification_until_the_last_step() {
        // At a function's egress: classifiers U (index 0) and T (index 1) re-classified for
        // group 1; U is detached, so T becomes index 0.
        let mut dev = chain(&[("c1", "jump cls-1-tapf"), ("foreign", "drop")]);
        dev.hook = Some(Hook::Ingress("tapf".into()));
        let old = table(vec![
            (
                "cls-1-tapf",
                chain(&[
                    ("g1-fcU-0", "udp goto h-1-2-f"),
                    ("g1-fcT-1", "tcp goto h-1-2-f"),
                ]),
            ),
            ("dev-tapf-3", dev.clone()),
            ("h-1-2-f", chain(&[("x", "goto m-1-2-a-f")])),
        ]);
        let new = table(vec![
            ("cls-1-tapf", chain(&[("g1-fcT-0", "tcp goto h-1-2-f")])),
            ("dev-tapf-3", dev.clone()),
            ("h-1-2-f", chain(&[("x", "goto m-1-2-a-f")])),
        ]);
        // Nothing new to add: the first step is the old table.
        assert_eq!(transition(&old, &new), old);
        // Attached again: its re-classification is there from the first step on.
        let first = transition(&new, &old);
        let keys: Vec<&str> = first.chains["cls-1-tapf"]
            .rules
            .iter()
            .map(|r| r.comment.split('#').next().unwrap())
            .collect();
        assert_eq!(keys, ["g1-fcT-0", "g1-fcU-0"]);
        // The switch keeps U's re-classification (after the new rules); T is not doubled.
        let s = switched(&old, &new);
        let keys: Vec<&str> = s.chains["cls-1-tapf"]
            .rules
            .iter()
            .map(|r| r.comment.split('#').next().unwrap())
            .collect();
        assert_eq!(keys, ["g1-fcT-0", "g1-fcU-0"]);
        assert_ne!(s, new, "the last step still has something to remove");

        // The last classifier detached at that egress: the chain and its dispatch stay too.
        let mut bare = chain(&[("foreign", "drop")]);
        bare.hook = Some(Hook::Ingress("tapf".into()));
        let none = table(vec![
            ("dev-tapf-3", bare),
            ("h-1-2-f", chain(&[("x", "goto m-1-2-a-f")])),
        ]);
        let s = switched(&new, &none);
        assert_eq!(s.chains["cls-1-tapf"], new.chains["cls-1-tapf"]);
        let dispatch: Vec<&str> = s.chains["dev-tapf-3"]
            .rules
            .iter()
            .map(|r| r.text.as_str())
            .collect();
        assert_eq!(dispatch, ["jump cls-1-tapf", "drop"]);

        // A source's classifier (not a re-classification) still goes at the switch.
        let src_old = table(vec![(
            "cls-1-tapa",
            chain(&[("fcU-0", "udp goto h-1-1-f")]),
        )]);
        let src_new = table(vec![]);
        assert!(!switched(&src_old, &src_new)
            .chains
            .contains_key("cls-1-tapa"));
    }
}
