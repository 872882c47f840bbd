//! Tokens expire, and are revoked when their user is deleted or disabled, changes password or
//! loses a role on the token's project, when the project is deleted or disabled, or one by
//! one through `DELETE /v3/auth/tokens`. A token made from a token expires with it.

use crate::common::*;
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

/// Logs `user` in on `app` (any server of a pair): the token.
async fn login_on(app: &App, user: &str, password: &str, project: &str) -> String {
    let body = json!({"auth": {
        "identity": {"methods": ["password"], "password": {"user": {"id": user, "password": password}}},
        "scope": {"project": {"id": project}},
    }});
    app.issue_token(&body, IDENTITY_BASE).await.unwrap().0
}

/// Whether `app` comes to refuse `token` within five seconds; how long it took.
async fn refused_within(app: &App, token: &str) -> Option<std::time::Duration> {
    let started = std::time::Instant::now();
    while started.elapsed() < std::time::Duration::from_secs(5) {
        match app.authenticate(token).await {
            Err(e) if e.status == 401 => return Some(started.elapsed()),
            Err(e) => panic!("{e}"),
            Ok(_) => tokio::time::sleep(std::time::Duration::from_millis(5)).await,
        }
    }
    None
}

#[tokio::test]
async fn a_revocation_on_one_server_voids_the_token_on_every_server_sharing_the_database() {
    for pair in server_pairs().await {
        // Besides the pair, a third app on the first one's store handle (its feed is the
        // first one's: commits reach it as its own process's).
        let third = App::new(pair.store.clone(), Config::default())
            .await
            .unwrap();
        let servers = [&pair.one, &pair.two, &third];
        pair.one.bootstrap(Some("secret")).await.unwrap();
        let unique = uuid::Uuid::new_v4().simple().to_string();
        let make = |kind: &'static str, collection: &'static str| {
            let body = json!({kind: {"name": format!("{kind}-{unique}"), "password": "pw"}});
            let app = pair.one.clone();
            async move {
                let out = app
                    .identity_create(&admin(), collection, &body, IDENTITY_BASE)
                    .await
                    .unwrap();
                out[kind]["id"].as_str().unwrap().to_string()
            }
        };
        let user = make("user", "users").await;
        let project = make("project", "projects").await;
        let roles = pair
            .two
            .identity_list(
                &admin(),
                "roles",
                &query(&[("name", "member")]),
                IDENTITY_BASE,
            )
            .await
            .unwrap();
        let role = roles["roles"][0]["id"].as_str().unwrap().to_string();
        pair.two
            .grant_role(&admin(), &project, &user, &role)
            .await
            .unwrap();

        // One token, revoked on the first server, which refuses it at once.
        let token = login_on(&pair.two, &user, "pw", &project).await;
        let kept = login_on(&pair.one, &user, "pw", &project).await;
        for app in servers {
            app.authenticate(&token).await.unwrap();
        }
        pair.one.revoke_token(&admin(), &token).await.unwrap();
        assert_eq!(
            pair.one.authenticate(&token).await.unwrap_err().status,
            401,
            "at once on the server that revoked it"
        );
        assert_eq!(
            third.authenticate(&token).await.unwrap_err().status,
            401,
            "at once on another app of the same process"
        );
        let took = refused_within(&pair.two, &token).await;
        assert!(took.is_some(), "the other server refuses it");
        eprintln!("token revocation reached the other server in {took:?}");
        for app in servers {
            app.authenticate(&kept).await.unwrap();
        }

        // Every token of the user, revoked on the second server by disabling them.
        let patch = json!({"user": {"enabled": false}});
        pair.two
            .identity_update(&admin(), "users", &user, &patch, IDENTITY_BASE)
            .await
            .unwrap();
        assert_eq!(pair.two.authenticate(&kept).await.unwrap_err().status, 401);
        for app in servers {
            assert!(refused_within(app, &kept).await.is_some());
        }

        // Once every server has caught up, a token issued afterwards works everywhere, and
        // the revoked ones stay refused when the check is answered from memory.
        let patch = json!({"user": {"enabled": true}});
        pair.one
            .identity_update(&admin(), "users", &user, &patch, IDENTITY_BASE)
            .await
            .unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        let fresh = login_on(&pair.one, &user, "pw", &project).await;
        for app in servers {
            let started = std::time::Instant::now();
            while !app.revocations_current() {
                assert!(started.elapsed().as_secs() < 5, "the copy catches up");
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
            app.authenticate(&fresh).await.unwrap();
            for old in [&token, &kept] {
                assert_eq!(app.authenticate(old).await.unwrap_err().status, 401);
            }
        }
    }
}

#[tokio::test]
async fn checking_a_token_reads_no_database_once_the_events_are_in_memory() {
    let t = setup().await;
    let m = member(&t, "kim").await;
    let (revoked, _) = login(&t, &m.user, "pw", &m.project).await.unwrap();
    let (valid, _) = login(&t, &m.user, "pw", &m.project).await.unwrap();
    t.app.revoke_token(&admin(), &revoked).await.unwrap();
    let started = std::time::Instant::now();
    while !t.app.revocations_current() {
        assert!(started.elapsed().as_secs() < 5, "the copy catches up");
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    // Without a database to read from, both are still told apart.
    t.store.close().await;
    t.app.authenticate(&valid).await.unwrap();
    assert_eq!(t.app.authenticate(&revoked).await.unwrap_err().status, 401);
}
