//! Error type of the load tool.

/// Everything that can stop a benchmark run.
///
/// Individual failed requests inside a measured scenario are *not* errors of
/// this kind: they are counted in [`crate::ScenarioResult::errors`] and the run
/// keeps going. A `BenchError` is returned when the run cannot proceed at all
/// (bad arguments, authentication failure, a fixture that cannot be created).
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// The command-line arguments are inconsistent or out of range.
    #[error("invalid arguments: {0}")]
    InvalidArgs(String),

    /// A required `OS_*` variable is not set (and `--url`/`--token` were not
    /// both given).
    #[error(
        "environment variable {0} is not set (pass both --url and --token, or source an openrc)"
    )]
    MissingEnv(&'static str),

    /// A URL given on the command line, in the environment or in the catalog
    /// is unusable.
    #[error("invalid URL {url:?}: {reason}")]
    InvalidUrl {
        /// The offending URL.
        url: String,
        /// Why it was rejected.
        reason: String,
    },

    /// A request could not be sent or its response could not be read
    /// (outside of a measured loop).
    #[error("HTTP request failed: {}", crate::error::chain(.0))]
    Http(#[from] reqwest::Error),

    /// Login, token validation or the catalog lookup failed.
    #[error(transparent)]
    Keystone(#[from] neutrino_keystone::KeystoneError),

    /// The objects a scenario needs before it can measure anything (network,
    /// subnet, ports) could not be created.
    #[error("{scenario}: fixture setup failed: {message}")]
    Fixture {
        /// Scenario (or scenario group) that needed the fixture.
        scenario: String,
        /// What went wrong, including the first error response.
        message: String,
    },

    /// A worker task of a concurrent loop panicked or was cancelled.
    #[error("worker task failed: {0}")]
    Task(String),

    /// A response body was not the JSON document expected.
    #[error("invalid JSON: {0}")]
    Json(#[from] serde_json::Error),
}

/// `error: cause: cause...`: reqwest's own `Display` omits the underlying
/// cause (connection refused, timeout...), which is what the user needs.
pub(crate) fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}
