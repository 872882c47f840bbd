//! The built-in Keystone v3 subset: domains, projects, users, roles, role assignments on
//! projects, password authentication with project scope, and signed expiring tokens with a
//! service catalog naming this server as the `identity` and `network` endpoints.
//!
//! Names are unique per domain through store claims (`user-name:<domain>` ...), so two
//! servers on one PostgreSQL cannot create the same user twice.

use neutrino_store::{Record, Selector, Tx};
use neutrino_types::{ApiError, ApiResult};
use pbkdf2::pbkdf2_hmac;
use serde_json::{json, Map, Value};
use sha2::Sha256;

use crate::revocation::{disabled, Revoked};
use crate::token::{self, Claims};
use crate::{db, hex, new_id, App, Context};

/// The domain every fresh install has.
pub const DEFAULT_DOMAIN: &str = "default";
const PBKDF2_ROUNDS: u32 = 20_000;

/// Identity object kinds and their URL collection names.
pub const KINDS: &[(&str, &str)] = &[
    ("domains", "domain"),
    ("projects", "project"),
    ("users", "user"),
    ("roles", "role"),
];

/// What bootstrapping did.
#[derive(Debug)]
pub struct Bootstrap {
    /// The admin user was created now.
    pub created: bool,
    /// The admin password, when known (created now or given).
    pub password: Option<String>,
}

fn kind_of(collection: &str) -> ApiResult<&'static str> {
    KINDS
        .iter()
        .find(|(c, _)| *c == collection)
        .map(|(_, k)| *k)
        .ok_or_else(|| ApiError::new(404, "NotFound", "The resource could not be found."))
}

fn keystone_not_found(kind: &str, id: &str) -> ApiError {
    ApiError::new(404, "NotFound", format!("Could not find {kind}: {id}."))
}

fn conflict(kind: &str, name: &str) -> ApiError {
    ApiError::new(
        409,
        "Conflict",
        format!("Conflict occurred attempting to store {kind} - Duplicate entry found with name {name}."),
    )
}

pub(crate) fn hash_password(password: &str) -> String {
    let salt: [u8; 16] = rand::random();
    let mut out = [0u8; 32];
    pbkdf2_hmac::<Sha256>(password.as_bytes(), &salt, PBKDF2_ROUNDS, &mut out);
    format!("pbkdf2-sha256${PBKDF2_ROUNDS}${}${}", hex(&salt), hex(&out))
}

pub(crate) fn check_password(password: &str, stored: &str) -> bool {
    let parts: Vec<&str> = stored.split('$').collect();
    let [_, rounds, salt, hash] = parts.as_slice() else {
        return false;
    };
    let Ok(rounds) = rounds.parse::<u32>() else {
        return false;
    };
    let salt: Vec<u8> = (0..salt.len() / 2)
        .filter_map(|i| u8::from_str_radix(&salt[2 * i..2 * i + 2], 16).ok())
        .collect();
    let mut out = [0u8; 32];
    pbkdf2_hmac::<Sha256>(password.as_bytes(), &salt, rounds, &mut out);
    hex(&out) == *hash
}

fn name_scope(kind: &str, domain_id: &str) -> String {
    match kind {
        "domain" => "domain-name".to_string(),
        "role" => "role-name".to_string(),
        _ => format!("{kind}-name:{domain_id}"),
    }
}

fn str_field<'a>(obj: &'a Map<String, Value>, key: &str) -> Option<&'a str> {
    obj.get(key).and_then(Value::as_str)
}

/// Removes what is never shown (the password hash).
fn public(mut body: Value) -> Value {
    if let Some(obj) = body.as_object_mut() {
        obj.remove("password_hash");
    }
    body
}

fn links(mut body: Value, base: &str, collection: &str) -> Value {
    if let Some(obj) = body.as_object_mut() {
        let id = obj
            .get("id")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        obj.insert(
            "links".to_string(),
            json!({"self": format!("{base}/v3/{collection}/{id}")}),
        );
    }
    body
}

async fn find_by_name(
    tx: &mut Tx,
    kind: &str,
    domain_id: &str,
    name: &str,
) -> ApiResult<Option<Record>> {
    let owner = tx
        .claim_owner(&name_scope(kind, domain_id), &name.to_lowercase())
        .await
        .map_err(db)?;
    match owner {
        Some(id) => tx.get(kind, &id).await.map_err(db),
        None => Ok(None),
    }
}

async fn insert_named(tx: &mut Tx, kind: &str, body: Map<String, Value>) -> ApiResult<Value> {
    let id = str_field(&body, "id").unwrap_or_default().to_string();
    let name = str_field(&body, "name").unwrap_or_default().to_string();
    let domain = str_field(&body, "domain_id")
        .unwrap_or(DEFAULT_DOMAIN)
        .to_string();
    if !tx
        .claim(&name_scope(kind, &domain), &name.to_lowercase(), &id)
        .await
        .map_err(db)?
    {
        return Err(conflict(kind, &name));
    }
    let rec = Record {
        kind: kind.to_string(),
        id: id.clone(),
        project_id: if kind == "project" {
            id.clone()
        } else {
            domain.clone()
        },
        parent_id: Some(domain),
        body: Value::Object(body),
    };
    tx.insert(&rec).await.map_err(db)?;
    Ok(rec.body)
}

async fn role_names(tx: &mut Tx, user_id: &str, project_id: &str) -> ApiResult<Vec<Record>> {
    let sel = Selector {
        project_ids: Some(vec![project_id.to_string()]),
        parent_ids: Some(vec![user_id.to_string()]),
        ..Default::default()
    };
    let mut roles = Vec::new();
    for a in tx.list("role_assignment", &sel).await.map_err(db)? {
        if let Some(role_id) = a.body.get("role_id").and_then(Value::as_str) {
            if let Some(role) = tx.get("role", role_id).await.map_err(db)? {
                roles.push(role);
            }
        }
    }
    Ok(roles)
}

fn s_of<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or_default()
}

/// Identity objects read once per request, for `include_names`.
#[derive(Default)]
struct Names {
    seen: std::collections::HashMap<(String, String), Option<Value>>,
}

impl Names {
    async fn get(&mut self, tx: &mut Tx, kind: &str, id: &str) -> ApiResult<Option<Value>> {
        let key = (kind.to_string(), id.to_string());
        if let Some(v) = self.seen.get(&key) {
            return Ok(v.clone());
        }
        let v = tx.get(kind, id).await.map_err(db)?.map(|r| r.body);
        self.seen.insert(key, v.clone());
        Ok(v)
    }

    /// Adds `name` to `{"id": ...}`, and the `domain` (id and name) of a user, a project or a
    /// domain-specific role, as Keystone's `include_names` does.
    async fn describe(&mut self, tx: &mut Tx, kind: &str, entity: &mut Value) -> ApiResult<()> {
        let id = s_of(entity, "id").to_string();
        let Some(body) = self.get(tx, kind, &id).await? else {
            return Ok(());
        };
        entity["name"] = json!(s_of(&body, "name"));
        let domain = s_of(&body, "domain_id").to_string();
        if !domain.is_empty() {
            let name = match self.get(tx, "domain", &domain).await? {
                Some(d) => s_of(&d, "name").to_string(),
                None => domain.clone(),
            };
            entity["domain"] = json!({"id": domain, "name": name});
        }
        Ok(())
    }
}

fn require_admin(ctx: &Context) -> ApiResult<()> {
    if ctx.is_admin() {
        Ok(())
    } else {
        Err(ApiError::new(
            403,
            "Forbidden",
            "You are not authorized to perform the requested action.",
        ))
    }
}

impl App {
    /// Creates the default domain, the admin/member/reader roles, the `admin` project and the
    /// `admin` user on a fresh database; idempotent.
    pub async fn bootstrap(&self, password: Option<&str>) -> ApiResult<Bootstrap> {
        let mut tx = self.write().await?;
        if tx
            .get("domain", DEFAULT_DOMAIN)
            .await
            .map_err(db)?
            .is_none()
        {
            insert_named(
                &mut tx,
                "domain",
                json!({"id": DEFAULT_DOMAIN, "name": "Default", "description": "The default domain",
                       "enabled": true, "tags": [], "options": {}})
                .as_object()
                .cloned()
                .unwrap_or_default(),
            )
            .await?;
        }
        let mut admin_role = String::new();
        for role in ["admin", "member", "reader"] {
            let id = match find_by_name(&mut tx, "role", "", role).await? {
                Some(r) => r.id,
                None => {
                    let body = json!({"id": new_id(), "name": role, "domain_id": null,
                                      "description": null, "options": {}});
                    let body = insert_named(
                        &mut tx,
                        "role",
                        body.as_object().cloned().unwrap_or_default(),
                    )
                    .await?;
                    body["id"].as_str().unwrap_or_default().to_string()
                }
            };
            if role == "admin" {
                admin_role = id;
            }
        }
        let project = match find_by_name(&mut tx, "project", DEFAULT_DOMAIN, "admin").await? {
            Some(p) => p.id,
            None => {
                let body = json!({"id": new_id(), "name": "admin", "domain_id": DEFAULT_DOMAIN,
                    "description": "Bootstrap project for initializing the cloud.", "enabled": true,
                    "is_domain": false, "parent_id": DEFAULT_DOMAIN, "tags": [], "options": {}});
                let body = insert_named(
                    &mut tx,
                    "project",
                    body.as_object().cloned().unwrap_or_default(),
                )
                .await?;
                body["id"].as_str().unwrap_or_default().to_string()
            }
        };
        let existing = find_by_name(&mut tx, "user", DEFAULT_DOMAIN, "admin").await?;
        let result = match existing {
            Some(_) => Bootstrap {
                created: false,
                password: password.map(str::to_string),
            },
            None => {
                let password = password
                    .map(str::to_string)
                    .unwrap_or_else(|| hex(&rand::random::<[u8; 12]>()));
                let user_id = new_id();
                let body = json!({"id": user_id, "name": "admin", "domain_id": DEFAULT_DOMAIN,
                    "enabled": true, "default_project_id": project, "password_expires_at": null,
                    "options": {}, "password_hash": hash_password(&password)});
                insert_named(
                    &mut tx,
                    "user",
                    body.as_object().cloned().unwrap_or_default(),
                )
                .await?;
                self.assign(&mut tx, &project, &user_id, &admin_role)
                    .await?;
                Bootstrap {
                    created: true,
                    password: Some(password),
                }
            }
        };
        tx.commit().await.map_err(db)?;
        Ok(result)
    }

    async fn assign(&self, tx: &mut Tx, project: &str, user: &str, role: &str) -> ApiResult<bool> {
        let id = format!("{project}|{user}|{role}");
        if tx.get("role_assignment", &id).await.map_err(db)?.is_some() {
            return Ok(false);
        }
        tx.insert(&Record {
            kind: "role_assignment".to_string(),
            id,
            project_id: project.to_string(),
            parent_id: Some(user.to_string()),
            body: json!({"project_id": project, "user_id": user, "role_id": role}),
        })
        .await
        .map_err(db)?;
        Ok(true)
    }

    /// `POST /v3/auth/tokens`: password authentication, optionally scoped to a project.
    /// Returns the token and the token body.
    pub async fn issue_token(&self, request: &Value, base: &str) -> ApiResult<(String, Value)> {
        let unauthorized = || {
            ApiError::new(
                401,
                "Unauthorized",
                "The request you have made requires authentication.",
            )
        };
        let bad = |m: &str| ApiError::new(400, "ValidationError", m.to_string());
        let identity = request
            .pointer("/auth/identity")
            .ok_or_else(|| bad("'identity' is a required property"))?;
        let methods = identity.get("methods").and_then(Value::as_array);
        if methods.is_some_and(|m| m.iter().any(|m| m == "application_credential")) {
            // A host agent's credential: its token serves that host's agent calls only.
            return self.issue_agent_token(identity, base).await;
        }
        let mut tx = self.read().await?;
        // A token made from a token expires with it, as in Keystone: holding a token never
        // lets one extend it.
        let mut source_expiry = None;
        let (user, method) = if let Some(t) = identity.pointer("/token/id").and_then(Value::as_str)
        {
            let source = self.valid_claims(t).await.map_err(|_| unauthorized())?;
            source_expiry = Some(source.e);
            let user = tx
                .get("user", &source.u)
                .await
                .map_err(db)?
                .filter(|u| !disabled(&u.body))
                .ok_or_else(unauthorized)?;
            (user, "token")
        } else {
            let pw = identity
                .pointer("/password/user")
                .ok_or_else(|| bad("password.user is required"))?;
            let password = pw
                .get("password")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let user = if let Some(id) = pw.get("id").and_then(Value::as_str) {
                tx.get("user", id).await.map_err(db)?
            } else {
                let name = pw
                    .get("name")
                    .and_then(Value::as_str)
                    .ok_or_else(unauthorized)?;
                let domain = self.resolve_domain(&mut tx, pw.get("domain")).await?;
                find_by_name(&mut tx, "user", &domain, name).await?
            };
            let user = user.ok_or_else(unauthorized)?;
            let hash = user
                .body
                .get("password_hash")
                .and_then(Value::as_str)
                .unwrap_or_default();
            if !check_password(password, hash)
                || user.body.get("enabled") == Some(&Value::Bool(false))
            {
                return Err(unauthorized());
            }
            (user, "password")
        };
        let scope = request.pointer("/auth/scope/project");
        let project = match scope {
            Some(p) => {
                let found = if let Some(id) = p.get("id").and_then(Value::as_str) {
                    tx.get("project", id).await.map_err(db)?
                } else {
                    let name = p
                        .get("name")
                        .and_then(Value::as_str)
                        .ok_or_else(unauthorized)?;
                    let domain = self.resolve_domain(&mut tx, p.get("domain")).await?;
                    find_by_name(&mut tx, "project", &domain, name).await?
                };
                Some(
                    found
                        .filter(|p| !disabled(&p.body))
                        .ok_or_else(unauthorized)?,
                )
            }
            None => None,
        };
        let roles = match &project {
            Some(p) => {
                let roles = role_names(&mut tx, &user.id, &p.id).await?;
                if roles.is_empty() {
                    return Err(unauthorized());
                }
                roles
            }
            None => Vec::new(),
        };
        let now_ms = chrono::Utc::now().timestamp_millis();
        let now = now_ms / 1000;
        let lifetime_end = now + self.config().token_ttl_secs;
        let expires = source_expiry.map_or(lifetime_end, |e| e.min(lifetime_end));
        let names: Vec<String> = roles
            .iter()
            .filter_map(|r| {
                r.body
                    .get("name")
                    .and_then(Value::as_str)
                    .map(str::to_string)
            })
            .collect();
        let claims = Claims {
            u: user.id.clone(),
            p: project.as_ref().map(|p| p.id.clone()).unwrap_or_default(),
            r: crate::context::implied_roles(&names),
            e: expires,
            i: now,
            a: new_id().replace('-', "")[..22].to_string(),
            m: now_ms,
            h: None,
        };
        let token = token::sign(&self.inner.token_key, &claims);
        let body = self.token_body(&mut tx, &claims, method, base).await?;
        Ok((token, body))
    }

    async fn resolve_domain(&self, tx: &mut Tx, domain: Option<&Value>) -> ApiResult<String> {
        let Some(d) = domain else {
            return Ok(DEFAULT_DOMAIN.to_string());
        };
        if let Some(id) = d.get("id").and_then(Value::as_str) {
            return Ok(id.to_string());
        }
        if let Some(name) = d.get("name").and_then(Value::as_str) {
            if let Some(rec) = find_by_name(tx, "domain", "", name).await? {
                return Ok(rec.id);
            }
            return Err(ApiError::new(
                401,
                "Unauthorized",
                "The request you have made requires authentication.",
            ));
        }
        Ok(DEFAULT_DOMAIN.to_string())
    }

    pub(crate) async fn token_body(
        &self,
        tx: &mut Tx,
        c: &Claims,
        method: &str,
        base: &str,
    ) -> ApiResult<Value> {
        let ts = |secs: i64| {
            chrono::DateTime::from_timestamp(secs, 0)
                .unwrap_or_default()
                .format("%Y-%m-%dT%H:%M:%S.000000Z")
                .to_string()
        };
        let domain_of =
            |id: &str| json!({"id": id, "name": if id == DEFAULT_DOMAIN { "Default" } else { id }});
        let user = tx.get("user", &c.u).await.map_err(db)?;
        let user_name = user
            .as_ref()
            .and_then(|u| {
                u.body
                    .get("name")
                    .and_then(Value::as_str)
                    .map(str::to_string)
            })
            .unwrap_or_default();
        let user_domain = user
            .as_ref()
            .and_then(|u| {
                u.body
                    .get("domain_id")
                    .and_then(Value::as_str)
                    .map(str::to_string)
            })
            .unwrap_or_else(|| DEFAULT_DOMAIN.to_string());
        let mut token = json!({
            "methods": [method],
            "user": {"id": c.u, "name": user_name, "domain": domain_of(&user_domain), "password_expires_at": null},
            "audit_ids": [c.a],
            "expires_at": ts(c.e),
            "issued_at": ts(c.i),
        });
        if !c.p.is_empty() || c.h.is_some() {
            let project = match c.p.as_str() {
                "" => None,
                p => tx.get("project", p).await.map_err(db)?,
            };
            let (name, domain) = project
                .map(|p| {
                    (
                        p.body
                            .get("name")
                            .and_then(Value::as_str)
                            .unwrap_or_default()
                            .to_string(),
                        p.body
                            .get("domain_id")
                            .and_then(Value::as_str)
                            .unwrap_or(DEFAULT_DOMAIN)
                            .to_string(),
                    )
                })
                .unwrap_or_default();
            let mut roles = Vec::new();
            for name in &c.r {
                if let Some(r) = find_by_name(tx, "role", "", name).await? {
                    roles.push(json!({"id": r.id, "name": name}));
                }
            }
            let base = self
                .config()
                .public_url
                .clone()
                .unwrap_or_else(|| base.to_string());
            let region = self.config().region.clone();
            let endpoint = |service: &str, url: String| {
                json!({"id": format!("{service}-public"), "interface": "public", "region": region,
                       "region_id": region, "url": url})
            };
            let catalog = json!([
                {"id": "identity", "type": "identity", "name": "keystone",
                 "endpoints": [endpoint("identity", format!("{base}/v3"))]},
                {"id": "network", "type": "network", "name": "neutron",
                 "endpoints": [endpoint("network", base.clone())]},
            ]);
            if !c.p.is_empty() {
                token["project"] = json!({"id": c.p, "name": name, "domain": domain_of(&domain)});
                token["is_domain"] = json!(false);
            }
            token["roles"] = json!(roles);
            token["catalog"] = catalog;
        }
        Ok(json!({"token": token}))
    }

    /// The claims of a subject token of `DELETE`/`GET /v3/auth/tokens`: valid, and the
    /// caller's own unless it is admin; 404 otherwise.
    async fn subject_claims(&self, ctx: &Context, subject: &str) -> ApiResult<Claims> {
        let claims = self
            .valid_claims(subject)
            .await
            .map_err(|_| keystone_not_found("token", "subject"))?;
        if !ctx.is_admin() && claims.u != ctx.user_id {
            return Err(keystone_not_found("token", "subject"));
        }
        Ok(claims)
    }

    /// The claims of a token that is signed by this deployment, unexpired and not revoked.
    async fn valid_claims(&self, token: &str) -> ApiResult<Claims> {
        let now = chrono::Utc::now().timestamp();
        let claims =
            token::verify(&self.inner.token_key, token, now).ok_or_else(ApiError::unauthorized)?;
        if self.is_revoked(&claims).await? {
            return Err(ApiError::unauthorized());
        }
        Ok(claims)
    }

    /// Validates a token for the network API.
    pub async fn authenticate(&self, token: &str) -> ApiResult<Context> {
        let claims = self.valid_claims(token).await?;
        Ok(match &claims.h {
            Some(host) => Context::agent(&claims.u, host),
            None => Context::new(&claims.u, &claims.p, &claims.r),
        })
    }

    /// `DELETE /v3/auth/tokens`: revokes the subject token (the caller's own, or any for
    /// admins); 404 when it is not a valid token the caller may see.
    pub async fn revoke_token(&self, ctx: &Context, subject: &str) -> ApiResult<()> {
        let claims = self.subject_claims(ctx, subject).await?;
        let mut tx = self.write().await?;
        self.revoke_tokens(&mut tx, Revoked::Token(&claims.a))
            .await?;
        tx.commit().await.map_err(db)
    }

    /// `POST /v3/users/{id}/password`: a user changes their own password, giving the old
    /// one (the credential of this call, as in Keystone); every token they hold is revoked.
    pub async fn change_password(&self, user: &str, body: &Value) -> ApiResult<()> {
        let bad = |m: &str| ApiError::new(400, "ValidationError", m.to_string());
        let input = body
            .get("user")
            .ok_or_else(|| bad("'user' is a required property"))?;
        let field = |name: &str| {
            input
                .get(name)
                .and_then(Value::as_str)
                .ok_or_else(|| bad(&format!("'{name}' is a required property")))
        };
        let (old, new) = (field("original_password")?, field("password")?);
        let mut tx = self.write().await?;
        let unauthorized = || {
            ApiError::new(
                401,
                "Unauthorized",
                "The request you have made requires authentication.",
            )
        };
        // An unknown user is refused like a wrong password: the call reveals no names.
        let mut rec = tx
            .get("user", user)
            .await
            .map_err(db)?
            .ok_or_else(unauthorized)?;
        let hash = rec.body["password_hash"].as_str().unwrap_or_default();
        if !check_password(old, hash) || disabled(&rec.body) {
            return Err(unauthorized());
        }
        rec.body["password_hash"] = json!(hash_password(new));
        tx.update("user", user, &rec.body).await.map_err(db)?;
        self.revoke_tokens(&mut tx, Revoked::User(user)).await?;
        tx.commit().await.map_err(db)
    }

    /// `GET /v3/auth/tokens`: the body of a valid subject token.
    pub async fn validate_token(
        &self,
        ctx: &Context,
        subject: &str,
        base: &str,
    ) -> ApiResult<Value> {
        let claims = self.subject_claims(ctx, subject).await?;
        let mut tx = self.read().await?;
        self.token_body(&mut tx, &claims, "password", base).await
    }

    /// `GET /v3/{collection}` with Keystone's simple filters (`name`, `domain_id`, `enabled`).
    pub async fn identity_list(
        &self,
        ctx: &Context,
        collection: &str,
        filters: &[(String, String)],
        base: &str,
    ) -> ApiResult<Value> {
        let kind = kind_of(collection)?;
        let mut tx = self.read().await?;
        let mut records = tx.list(kind, &Selector::default()).await.map_err(db)?;
        if !ctx.is_admin() {
            records.retain(|r| match kind {
                "project" => r.id == ctx.project_id,
                "user" => r.id == ctx.user_id,
                _ => true,
            });
        }
        let items: Vec<Value> = records
            .into_iter()
            .map(|r| r.body)
            .filter(|b| {
                filters.iter().all(|(k, v)| match b.get(k) {
                    Some(Value::String(s)) => {
                        if k == "name" {
                            s.eq_ignore_ascii_case(v)
                        } else {
                            s == v
                        }
                    }
                    Some(Value::Bool(x)) => v.eq_ignore_ascii_case(&x.to_string()),
                    _ => !matches!(k.as_str(), "name" | "domain_id" | "enabled" | "id"),
                })
            })
            .map(|b| links(public(b), base, collection))
            .collect();
        Ok(
            json!({collection: items, "links": {"self": format!("{base}/v3/{collection}"), "next": null, "previous": null}}),
        )
    }

    /// `GET /v3/{collection}/{id}`.
    pub async fn identity_get(
        &self,
        ctx: &Context,
        collection: &str,
        id: &str,
        base: &str,
    ) -> ApiResult<Value> {
        let kind = kind_of(collection)?;
        let allowed = ctx.is_admin()
            || matches!(kind, "role" | "domain")
            || (kind == "project" && id == ctx.project_id)
            || (kind == "user" && id == ctx.user_id);
        let mut tx = self.read().await?;
        let rec = tx.get(kind, id).await.map_err(db)?;
        match rec {
            Some(r) if allowed => Ok(json!({kind: links(public(r.body), base, collection)})),
            Some(_) => Err(require_admin(ctx).unwrap_err()),
            None => Err(keystone_not_found(kind, id)),
        }
    }

    /// `POST /v3/{collection}`: create a domain, project, user or role.
    pub async fn identity_create(
        &self,
        ctx: &Context,
        collection: &str,
        body: &Value,
        base: &str,
    ) -> ApiResult<Value> {
        require_admin(ctx)?;
        let kind = kind_of(collection)?;
        let input = body.get(kind).and_then(Value::as_object).ok_or_else(|| {
            ApiError::new(
                400,
                "ValidationError",
                format!("'{kind}' is a required property"),
            )
        })?;
        let name = str_field(input, "name")
            .filter(|n| !n.is_empty() && n.len() <= 255)
            .ok_or_else(|| ApiError::new(400, "ValidationError", "'name' is a required property"))?
            .to_string();
        let domain = str_field(input, "domain_id")
            .unwrap_or(DEFAULT_DOMAIN)
            .to_string();
        let mut tx = self.write().await?;
        if kind != "domain"
            && kind != "role"
            && tx.get("domain", &domain).await.map_err(db)?.is_none()
        {
            return Err(ApiError::new(
                400,
                "ValidationError",
                format!("Could not find domain: {domain}."),
            ));
        }
        let mut out = Map::new();
        out.insert("id".into(), json!(new_id()));
        out.insert("name".into(), json!(name));
        out.insert(
            "description".into(),
            input.get("description").cloned().unwrap_or(Value::Null),
        );
        match kind {
            "project" => {
                out.insert("domain_id".into(), json!(domain));
                out.insert(
                    "enabled".into(),
                    input.get("enabled").cloned().unwrap_or(json!(true)),
                );
                out.insert("is_domain".into(), json!(false));
                out.insert("parent_id".into(), json!(domain));
                out.insert(
                    "tags".into(),
                    input.get("tags").cloned().unwrap_or(json!([])),
                );
                out.insert("options".into(), json!({}));
            }
            "user" => {
                out.insert("domain_id".into(), json!(domain));
                out.insert(
                    "enabled".into(),
                    input.get("enabled").cloned().unwrap_or(json!(true)),
                );
                if let Some(p) = input.get("default_project_id") {
                    out.insert("default_project_id".into(), p.clone());
                }
                if let Some(e) = input.get("email") {
                    out.insert("email".into(), e.clone());
                }
                out.insert("password_expires_at".into(), Value::Null);
                out.insert("options".into(), json!({}));
                if let Some(p) = input.get("password").and_then(Value::as_str) {
                    out.insert("password_hash".into(), json!(hash_password(p)));
                }
            }
            "domain" => {
                out.insert(
                    "enabled".into(),
                    input.get("enabled").cloned().unwrap_or(json!(true)),
                );
                out.insert("tags".into(), json!([]));
                out.insert("options".into(), json!({}));
            }
            _ => {
                out.insert("domain_id".into(), Value::Null);
                out.insert("options".into(), json!({}));
            }
        }
        let body = insert_named(&mut tx, kind, out).await?;
        tx.commit().await.map_err(db)?;
        Ok(json!({kind: links(public(body), base, collection)}))
    }

    /// `PATCH /v3/{collection}/{id}`: change name, description, enabled, password.
    pub async fn identity_update(
        &self,
        ctx: &Context,
        collection: &str,
        id: &str,
        body: &Value,
        base: &str,
    ) -> ApiResult<Value> {
        require_admin(ctx)?;
        let kind = kind_of(collection)?;
        let input = body
            .get(kind)
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        let mut tx = self.write().await?;
        let mut rec = tx
            .get(kind, id)
            .await
            .map_err(db)?
            .ok_or_else(|| keystone_not_found(kind, id))?;
        let obj = rec.body.as_object_mut().ok_or_else(ApiError::internal)?;
        // A new password or switching off a user or project takes back its tokens.
        let revoke = match kind {
            "user"
                if input.contains_key("password")
                    || input.get("enabled") == Some(&json!(false)) =>
            {
                Some(Revoked::User(id))
            }
            "project" if input.get("enabled") == Some(&json!(false)) => Some(Revoked::Project(id)),
            _ => None,
        };
        for (k, v) in input {
            match k.as_str() {
                "id" | "domain_id" | "password_hash" => {}
                "password" => {
                    if let Some(p) = v.as_str() {
                        obj.insert("password_hash".into(), json!(hash_password(p)));
                    }
                }
                "name" => {
                    let old = obj
                        .get("name")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_lowercase();
                    let new = v.as_str().unwrap_or_default().to_string();
                    let domain = obj
                        .get("domain_id")
                        .and_then(Value::as_str)
                        .unwrap_or(DEFAULT_DOMAIN)
                        .to_string();
                    if new.to_lowercase() != old {
                        let scope = name_scope(kind, &domain);
                        if !tx
                            .claim(&scope, &new.to_lowercase(), id)
                            .await
                            .map_err(db)?
                        {
                            return Err(conflict(kind, &new));
                        }
                        tx.release(&scope, &old).await.map_err(db)?;
                    }
                    obj.insert(k, json!(new));
                }
                _ => {
                    obj.insert(k, v);
                }
            }
        }
        tx.update(kind, id, &rec.body).await.map_err(db)?;
        if let Some(subject) = revoke {
            self.revoke_tokens(&mut tx, subject).await?;
        }
        tx.commit().await.map_err(db)?;
        Ok(json!({kind: links(public(rec.body), base, collection)}))
    }

    /// `DELETE /v3/{collection}/{id}`; deleting a user, project or role drops its role
    /// assignments.
    pub async fn identity_delete(
        &self,
        ctx: &Context,
        collection: &str,
        id: &str,
    ) -> ApiResult<()> {
        require_admin(ctx)?;
        let kind = kind_of(collection)?;
        let mut tx = self.write().await?;
        let rec = tx
            .get(kind, id)
            .await
            .map_err(db)?
            .ok_or_else(|| keystone_not_found(kind, id))?;
        let name = rec
            .body
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_lowercase();
        let domain = rec
            .body
            .get("domain_id")
            .and_then(Value::as_str)
            .unwrap_or(DEFAULT_DOMAIN)
            .to_string();
        tx.release(&name_scope(kind, &domain), &name)
            .await
            .map_err(db)?;
        tx.delete(kind, id).await.map_err(db)?;
        match kind {
            "user" => self.revoke_tokens(&mut tx, Revoked::User(id)).await?,
            "project" => self.revoke_tokens(&mut tx, Revoked::Project(id)).await?,
            _ => {}
        }
        let sel = match kind {
            "user" => Some(Selector {
                parent_ids: Some(vec![id.to_string()]),
                ..Default::default()
            }),
            "project" => Some(Selector {
                project_ids: Some(vec![id.to_string()]),
                ..Default::default()
            }),
            _ => None,
        };
        let sel = match (sel, kind) {
            (Some(sel), _) => Some(sel),
            // A role's assignments are not indexed by role: read them all (few).
            (None, "role") => Some(Selector::default()),
            (None, _) => None,
        };
        if let Some(sel) = sel {
            for a in tx.list("role_assignment", &sel).await.map_err(db)? {
                if kind == "role" && a.body["role_id"] != id {
                    continue;
                }
                tx.delete("role_assignment", &a.id).await.map_err(db)?;
                if kind == "role" {
                    let user = a.parent_id.clone().unwrap_or_default();
                    let project = a.project_id.clone();
                    self.revoke_tokens(&mut tx, Revoked::UserOnProject(&user, &project))
                        .await?;
                }
            }
        }
        tx.commit().await.map_err(db)?;
        Ok(())
    }

    /// `PUT /v3/projects/{p}/users/{u}/roles/{r}`.
    pub async fn grant_role(
        &self,
        ctx: &Context,
        project: &str,
        user: &str,
        role: &str,
    ) -> ApiResult<()> {
        require_admin(ctx)?;
        let mut tx = self.write().await?;
        for (kind, id) in [("project", project), ("user", user), ("role", role)] {
            if tx.get(kind, id).await.map_err(db)?.is_none() {
                return Err(keystone_not_found(kind, id));
            }
        }
        self.assign(&mut tx, project, user, role).await?;
        tx.commit().await.map_err(db)?;
        Ok(())
    }

    /// `HEAD`/`DELETE /v3/projects/{p}/users/{u}/roles/{r}`.
    pub async fn check_or_revoke_role(
        &self,
        ctx: &Context,
        project: &str,
        user: &str,
        role: &str,
        revoke: bool,
    ) -> ApiResult<()> {
        require_admin(ctx)?;
        let id = format!("{project}|{user}|{role}");
        let mut tx = self.write().await?;
        if tx.get("role_assignment", &id).await.map_err(db)?.is_none() {
            return Err(keystone_not_found("role assignment", &id));
        }
        if revoke {
            tx.delete("role_assignment", &id).await.map_err(db)?;
            // The user's tokens on the project carry the role: they go with it.
            self.revoke_tokens(&mut tx, Revoked::UserOnProject(user, project))
                .await?;
            tx.commit().await.map_err(db)?;
        }
        Ok(())
    }

    /// `GET /v3/projects/{p}/users/{u}/roles`.
    pub async fn list_user_project_roles(
        &self,
        ctx: &Context,
        project: &str,
        user: &str,
        base: &str,
    ) -> ApiResult<Value> {
        if !ctx.is_admin() && ctx.user_id != user {
            require_admin(ctx)?;
        }
        let mut tx = self.read().await?;
        let roles: Vec<Value> = role_names(&mut tx, user, project)
            .await?
            .into_iter()
            .map(|r| links(r.body, base, "roles"))
            .collect();
        Ok(json!({"roles": roles, "links": {"self": null, "next": null, "previous": null}}))
    }

    /// `GET /v3/role_assignments`: filters `user.id`, `scope.project.id`, `role.id`;
    /// `effective` adds the implied roles (admin ⇒ member ⇒ reader) as Keystone lists them;
    /// `include_names` adds the name (and domain) of each user, project and role. Every
    /// assignment here is a user's role on a project, so filters for groups, domain or system
    /// scopes and inherited assignments match nothing.
    pub async fn list_role_assignments(
        &self,
        ctx: &Context,
        filters: &[(String, String)],
        base: &str,
    ) -> ApiResult<Value> {
        let get = |k: &str| filters.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        // Keystone's boolean query flags: present and not `0`/`false`.
        let flag = |k: &str| get(k).is_some_and(|v| v != "0" && !v.eq_ignore_ascii_case("false"));
        let user = get("user.id");
        if !ctx.is_admin() && user.as_deref() != Some(ctx.user_id.as_str()) {
            require_admin(ctx)?;
        }
        let effective = flag("effective");
        let include_names = flag("include_names");
        let empty = [
            "group.id",
            "scope.domain.id",
            "scope.system",
            "scope.OS-INHERIT:inherited_to",
        ]
        .iter()
        .any(|k| get(k).is_some());
        let sel = Selector {
            project_ids: get("scope.project.id").map(|p| vec![p]),
            parent_ids: user.map(|u| vec![u]),
            ..Default::default()
        };
        let role_filter = get("role.id");
        let mut tx = self.read().await?;
        let stored = if empty {
            Vec::new()
        } else {
            tx.list("role_assignment", &sel).await.map_err(db)?
        };
        let mut names = Names::default();
        // (project, user, role, the directly assigned role it is implied by)
        let mut rows: Vec<(String, String, String, Option<String>)> = Vec::new();
        for a in &stored {
            let field = |k: &str| a.body[k].as_str().unwrap_or_default().to_string();
            let (project, user, role) = (field("project_id"), field("user_id"), field("role_id"));
            if effective {
                let Some(direct) = names.get(&mut tx, "role", &role).await? else {
                    continue;
                };
                let direct_name = s_of(&direct, "name").to_string();
                for implied in crate::context::implied_roles(std::slice::from_ref(&direct_name)) {
                    if implied == direct_name.to_ascii_lowercase() {
                        rows.push((project.clone(), user.clone(), role.clone(), None));
                    } else if let Some(r) = find_by_name(&mut tx, "role", "", &implied).await? {
                        rows.push((project.clone(), user.clone(), r.id, Some(role.clone())));
                    }
                }
            } else {
                rows.push((project, user, role, None));
            }
        }
        if let Some(r) = &role_filter {
            rows.retain(|(_, _, role, _)| role == r);
        }
        // An effective list names each (project, user, role) once.
        let mut seen = std::collections::HashSet::new();
        rows.retain(|(p, u, r, _)| seen.insert((p.clone(), u.clone(), r.clone())));
        let mut items = Vec::with_capacity(rows.len());
        for (project, user, role, prior) in rows {
            let mut links = json!({
                "assignment": format!("{base}/v3/projects/{project}/users/{user}/roles/{role}")
            });
            if let Some(prior) = prior {
                links["prior_role"] = json!(format!("{base}/v3/roles/{prior}"));
            }
            let (mut r, mut u, mut p) = (
                json!({"id": role}),
                json!({"id": user}),
                json!({"id": project}),
            );
            if include_names {
                names.describe(&mut tx, "role", &mut r).await?;
                names.describe(&mut tx, "user", &mut u).await?;
                names.describe(&mut tx, "project", &mut p).await?;
            }
            items.push(json!({"role": r, "user": u, "scope": {"project": p}, "links": links}));
        }
        Ok(json!({"role_assignments": items,
                  "links": {"self": format!("{base}/v3/role_assignments"), "next": null, "previous": null}}))
    }

    /// `GET /v3/auth/projects` and `GET /v3/users/{id}/projects`: projects the user has a role on.
    pub async fn user_projects(&self, ctx: &Context, user: &str, base: &str) -> ApiResult<Value> {
        if !ctx.is_admin() && ctx.user_id != user {
            require_admin(ctx)?;
        }
        let mut tx = self.read().await?;
        let sel = Selector {
            parent_ids: Some(vec![user.to_string()]),
            ..Default::default()
        };
        let mut ids: Vec<String> = tx
            .list("role_assignment", &sel)
            .await
            .map_err(db)?
            .into_iter()
            .map(|a| a.project_id)
            .collect();
        ids.sort();
        ids.dedup();
        let sel = Selector {
            ids: Some(ids),
            ..Default::default()
        };
        let projects: Vec<Value> = tx
            .list("project", &sel)
            .await
            .map_err(db)?
            .into_iter()
            .map(|p| links(p.body, base, "projects"))
            .collect();
        Ok(json!({"projects": projects, "links": {"self": null, "next": null, "previous": null}}))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_hashes_verify() {
        let h = hash_password("secret");
        assert!(check_password("secret", &h));
        assert!(!check_password("Secret", &h));
        assert!(!check_password("secret", "garbage"));
        assert_ne!(h, hash_password("secret"), "salted");
    }
}
