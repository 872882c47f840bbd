//! Host credentials: what a host agent authenticates with instead of an admin's openrc.
//!
//! An admin creates one per host (`POST /v2.0/neutrino/host-credentials`, or `neutrino
//! host-credential create --host H`) and gets its secret once; only a PBKDF2 hash is stored
//! (kind `host_credential`, never mirrored to agents). The agent logs in with Keystone's
//! `application_credential` method (`OS_APPLICATION_CREDENTIAL_ID` / `_SECRET` of an openrc)
//! and gets a token for "the agent of host H": the `service` role, no project, the host in
//! the claims ([`crate::Context::agent_host`]). The API layer refuses such a token every call
//! but the agent calls, and those refuse any host but H. Deleting the credential revokes its
//! tokens (a revocation event for its id, as for a deleted user).

use neutrino_store::{Record, Selector};
use neutrino_types::{ApiError, ApiResult};
use serde_json::{json, Value};

use crate::context::AGENT_ROLE;
use crate::identity::{check_password, hash_password};
use crate::revocation::Revoked;
use crate::token::{self, Claims};
use crate::{db, hex, new_id, now, App, Context};

/// The store kind.
const KIND: &str = "host_credential";
/// Longest host name accepted (Neutron's `binding:host_id` limit).
const MAX_HOST: usize = 255;

fn require_admin(ctx: &Context) -> ApiResult<()> {
    if ctx.is_admin() {
        Ok(())
    } else {
        Err(ApiError::forbidden("manage_host_credentials"))
    }
}

fn not_found(id: &str) -> ApiError {
    ApiError::new(
        404,
        "HostCredentialNotFound",
        format!("Host credential {id} could not be found."),
    )
}

/// What is shown of a stored credential (never the hash).
fn public(body: &Value) -> Value {
    json!({
        "id": body["id"],
        "host": body["host"],
        "description": body["description"],
        "created_at": body["created_at"],
    })
}

fn unauthorized() -> ApiError {
    ApiError::new(
        401,
        "Unauthorized",
        "The request you have made requires authentication.",
    )
}

impl App {
    /// `POST /v2.0/neutrino/host-credentials` with `{"host_credential": {"host",
    /// "description"?}}` (admins): a new credential for the agent of `host`; the answer is
    /// the only place its `secret` is ever shown.
    pub async fn create_host_credential(&self, ctx: &Context, body: &Value) -> ApiResult<Value> {
        require_admin(ctx)?;
        let input = body
            .get("host_credential")
            .and_then(Value::as_object)
            .ok_or_else(|| ApiError::bad_request("Resource body required: host_credential"))?;
        if let Some(k) = input
            .keys()
            .find(|k| !matches!(k.as_str(), "host" | "description"))
        {
            return Err(ApiError::bad_request(format!(
                "Unrecognized attribute(s) '{k}'"
            )));
        }
        let host = input
            .get("host")
            .and_then(Value::as_str)
            .filter(|h| {
                !h.is_empty() && h.len() <= MAX_HOST && !h.chars().any(|c| c.is_control())
            })
            .ok_or_else(|| {
                ApiError::bad_request(format!(
                    "Invalid input for host: a non-empty string of at most {MAX_HOST} characters is required"
                ))
            })?;
        let description =
            match input.get("description") {
                None | Some(Value::Null) => String::new(),
                Some(Value::String(d)) if d.len() <= 255 => d.clone(),
                Some(_) => return Err(ApiError::bad_request(
                    "Invalid input for description: a string of at most 255 characters is required",
                )),
            };
        let secret = hex(&rand::random::<[u8; 32]>());
        let id = new_id();
        let doc = json!({
            "id": id, "host": host, "description": description, "created_at": now(),
            "secret_hash": hash_password(&secret),
        });
        let mut tx = self.write().await?;
        tx.insert(&Record {
            kind: KIND.to_string(),
            id: id.clone(),
            project_id: String::new(),
            parent_id: None,
            body: doc.clone(),
        })
        .await
        .map_err(db)?;
        tx.commit().await.map_err(db)?;
        tracing::info!(credential = %id, %host, "host credential created");
        let mut out = public(&doc);
        out["secret"] = json!(secret);
        Ok(json!({ "host_credential": out }))
    }

    /// `GET /v2.0/neutrino/host-credentials[?host=H]` (admins).
    pub async fn list_host_credentials(
        &self,
        ctx: &Context,
        query: &[(String, String)],
    ) -> ApiResult<Value> {
        require_admin(ctx)?;
        let hosts: Vec<&str> = query
            .iter()
            .filter(|(k, _)| k == "host")
            .map(|(_, v)| v.as_str())
            .collect();
        let mut tx = self.read().await?;
        let items: Vec<Value> = tx
            .list(KIND, &Selector::default())
            .await
            .map_err(db)?
            .iter()
            .filter(|r| hosts.is_empty() || hosts.contains(&r.body["host"].as_str().unwrap_or("")))
            .map(|r| public(&r.body))
            .collect();
        Ok(json!({ "host_credentials": items }))
    }

    /// `GET /v2.0/neutrino/host-credentials/{id}` (admins).
    pub async fn show_host_credential(&self, ctx: &Context, id: &str) -> ApiResult<Value> {
        require_admin(ctx)?;
        let mut tx = self.read().await?;
        let rec = tx
            .get(KIND, id)
            .await
            .map_err(db)?
            .ok_or_else(|| not_found(id))?;
        Ok(json!({ "host_credential": public(&rec.body) }))
    }

    /// `DELETE /v2.0/neutrino/host-credentials/{id}` (admins): the credential and every
    /// token issued from it stop working at once.
    pub async fn delete_host_credential(&self, ctx: &Context, id: &str) -> ApiResult<()> {
        require_admin(ctx)?;
        let mut tx = self.write().await?;
        if tx.get(KIND, id).await.map_err(db)?.is_none() {
            return Err(not_found(id));
        }
        tx.delete(KIND, id).await.map_err(db)?;
        self.revoke_tokens(&mut tx, Revoked::User(id)).await?;
        tx.commit().await.map_err(db)?;
        tracing::info!(credential = %id, "host credential deleted; its tokens are revoked");
        Ok(())
    }

    /// `POST /v3/auth/tokens` with the `application_credential` method naming a host
    /// credential (`{"id", "secret"}`): a token for the agent of its host, with the catalog.
    /// A scope in the request is ignored (the token's scope is the host); an unknown id or a
    /// wrong secret is 401.
    pub(crate) async fn issue_agent_token(
        &self,
        identity: &Value,
        base: &str,
    ) -> ApiResult<(String, Value)> {
        let given = identity.get("application_credential");
        let field = |k: &str| given.and_then(|g| g.get(k)).and_then(Value::as_str);
        let (Some(id), Some(secret)) = (field("id"), field("secret")) else {
            return Err(ApiError::new(
                400,
                "ValidationError",
                "application_credential.id and application_credential.secret are required",
            ));
        };
        let mut tx = self.read().await?;
        let rec = tx
            .get(KIND, id)
            .await
            .map_err(db)?
            .ok_or_else(unauthorized)?;
        let hash = rec.body["secret_hash"].as_str().unwrap_or_default();
        if !check_password(secret, hash) {
            return Err(unauthorized());
        }
        let host = rec.body["host"].as_str().unwrap_or_default().to_string();
        let now_ms = chrono::Utc::now().timestamp_millis();
        let now = now_ms / 1000;
        let claims = Claims {
            u: rec.id.clone(),
            p: String::new(),
            r: vec![AGENT_ROLE.to_string()],
            e: now + self.config().token_ttl_secs,
            i: now,
            a: new_id().replace('-', "")[..22].to_string(),
            m: now_ms,
            h: Some(host.clone()),
        };
        let token = token::sign(&self.inner.token_key, &claims);
        let mut body = self
            .token_body(&mut tx, &claims, "application_credential", base)
            .await?;
        let t = &mut body["token"];
        t["user"]["name"] = json!(format!("neutrino-agent:{host}"));
        t["roles"] = json!([{"id": AGENT_ROLE, "name": AGENT_ROLE}]);
        t["application_credential"] =
            json!({"id": rec.id, "name": format!("host:{host}"), "restricted": true});
        t["neutrino_agent_host"] = json!(host);
        Ok((token, body))
    }
}
