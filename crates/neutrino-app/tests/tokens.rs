//! Tokens expire, and are revoked when their user is deleted or disabled, changes password or
//! loses a role on the token's project, when the project is deleted or disabled, or one by
//! one through `DELETE /v3/auth/tokens`. A token made from a token expires with it.

mod common;

use common::*;
use neutrino_app::Config;
use serde_json::{json, Value};

/// Logs `user` in with `password` on `project`: the token and its body.
async fn login(t: &Env, user: &str, password: &str, project: &str) -> Result<(String, Value), u16> {
    let body = json!({"auth": {
        "identity": {"methods": ["password"], "password": {"user": {"id": user, "password": password}}},
        "scope": {"project": {"id": project}},
    }});
    t.app
        .issue_token(&body, IDENTITY_BASE)
        .await
        .map_err(|e| e.status)
}

async fn works(t: &Env, token: &str) -> bool {
    t.app.authenticate(token).await.is_ok()
}

/// A user with the member role on a project of their own.
struct Member {
    user: String,
    project: String,
    role: String,
}

async fn member(t: &Env, name: &str) -> Member {
    let user = make_identity(t, "users", "user", name).await;
    let project = make_identity(t, "projects", "project", &format!("{name}-project")).await;
    let role = role_id(t, "member").await;
    t.app
        .grant_role(&admin(), &project, &user, &role)
        .await
        .unwrap();
    Member {
        user,
        project,
        role,
    }
}

async fn setup() -> Env {
    let t = env().await;
    t.app.bootstrap(Some("secret")).await.unwrap();
    t
}

#[tokio::test]
async fn tokens_expire_after_the_configured_lifetime() {
    let t = env_with(Config {
        token_ttl_secs: 2,
        ..Config::default()
    })
    .await;
    t.app.bootstrap(Some("secret")).await.unwrap();
    let m = member(&t, "ann").await;
    let (token, body) = login(&t, &m.user, "pw", &m.project).await.unwrap();
    let issued = chrono::DateTime::parse_from_rfc3339(body["token"]["issued_at"].as_str().unwrap());
    let expires =
        chrono::DateTime::parse_from_rfc3339(body["token"]["expires_at"].as_str().unwrap());
    assert_eq!((expires.unwrap() - issued.unwrap()).num_seconds(), 2);
    assert!(works(&t, &token).await);
    tokio::time::sleep(std::time::Duration::from_millis(3100)).await;
    assert!(!works(&t, &token).await, "expired");
    let err = t.app.authenticate(&token).await.unwrap_err();
    assert_eq!(err.status, 401);
}

#[tokio::test]
async fn a_token_made_from_a_token_keeps_its_expiry() {
    let t = setup().await;
    let m = member(&t, "ben").await;
    let (token, body) = login(&t, &m.user, "pw", &m.project).await.unwrap();
    let again = json!({"auth": {
        "identity": {"methods": ["token"], "token": {"id": token}},
        "scope": {"project": {"id": m.project}},
    }});
    let (_, rescoped) = t.app.issue_token(&again, IDENTITY_BASE).await.unwrap();
    assert_eq!(rescoped["token"]["expires_at"], body["token"]["expires_at"]);
}

#[tokio::test]
async fn a_new_password_revokes_the_users_tokens() {
    let t = setup().await;
    let m = member(&t, "cat").await;
    let (old, _) = login(&t, &m.user, "pw", &m.project).await.unwrap();
    // The user changes it, giving the old one (no token needed).
    let change = json!({"user": {"original_password": "wrong", "password": "pw2"}});
    assert_eq!(
        t.app
            .change_password(&m.user, &change)
            .await
            .unwrap_err()
            .status,
        401
    );
    assert!(works(&t, &old).await, "a refused change revokes nothing");
    let change = json!({"user": {"original_password": "pw", "password": "pw2"}});
    t.app.change_password(&m.user, &change).await.unwrap();
    assert!(!works(&t, &old).await);
    assert_eq!(login(&t, &m.user, "pw", &m.project).await.unwrap_err(), 401);
    let (new, _) = login(&t, &m.user, "pw2", &m.project).await.unwrap();
    assert!(
        works(&t, &new).await,
        "a token issued after the change works"
    );

    // An admin sets it: the same.
    let patch = json!({"user": {"password": "pw3"}});
    t.app
        .identity_update(&admin(), "users", &m.user, &patch, IDENTITY_BASE)
        .await
        .unwrap();
    assert!(!works(&t, &new).await);
    let (newest, _) = login(&t, &m.user, "pw3", &m.project).await.unwrap();
    assert!(works(&t, &newest).await);
}

#[tokio::test]
async fn deleting_or_disabling_the_user_revokes_its_tokens() {
    let t = setup().await;
    let m = member(&t, "dan").await;
    let other = member(&t, "eve").await;
    let (token, _) = login(&t, &m.user, "pw", &m.project).await.unwrap();
    let (bystander, _) = login(&t, &other.user, "pw", &other.project).await.unwrap();
    let off = json!({"user": {"enabled": false}});
    t.app
        .identity_update(&admin(), "users", &m.user, &off, IDENTITY_BASE)
        .await
        .unwrap();
    assert!(!works(&t, &token).await);
    assert_eq!(login(&t, &m.user, "pw", &m.project).await.unwrap_err(), 401);
    let on = json!({"user": {"enabled": true}});
    t.app
        .identity_update(&admin(), "users", &m.user, &on, IDENTITY_BASE)
        .await
        .unwrap();
    let (token, _) = login(&t, &m.user, "pw", &m.project).await.unwrap();
    assert!(works(&t, &token).await);
    t.app
        .identity_delete(&admin(), "users", &m.user)
        .await
        .unwrap();
    assert!(!works(&t, &token).await);
    assert!(works(&t, &bystander).await, "other users keep theirs");
}

#[tokio::test]
async fn losing_a_role_revokes_the_tokens_on_that_project_only() {
    let t = setup().await;
    let m = member(&t, "fay").await;
    let second = make_identity(&t, "projects", "project", "fay-second").await;
    t.app
        .grant_role(&admin(), &second, &m.user, &m.role)
        .await
        .unwrap();
    let (first_token, _) = login(&t, &m.user, "pw", &m.project).await.unwrap();
    let (second_token, _) = login(&t, &m.user, "pw", &second).await.unwrap();
    t.app
        .check_or_revoke_role(&admin(), &m.project, &m.user, &m.role, true)
        .await
        .unwrap();
    assert!(!works(&t, &first_token).await);
    assert!(works(&t, &second_token).await);
    assert_eq!(login(&t, &m.user, "pw", &m.project).await.unwrap_err(), 401);
}

#[tokio::test]
async fn deleting_or_disabling_the_project_revokes_its_tokens() {
    let t = setup().await;
    let m = member(&t, "gus").await;
    let (token, _) = login(&t, &m.user, "pw", &m.project).await.unwrap();
    let off = json!({"project": {"enabled": false}});
    t.app
        .identity_update(&admin(), "projects", &m.project, &off, IDENTITY_BASE)
        .await
        .unwrap();
    assert!(!works(&t, &token).await);
    assert_eq!(login(&t, &m.user, "pw", &m.project).await.unwrap_err(), 401);
    let h = member(&t, "hal").await;
    let (token, _) = login(&t, &h.user, "pw", &h.project).await.unwrap();
    t.app
        .identity_delete(&admin(), "projects", &h.project)
        .await
        .unwrap();
    assert!(!works(&t, &token).await);
}

#[tokio::test]
async fn one_token_is_revoked_by_its_owner_or_an_admin() {
    let t = setup().await;
    let m = member(&t, "ida").await;
    let (one, _) = login(&t, &m.user, "pw", &m.project).await.unwrap();
    let (two, _) = login(&t, &m.user, "pw", &m.project).await.unwrap();
    let (three, _) = login(&t, &m.user, "pw", &m.project).await.unwrap();
    let stranger = member(&t, "jon").await;
    let stranger_ctx = t
        .app
        .authenticate(
            &login(&t, &stranger.user, "pw", &stranger.project)
                .await
                .unwrap()
                .0,
        )
        .await
        .unwrap();
    let err = t.app.revoke_token(&stranger_ctx, &one).await.unwrap_err();
    assert_eq!(err.status, 404, "someone else's token is not found");
    assert!(works(&t, &one).await);

    let own = t.app.authenticate(&one).await.unwrap();
    t.app.revoke_token(&own, &one).await.unwrap();
    assert!(!works(&t, &one).await);
    assert!(works(&t, &two).await, "only that token");
    assert_eq!(
        t.app.revoke_token(&own, &one).await.unwrap_err().status,
        404
    );
    t.app.revoke_token(&admin(), &two).await.unwrap();
    assert!(!works(&t, &two).await);
    assert!(works(&t, &three).await);
    let err = t
        .app
        .validate_token(&admin(), &two, IDENTITY_BASE)
        .await
        .unwrap_err();
    assert_eq!(err.status, 404, "a revoked token does not validate");
}
