//! Who is calling: the identity behind a validated token, and the role checks of Neutron's
//! default policy (admin ⇒ member ⇒ reader).

/// The caller of one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Context {
    /// Keystone user id.
    pub user_id: String,
    /// Project the token is scoped to.
    pub project_id: String,
    /// Role names, implied roles included.
    pub roles: Vec<String>,
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
