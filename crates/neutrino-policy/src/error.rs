//! Load-time errors. Each names where the problem is (`policy.yaml line 12: …`); a default rule's
//! "line" is its entry number in the built-in table.

/// Why a policy could not be loaded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// The file is not YAML/JSON, or not a mapping of rule names to check strings.
    #[error("{origin} line {line}: {reason}")]
    File {
        origin: String,
        line: usize,
        reason: String,
    },
    /// A check string does not parse.
    #[error("{origin} line {line}: cannot parse rule {rule:?} of {name:?}: {reason}")]
    Parse {
        origin: String,
        line: usize,
        name: String,
        rule: String,
        reason: String,
    },
    /// A `rule:NAME` names no rule, neither a default nor one of the file's.
    #[error("{origin} line {line}: rule {name:?} refers to undefined rule {missing:?}")]
    UndefinedRule {
        origin: String,
        line: usize,
        name: String,
        missing: String,
    },
    /// Rules refer to each other in a loop, e.g. `a -> b -> a`.
    #[error("{origin} line {line}: rule {name:?} is part of a reference cycle: {cycle}")]
    Cycle {
        origin: String,
        line: usize,
        name: String,
        cycle: String,
    },
}
