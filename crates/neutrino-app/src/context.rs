//! Who is calling: the identity behind a validated token, and the role checks of Neutron's
//! default policy (admin ⇒ member ⇒ reader). A host-agent credential's caller is the agent
//! of one host: it may make only that host's agent calls ([`Context::agent_host`]).

use neutrino_types::{ApiError, ApiResult};

/// The caller of one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Context {
    /// Keystone user id.
    pub user_id: String,
    /// Project the token is scoped to.
    pub project_id: String,
    /// Role names, implied roles included.
    pub roles: Vec<String>,
    /// `Some(H)`: the caller is the agent of host H (a host credential's token, see
    /// [`crate::host_credentials`]), never a user: the API layer refuses it every call but
    /// the agent calls, and those refuse any other host.
    pub agent_host: Option<String>,
}

impl Context {
    /// A context with the given roles, implied roles added (and `manager` for admins, which
    /// Neutron's policy expects of newer Keystones).
    pub fn new(user_id: &str, project_id: &str, roles: &[String]) -> Context {
        let mut roles = implied_roles(roles);
        if roles.iter().any(|r| r == "admin") && !roles.iter().any(|r| r == "manager") {
            roles.push("manager".to_string());
        }
        Context {
            user_id: user_id.to_string(),
            project_id: project_id.to_string(),
            roles,
            agent_host: None,
        }
    }

    /// The agent of `host`, authenticated by the host credential `credential`: the
    /// `service` role (what the agent rules of the policy admit), no project.
    pub fn agent(credential: &str, host: &str) -> Context {
        Context {
            user_id: credential.to_string(),
            project_id: String::new(),
            roles: vec![AGENT_ROLE.to_string()],
            agent_host: Some(host.to_string()),
        }
    }

    /// Whether a policy rule may grant the caller anything: a host agent only the agent
    /// rules ([`AGENT_RULES`]).
    pub fn may_use_rule(&self, rule: &str) -> bool {
        self.agent_host.is_none() || AGENT_RULES.contains(&rule)
    }

    /// Whether the caller may act for `host` in an agent call: any host for a user (the
    /// policy decides), only its own for a host agent (403 otherwise).
    pub fn check_host(&self, host: &str) -> ApiResult<()> {
        match &self.agent_host {
            Some(own) if own != host => Err(ApiError::new(
                403,
                "PolicyNotAuthorized",
                format!("The credential of the agent of host {own} may not act for host {host}."),
            )),
            _ => Ok(()),
        }
    }

    /// Cloud administrator.
    pub fn is_admin(&self) -> bool {
        self.has("admin")
    }

    /// May write resources of its own project.
    pub fn is_member(&self) -> bool {
        self.is_admin() || self.has("member")
    }

    /// Whether the caller holds a role.
    pub fn has(&self, role: &str) -> bool {
        self.roles.iter().any(|r| r.eq_ignore_ascii_case(role))
    }

    /// Whether the caller owns `project_id` (or is admin).
    pub fn owns(&self, project_id: &str) -> bool {
        self.is_admin() || self.project_id == project_id
    }

    /// The caller as the policy engine sees it.
    pub fn credentials(&self) -> neutrino_policy::Credentials<'_> {
        neutrino_policy::Credentials {
            user_id: &self.user_id,
            project_id: &self.project_id,
            roles: &self.roles,
        }
    }
}

/// The role a host agent's token carries (the policy's `service_api`).
pub const AGENT_ROLE: &str = "service";

/// The only policy rules a host agent's caller is ever granted (the agent calls); every
/// other rule refuses it whatever the policy says, so the `service` role it carries opens
/// none of the user calls Neutron's defaults give that role.
pub const AGENT_RULES: &[&str] = &[
    "report_agent",
    "get_feed",
    "report_port_status",
    "report_containers_gone",
    "report_applied_revision",
    "update_sfc_status",
    "report_l2gw_macs",
    "report_metering_counters",
    "get_revision",
];

/// Adds the roles Keystone's default implications give: admin ⇒ member ⇒ reader.
pub fn implied_roles(roles: &[String]) -> Vec<String> {
    let mut out: Vec<String> = roles.iter().map(|r| r.to_ascii_lowercase()).collect();
    let has = |out: &Vec<String>, r: &str| out.iter().any(|x| x == r);
    if has(&out, "admin") && !has(&out, "member") {
        out.push("member".to_string());
    }
    if has(&out, "member") && !has(&out, "reader") {
        out.push("reader".to_string());
    }
    out
}
