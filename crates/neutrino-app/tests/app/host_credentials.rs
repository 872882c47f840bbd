//! Host credentials: an admin creates one per host, its secret logs in with Keystone's
//! `application_credential` method, and the token is the agent of that host: its agent calls
//! work for that host only, every policy rule outside the agent calls refuses it, and
//! deleting the credential revokes its tokens.

use crate::common::*;
use serde_json::{json, Value};

/// Creates the credential of `host`: (id, secret).
async fn create(t: &Env, host: &str) -> (String, String) {
    let out = t
        .app
        .create_host_credential(&admin(), &json!({"host_credential": {"host": host}}))
        .await
        .unwrap();
    let c = &out["host_credential"];
    assert_eq!(c["host"], host, "{out}");
    assert!(c.get("secret_hash").is_none(), "{out}");
    (id(c), c["secret"].as_str().unwrap().to_string())
}

async fn login(t: &Env, id: &str, secret: &str) -> Result<(String, Value), ApiError> {
    let body = json!({"auth": {"identity": {
        "methods": ["application_credential"],
        "application_credential": {"id": id, "secret": secret},
    }}});
    t.app.issue_token(&body, IDENTITY_BASE).await
}

/// The agent of `host`, as its credential's token authenticates.
async fn agent_of(t: &Env, host: &str) -> (Context, String, String) {
    let (cred, secret) = create(t, host).await;
    let (token, body) = login(t, &cred, &secret).await.unwrap();
    assert_eq!(body["token"]["neutrino_agent_host"], host, "{body}");
    assert_eq!(
        body["token"]["methods"],
        json!(["application_credential"]),
        "{body}"
    );
    assert!(body["token"].get("project").is_none(), "{body}");
    // The catalog names the network endpoint, so the agent finds the server.
    assert!(body["token"]["catalog"]
        .as_array()
        .is_some_and(|c| c.len() == 2));
    let ctx = t.app.authenticate(&token).await.unwrap();
    assert_eq!(ctx.agent_host.as_deref(), Some(host));
    assert!(!ctx.is_admin() && !ctx.is_member() && !ctx.has("reader"));
    (ctx, cred, token)
}

#[tokio::test]
async fn only_admins_manage_host_credentials_and_bad_input_is_400() {
    let t = env().await;
    let body = json!({"host_credential": {"host": "h1"}});
    assert_err(
        t.app.create_host_credential(&tenant(), &body).await,
        403,
        "PolicyNotAuthorized",
    );
    let (agent, cred, _) = agent_of(&t, "h1").await;
    assert_err(
        t.app.create_host_credential(&agent, &body).await,
        403,
        "PolicyNotAuthorized",
    );
    assert_err(
        t.app.list_host_credentials(&agent, &[]).await,
        403,
        "PolicyNotAuthorized",
    );
    assert_err(
        t.app.delete_host_credential(&agent, &cred).await,
        403,
        "PolicyNotAuthorized",
    );
    assert_err(
        t.app.show_host_credential(&tenant(), &cred).await,
        403,
        "PolicyNotAuthorized",
    );
    let long = "x".repeat(256);
    for bad in [
        json!({}),
        json!({"host_credential": "h1"}),
        json!({"host_credential": {}}),
        json!({"host_credential": {"host": ""}}),
        json!({"host_credential": {"host": 7}}),
        json!({"host_credential": {"host": long}}),
        json!({"host_credential": {"host": "a\nb"}}),
        json!({"host_credential": {"host": "h", "description": ["x"]}}),
        json!({"host_credential": {"host": "h", "secret": "mine"}}),
    ] {
        let err = t
            .app
            .create_host_credential(&admin(), &bad)
            .await
            .unwrap_err();
        assert_eq!(err.status, 400, "{bad}: {err}");
    }
    // Listed and shown without any secret; filtered by host.
    create(&t, "h2").await;
    let all = t.app.list_host_credentials(&admin(), &[]).await.unwrap();
    assert_eq!(
        all["host_credentials"].as_array().unwrap().len(),
        2,
        "{all}"
    );
    assert!(!all.to_string().contains("secret"), "{all}");
    let h1 = t
        .app
        .list_host_credentials(&admin(), &query(&[("host", "h1")]))
        .await
        .unwrap();
    assert_eq!(h1["host_credentials"][0]["id"], cred.as_str(), "{h1}");
    assert_eq!(h1["host_credentials"].as_array().unwrap().len(), 1);
    let shown = t.app.show_host_credential(&admin(), &cred).await.unwrap();
    assert!(!shown.to_string().contains("secret"), "{shown}");
    assert_err(
        t.app.show_host_credential(&admin(), "nope").await,
        404,
        "HostCredentialNotFound",
    );
    assert_err(
        t.app.delete_host_credential(&admin(), "nope").await,
        404,
        "HostCredentialNotFound",
    );
    // Credentials, and the revocation event of a deleted one, leave the store consistent.
    t.app.delete_host_credential(&admin(), &cred).await.unwrap();
    let problems = neutrino_app::consistency::check_store(&t.store)
        .await
        .unwrap();
    assert!(problems.is_empty(), "{problems:?}");
}

#[tokio::test]
async fn a_wrong_secret_or_unknown_credential_gets_no_token() {
    let t = env().await;
    let (cred, secret) = create(&t, "h1").await;
    assert_eq!(login(&t, &cred, "wrong").await.unwrap_err().status, 401);
    assert_eq!(login(&t, "unknown", &secret).await.unwrap_err().status, 401);
    let missing = json!({"auth": {"identity": {"methods": ["application_credential"],
        "application_credential": {"id": cred}}}});
    assert_eq!(
        t.app
            .issue_token(&missing, IDENTITY_BASE)
            .await
            .unwrap_err()
            .status,
        400
    );
    // An agent's token cannot be turned into a user's token.
    let (token, _) = login(&t, &cred, &secret).await.unwrap();
    let again = json!({"auth": {"identity": {"methods": ["token"], "token": {"id": token}},
        "scope": {"project": {"name": "admin"}}}});
    assert_eq!(
        t.app
            .issue_token(&again, IDENTITY_BASE)
            .await
            .unwrap_err()
            .status,
        401
    );
}

/// The agent calls work for the credential's host and are 403 for any other.
#[tokio::test]
async fn the_agent_calls_serve_only_the_credentials_host() {
    let t = env().await;
    let (agent, _, _) = agent_of(&t, "h1").await;
    // Another host's agent, registered with admin credentials, and a port bound there.
    t.app
        .report_agent(&admin(), json!({"agent": {"host": "h2"}}))
        .await
        .unwrap();
    let (net, _) = t.net(&admin(), json!({"name": "n"}), "10.0.0.0/24").await;
    let port = t
        .ok(
            &admin(),
            "ports",
            json!({"network_id": net, "binding:host_id": "h2"}),
        )
        .await;
    let port = id(&port);
    let other = [
        ("report_agent", json!({"agent": {"host": "h2"}})),
        (
            "port-status",
            json!({"host": "h2", "ports": [{"id": port, "status": "ACTIVE"}]}),
        ),
        ("applied", json!({"host": "h2", "revision": 1})),
        ("sfc-status", json!({"host": "h2", "port_pairs": []})),
        ("l2gw-macs", json!({"host": "h2", "networks": {}})),
        ("trunk-status", json!({"host": "h2", "trunks": []})),
        ("metering", json!({"host": "h2", "labels": []})),
        ("containers-gone", json!({"host": "h2", "ports": []})),
    ];
    for (call, body) in other {
        let mut own = body.clone();
        if call == "report_agent" {
            own["agent"]["host"] = json!("h1");
        } else {
            own["host"] = json!("h1");
        }
        for (body, allowed) in [(own, true), (body, false)] {
            let r = match call {
                "report_agent" => t.app.report_agent(&agent, body.clone()).await,
                "port-status" => t.app.report_port_status(&agent, body.clone()).await,
                "applied" => t.app.report_applied(&agent, body.clone()).await,
                "sfc-status" => t.app.report_sfc_status(&agent, body.clone()).await,
                "l2gw-macs" => t.app.report_l2gw_macs(&agent, body.clone()).await,
                "containers-gone" => t.app.report_containers_gone(&agent, body.clone()).await,
                "trunk-status" => t.app.report_trunk_status(&agent, body.clone()).await,
                _ => t.app.report_metering_counters(&agent, body.clone()).await,
            };
            match (allowed, r) {
                (true, Ok(_)) => {}
                (false, Err(e)) if e.status == 403 && e.kind == "PolicyNotAuthorized" => {}
                (_, r) => panic!("{call} {body}: {r:?}"),
            }
        }
    }
    // Its own host's port reports are taken; the other host's port stayed as it was.
    let shown = t.show(&admin(), "ports", &port).await.unwrap();
    assert_eq!(shown["status"], "DOWN", "{shown}");
    t.app.host_bgp_speakers(&agent, "h1").await.unwrap();
    assert_err(
        t.app.host_bgp_speakers(&agent, "h2").await,
        403,
        "PolicyNotAuthorized",
    );
    // The feed and the revision waits serve it.
    let snap = t.app.feed_snapshot(&agent).await.unwrap();
    assert!(snap["resources"]["port"].is_array(), "{snap}");
    t.app.feed_changes(&agent, 0, 10).await.unwrap();
    let wait = t
        .app
        .revision_status_of(&agent, 0, std::time::Duration::ZERO, None)
        .await
        .unwrap();
    assert!(
        wait["revision"].get("hosts").is_none(),
        "admins only: {wait}"
    );
}

/// No policy rule but the agent calls' grants a host agent anything, whatever its
/// `service` role opens in Neutron's defaults: the user calls see nothing and change
/// nothing (the API refuses them before, with 403; this is the second wall).
#[tokio::test]
async fn a_host_agent_is_no_user() {
    let t = env().await;
    let (agent, _, _) = agent_of(&t, "h1").await;
    let (net, _) = t
        .net(
            &admin(),
            json!({"name": "shared", "shared": true}),
            "10.1.0.0/24",
        )
        .await;
    t.ok(
        &admin(),
        "ports",
        json!({"network_id": net, "binding:host_id": "h1"}),
    )
    .await;
    for path in ["networks", "subnets", "ports", "routers", "security-groups"] {
        assert_eq!(
            t.list(&agent, path, &[]).await,
            Vec::<Value>::new(),
            "{path}"
        );
    }
    assert_err(
        t.show(&agent, "networks", &net).await,
        404,
        "NetworkNotFound",
    );
    // Refused (400: it has no project to own the network; 403 naming one).
    let err = t
        .create(&agent, "networks", json!({"name": "x"}))
        .await
        .unwrap_err();
    assert_eq!(err.status, 400, "{err}");
    let err = t
        .create(&agent, "networks", json!({"name": "x", "project_id": "p"}))
        .await
        .unwrap_err();
    assert!(matches!(err.status, 400 | 403), "{err}");
    assert_eq!(t.list(&admin(), "networks", &[]).await.len(), 1);
    let err = t
        .create(&agent, "ports", json!({"network_id": net}))
        .await
        .unwrap_err();
    assert!(matches!(err.status, 400 | 403 | 404), "{err}");
    assert_eq!(
        t.list(&admin(), "ports", &[]).await.len(),
        1,
        "only the admin's port"
    );
    for rule in [
        "get_agent",
        "get_metrics",
        "get_topology",
        "get_quota",
        "get_port",
    ] {
        assert_err(
            t.app.check_rule(&agent, rule, &Default::default()),
            403,
            "PolicyNotAuthorized",
        );
    }
    assert!(t
        .app
        .list_agents(&agent, &[])
        .await
        .map_or(true, |p| p.items.is_empty()));
}

/// Deleting a host credential revokes every token made from it, at once; its secret no
/// longer logs in. Another host's credential is untouched.
#[tokio::test]
async fn deleting_a_host_credential_revokes_its_tokens() {
    let t = env().await;
    let (cred, secret) = create(&t, "h1").await;
    let (token, _) = login(&t, &cred, &secret).await.unwrap();
    let (_, other, other_token) = agent_of(&t, "h2").await;
    assert!(t.app.authenticate(&token).await.is_ok());
    t.app.delete_host_credential(&admin(), &cred).await.unwrap();
    assert_eq!(t.app.authenticate(&token).await.unwrap_err().status, 401);
    assert_eq!(login(&t, &cred, &secret).await.unwrap_err().status, 401);
    assert!(t.app.authenticate(&other_token).await.is_ok());
    // Also for another server sharing the database.
    for pair in server_pairs().await {
        let out = pair
            .one
            .create_host_credential(&admin(), &json!({"host_credential": {"host": "h3"}}))
            .await
            .unwrap();
        let c = &out["host_credential"];
        let body = json!({"auth": {"identity": {"methods": ["application_credential"],
            "application_credential": {"id": c["id"], "secret": c["secret"]}}}});
        let (token, _) = pair.one.issue_token(&body, IDENTITY_BASE).await.unwrap();
        assert!(pair.two.authenticate(&token).await.is_ok());
        pair.one
            .delete_host_credential(&admin(), c["id"].as_str().unwrap())
            .await
            .unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while pair.two.authenticate(&token).await.is_ok() {
            assert!(
                std::time::Instant::now() < deadline,
                "the other server still accepts it"
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }
    let _ = other;
}
