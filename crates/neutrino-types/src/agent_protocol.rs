//! The version of the agent ↔ server protocol (`/neutrino/v1`: registration and heartbeats,
//! the snapshot, the change feed, status reports, applied-revision acknowledgements) and the
//! rule for which versions talk to each other.
//!
//! Each side names its own version in the [`HEADER`] of every request (the agent) and
//! response (the server). A server accepts agents of its version and of the one before
//! ([`server_accepts`]); an agent accepts servers of its version and of the one after
//! ([`agent_accepts`]). So during an upgrade the servers go first (new servers still serve
//! the old agents), then the agents. A request without the header comes from an agent made
//! before the header existed: version [`UNVERSIONED`].

use crate::ApiError;

/// This build's protocol version. Raise it when a change to the agent protocol would break
/// an agent or server of the previous version (and keep serving the previous version for
/// one release).
pub const AGENT_PROTOCOL_VERSION: u32 = 1;

/// The version of a peer that sends no [`HEADER`] (agents and servers from before it).
pub const UNVERSIONED: u32 = 1;

/// The header naming the sender's protocol version, on requests and responses
/// (`X-Neutrino-Agent-Protocol: 1`).
pub const HEADER: &str = "x-neutrino-agent-protocol";

/// The `NeutronError` type of a refused agent.
pub const REFUSED_TYPE: &str = "AgentProtocolVersionUnsupported";

/// Whether a server speaking `server` serves an agent speaking `agent`: the same version or
/// the one before.
pub fn server_accepts(server: u32, agent: u32) -> bool {
    agent >= 1 && (agent == server || agent + 1 == server)
}

/// Whether an agent speaking `agent` follows a server speaking `server`: the same version or
/// the one after.
pub fn agent_accepts(agent: u32, server: u32) -> bool {
    // The same pairs as the server's rule, so both sides always agree.
    server_accepts(server, agent)
}

/// The version a header value names (`None`: no header, [`UNVERSIONED`]); `Err` holds a
/// value that is not a version.
pub fn parse(header: Option<&str>) -> Result<u32, String> {
    match header {
        None => Ok(UNVERSIONED),
        Some(text) => text.trim().parse().map_err(|_| text.to_string()),
    }
}

/// The versions of agents that a server speaking `server` accepts, for messages.
fn accepted_agents(server: u32) -> String {
    if server > 1 {
        format!("{} and {server}", server - 1)
    } else {
        server.to_string()
    }
}

/// The server's check of a request's [`HEADER`]: the agent's version, or the 400
/// `AgentProtocolVersionUnsupported` error naming both versions.
pub fn check_agent(server: u32, header: Option<&str>) -> Result<u32, ApiError> {
    match parse(header) {
        Ok(agent) if server_accepts(server, agent) => Ok(agent),
        Ok(agent) => {
            let advice = if agent > server {
                "upgrade the servers before the agents"
            } else {
                "upgrade this agent"
            };
            Err(ApiError::new(
                400,
                REFUSED_TYPE,
                format!(
                    "Agent protocol version {agent} is not supported: this server speaks \
                     version {server} and accepts agents of version {}; {advice}.",
                    accepted_agents(server)
                ),
            ))
        }
        Err(text) => Err(ApiError::new(
            400,
            REFUSED_TYPE,
            format!(
                "Invalid agent protocol version {text:?}: this server speaks version {server} \
                 and accepts agents of version {}.",
                accepted_agents(server)
            ),
        )),
    }
}

/// What an agent speaking `agent` should do about a server speaking `server` that it does
/// not accept, for its log.
pub fn agent_advice(agent: u32, server: u32) -> &'static str {
    if server < agent {
        "the server is older than this agent: upgrade the servers first"
    } else {
        "the server is more than one version newer: upgrade this agent"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The whole matrix for versions 1..=4: a pair talks exactly when the agent is the
    /// server's version or the one before, and both sides agree on it.
    #[test]
    fn servers_take_their_version_and_the_one_before_agents_the_reverse() {
        for server in 1..=4u32 {
            for agent in 0..=5u32 {
                let expected = agent >= 1 && (agent == server || agent + 1 == server);
                assert_eq!(
                    server_accepts(server, agent),
                    expected,
                    "server {server} agent {agent}"
                );
                assert_eq!(
                    agent_accepts(agent, server),
                    expected,
                    "agent {agent} server {server}"
                );
            }
        }
        assert!(!agent_accepts(1, 0));
    }

    #[test]
    fn a_missing_header_is_version_one() {
        assert_eq!(parse(None), Ok(1));
        assert_eq!(parse(Some(" 2 ")), Ok(2));
        assert_eq!(parse(Some("v2")), Err("v2".to_string()));
        assert_eq!(parse(Some("-1")), Err("-1".to_string()));
        assert_eq!(check_agent(1, None), Ok(1));
        assert_eq!(check_agent(2, None), Ok(1), "one older than 2");
        assert!(check_agent(3, None).is_err(), "two older than 3");
    }

    #[test]
    fn refusals_name_both_versions() {
        assert_eq!(check_agent(AGENT_PROTOCOL_VERSION, Some("1")), Ok(1));
        let err = check_agent(1, Some("2")).unwrap_err();
        assert_eq!((err.status, err.kind.as_str()), (400, REFUSED_TYPE));
        assert!(err.message.contains("version 2"), "{}", err.message);
        assert!(err.message.contains("speaks version 1"), "{}", err.message);
        assert!(err.message.contains("servers before"), "{}", err.message);
        let err = check_agent(3, Some("1")).unwrap_err();
        assert!(
            err.message.contains("of version 2 and 3"),
            "{}",
            err.message
        );
        assert!(
            err.message.contains("upgrade this agent"),
            "{}",
            err.message
        );
        let err = check_agent(1, Some("x")).unwrap_err();
        assert_eq!(err.status, 400);
        assert!(err.message.contains("\"x\""), "{}", err.message);
        assert!(err.message.contains("version 1"), "{}", err.message);
        assert!(check_agent(1, Some("0")).is_err());
    }

    #[test]
    fn the_advice_points_at_what_to_upgrade() {
        assert!(agent_advice(2, 1).contains("servers first"));
        assert!(agent_advice(1, 3).contains("upgrade this agent"));
    }
}
