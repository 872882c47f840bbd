//! `/v3/...`: the Keystone v3 calls the `openstack` CLI, openstacksdk and Tempest's dynamic
//! credentials make.

use axum::http::header::HeaderValue;
use axum::http::Method;
use axum::response::Response;
use neutrino_types::{ApiError, ApiResult};
use serde_json::{json, Value};

use crate::reply::{empty, json, keystone_error};
use crate::{caller, ApiState, Request};

fn version(base: &str) -> Value {
    json!({"version": {
        "id": "v3.14", "status": "stable", "updated": "2020-04-07T00:00:00Z",
        "links": [{"rel": "self", "href": format!("{base}/v3/")}],
        "media-types": [{"base": "application/json", "type": "application/vnd.openstack.identity-v3+json"}]
    }})
}

fn body_json(req: &Request) -> ApiResult<Value> {
    serde_json::from_slice(&req.body).map_err(|_| {
        ApiError::new(
            400,
            "ValidationError",
            "The request body is not valid JSON.",
        )
    })
}

/// Routes one identity request.
pub(crate) async fn handle(state: &ApiState, req: &Request) -> Response {
    match route(state, req).await {
        Ok(r) => r,
        Err(e) => keystone_error(&e),
    }
}

async fn route(state: &ApiState, req: &Request) -> ApiResult<Response> {
    let app = &state.app;
    let seg: Vec<&str> = req.segments.iter().skip(1).map(String::as_str).collect();
    let base = req.base.as_str();
    let m = &req.method;
    if seg.is_empty() {
        return match *m {
            Method::GET | Method::HEAD => Ok(json(200, &version(base))),
            _ => Err(ApiError::new(
                405,
                "MethodNotAllowed",
                "The method is not allowed.",
            )),
        };
    }
    if seg == ["auth", "tokens"] && *m == Method::POST {
        let (token, body) = app.issue_token(&body_json(req)?, base).await?;
        let mut r = json(201, &body);
        if let Ok(v) = HeaderValue::from_str(&token) {
            r.headers_mut().insert("x-subject-token", v);
        }
        return Ok(r);
    }
    if let (&Method::POST, ["users", user, "password"]) = (m, seg.as_slice()) {
        // As in Keystone, the old password is the credential: no token needed.
        app.change_password(user, &body_json(req)?).await?;
        return Ok(empty(204));
    }
    // A host agent's credential is 403 here as for any user call; other failures are 401.
    let ctx = caller(state, req).await.map_err(|e| match e.status {
        403 => ApiError::new(
            403,
            "Forbidden",
            "You are not authorized to perform the requested action.",
        ),
        _ => ApiError::new(
            401,
            "Unauthorized",
            "The request you have made requires authentication.",
        ),
    })?;
    match (m.clone(), seg.as_slice()) {
        (Method::GET | Method::HEAD, ["auth", "tokens"]) => {
            let subject = req.header("x-subject-token").unwrap_or_default();
            let body = app.validate_token(&ctx, subject, base).await?;
            let mut r = json(200, &body);
            if let Ok(v) = HeaderValue::from_str(subject) {
                r.headers_mut().insert("x-subject-token", v);
            }
            Ok(r)
        }
        (Method::DELETE, ["auth", "tokens"]) => {
            let subject = req.header("x-subject-token").unwrap_or_default();
            app.revoke_token(&ctx, subject).await?;
            Ok(empty(204))
        }
        (Method::GET, ["auth", "projects"]) => Ok(json(
            200,
            &app.user_projects(&ctx, &ctx.user_id, base).await?,
        )),
        (Method::GET, ["role_assignments"]) => Ok(json(
            200,
            &app.list_role_assignments(&ctx, &req.query, base).await?,
        )),
        (Method::GET, ["users", user, "projects"]) => {
            Ok(json(200, &app.user_projects(&ctx, user, base).await?))
        }
        (Method::GET, ["projects", p, "users", u, "roles"]) => Ok(json(
            200,
            &app.list_user_project_roles(&ctx, p, u, base).await?,
        )),
        (Method::PUT, ["projects", p, "users", u, "roles", r]) => {
            app.grant_role(&ctx, p, u, r).await?;
            Ok(empty(204))
        }
        (Method::HEAD | Method::GET, ["projects", p, "users", u, "roles", r]) => {
            app.check_or_revoke_role(&ctx, p, u, r, false).await?;
            Ok(empty(204))
        }
        (Method::DELETE, ["projects", p, "users", u, "roles", r]) => {
            app.check_or_revoke_role(&ctx, p, u, r, true).await?;
            Ok(empty(204))
        }
        (Method::GET, [coll]) => Ok(json(
            200,
            &app.identity_list(&ctx, coll, &req.query, base).await?,
        )),
        (Method::POST, [coll]) => Ok(json(
            201,
            &app.identity_create(&ctx, coll, &body_json(req)?, base)
                .await?,
        )),
        (Method::GET, [coll, id]) => Ok(json(200, &app.identity_get(&ctx, coll, id, base).await?)),
        (Method::PATCH, [coll, id]) => Ok(json(
            200,
            &app.identity_update(&ctx, coll, id, &body_json(req)?, base)
                .await?,
        )),
        (Method::DELETE, [coll, id]) => {
            app.identity_delete(&ctx, coll, id).await?;
            Ok(empty(204))
        }
        _ => Err(ApiError::new(
            404,
            "NotFound",
            "The resource could not be found.",
        )),
    }
}
