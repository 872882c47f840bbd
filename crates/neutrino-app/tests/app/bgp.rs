//! BGP dynamic routing through the public application API: every validation rule, error type
//! and status code of neutron-dynamic-routing (and its Tempest API tests), the speaker
//! actions, the password that is never shown, the admin-only policy, what a speaker
//! advertises, and the scheduling of speakers to BGP dynamic routing agents.

use crate::common::*;
use serde_json::{json, Value};

const SPEAKERS: &str = "bgp-speakers";
const PEERS: &str = "bgp-peers";

fn reader() -> Context {
    Context::new("rita", "project-a", &["reader".into()])
}

async fn speaker(t: &Env, extra: Value) -> Value {
    let mut body = json!({"name": "s", "local_as": "1234", "ip_version": 4});
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    t.ok(&admin(), SPEAKERS, body).await
}

async fn peer(t: &Env, ip: &str) -> String {
    id(&t
        .ok(
            &admin(),
            PEERS,
            json!({"name": "p", "peer_ip": ip, "remote_as": "4321", "auth_type": "md5",
                   "password": "my-secret"}),
        )
        .await)
}

/// A peer's stored document (with its password).
async fn stored(t: &Env, pid: &str) -> Value {
    let mut tx = t.store.read().await.unwrap();
    tx.get("bgp_peer", pid).await.unwrap().unwrap().body
}

async fn act(
    t: &Env,
    ctx: &Context,
    sp: &str,
    action: &str,
    body: Value,
) -> Result<Value, ApiError> {
    t.act(ctx, SPEAKERS, sp, action, body).await
}

/// `PUT /v2.0/{path}/{id}` as admin, which must succeed.
async fn set(t: &Env, path: &str, id: &str, body: Value) {
    t.update(&admin(), path, id, body).await.unwrap();
}

/// A speaker action as admin, which must succeed.
async fn act_ok(t: &Env, sp: &str, action: &str, body: Value) -> Value {
    act(t, &admin(), sp, action, body).await.unwrap()
}

/// Turning `flag` of `id` in `path` off withdraws every route of the speaker `sp`; the flag
/// is turned on again.
async fn off_withdraws(t: &Env, path: &str, id: &str, flag: &str, sp: &str) {
    set(t, path, id, json!({flag: false})).await;
    assert!(routes(t, &admin(), sp).await.unwrap().is_empty());
    set(t, path, id, json!({flag: true})).await;
}

async fn routes(t: &Env, ctx: &Context, sp: &str) -> Result<Vec<(String, String)>, ApiError> {
    let out = t
        .app
        .get_action(ctx, coll(SPEAKERS), sp, "get_advertised_routes")
        .await?;
    Ok(out["advertised_routes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["destination"].as_str().unwrap().to_string(),
                r["next_hop"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect())
}

#[tokio::test]
async fn speaker_crud_and_response_shape() {
    let t = env().await;
    let sp = speaker(&t, json!({})).await;
    assert_eq!(
        sp,
        json!({"id": sp["id"], "name": "s", "local_as": 1234, "ip_version": 4,
               "advertise_floating_ip_host_routes": true, "advertise_tenant_networks": true,
               "peers": [], "networks": [], "project_id": "admin-project",
               "tenant_id": "admin-project"})
    );
    let sid = id(&sp);
    assert_eq!(t.show(&admin(), SPEAKERS, &sid).await.unwrap(), sp);
    assert_eq!(t.list(&admin(), SPEAKERS, &[("name", "s")]).await, vec![sp]);
    // 4-byte AS numbers (bgp_4byte_asn) and IPv6 speakers.
    let big = speaker(&t, json!({"local_as": 4294967295_u64, "ip_version": 6})).await;
    assert_eq!(
        (big["local_as"].clone(), big["ip_version"].clone()),
        (json!(4294967295_u64), json!(6))
    );

    let up = t
        .update(
            &admin(),
            SPEAKERS,
            &sid,
            json!({"name": "renamed", "advertise_tenant_networks": "false",
                   "advertise_floating_ip_host_routes": false}),
        )
        .await
        .unwrap();
    assert_eq!(up["name"], "renamed");
    assert_eq!(up["advertise_tenant_networks"], false);
    assert_eq!(up["advertise_floating_ip_host_routes"], false);
    // Tempest test_update_bgp_speaker_local_asn: local_as is read-only, so is ip_version.
    for body in [
        json!({"local_as": 4321}),
        json!({"ip_version": 6}),
        json!({"peers": []}),
        json!({"networks": []}),
    ] {
        let e = assert_err(
            t.update(&admin(), SPEAKERS, &sid, body).await,
            400,
            "HTTPBadRequest",
        );
        assert!(
            e.message.starts_with("Cannot update read-only attribute"),
            "{e}"
        );
    }
    t.delete(&admin(), SPEAKERS, &sid).await.unwrap();
    let e = assert_err(
        t.show(&admin(), SPEAKERS, &sid).await,
        404,
        "BgpSpeakerNotFound",
    );
    assert_eq!(e.message, format!("BGP speaker {sid} could not be found."));
    assert_err(
        t.update(&admin(), SPEAKERS, &sid, json!({"name": "x"}))
            .await,
        404,
        "BgpSpeakerNotFound",
    );
    assert_err(
        t.delete(&admin(), SPEAKERS, &sid).await,
        404,
        "BgpSpeakerNotFound",
    );
}

#[tokio::test]
async fn speaker_validation() {
    let t = env().await;
    let bad = |body: Value| {
        let t = &t;
        async move { t.create(&admin(), SPEAKERS, body).await }
    };
    let e = assert_err(bad(json!({"ip_version": 4})).await, 400, "HTTPBadRequest");
    assert_eq!(
        e.message,
        "Invalid input for local_as. Reason: 'None' is not an integer."
    );
    // Tempest test_create_bgp_speaker_illegal_local_asn (bgp_4byte_asn listed).
    for asn in [
        json!(4294967296_u64),
        json!(0),
        json!(-1),
        json!("abc"),
        json!(null),
    ] {
        assert_err(
            bad(json!({"local_as": asn, "ip_version": 4})).await,
            400,
            "HTTPBadRequest",
        );
    }
    let e = assert_err(bad(json!({"local_as": 1})).await, 400, "HTTPBadRequest");
    assert!(e.message.contains("ip_version"), "{e}");
    let e = assert_err(
        bad(json!({"local_as": 1, "ip_version": "4"})).await,
        400,
        "HTTPBadRequest",
    );
    assert_eq!(
        e.message,
        "Invalid input for ip_version. Reason: 4 is not in valid_values."
    );
    assert_err(
        bad(json!({"local_as": 1, "ip_version": 5})).await,
        400,
        "HTTPBadRequest",
    );
    for attr in ["peers", "networks", "id"] {
        let e = assert_err(
            bad(json!({"local_as": 1, "ip_version": 4, attr: []})).await,
            400,
            "HTTPBadRequest",
        );
        assert_eq!(e.message, format!("Attribute '{attr}' not allowed in POST"));
    }
    let e = assert_err(
        bad(json!({"local_as": 1, "ip_version": 4, "bogus": 1})).await,
        400,
        "HTTPBadRequest",
    );
    assert_eq!(e.message, "Unrecognized attribute(s) 'bogus'");
    assert_err(
        bad(json!({"local_as": 1, "ip_version": 4, "advertise_tenant_networks": "maybe"})).await,
        400,
        "HTTPBadRequest",
    );
    assert_err(
        bad(json!({"local_as": 1, "ip_version": 4, "name": "n".repeat(256)})).await,
        400,
        "HTTPBadRequest",
    );
    assert!(t.list(&admin(), SPEAKERS, &[]).await.is_empty());
}

#[tokio::test]
async fn peer_rules_and_password_never_shown() {
    let t = env().await;
    let p = t
        .ok(
            &admin(),
            PEERS,
            json!({"name": "p", "peer_ip": "192.168.1.1", "remote_as": "4321", "auth_type": "md5",
                   "password": "my-secret"}),
        )
        .await;
    assert_eq!(
        p,
        json!({"id": p["id"], "name": "p", "peer_ip": "192.168.1.1", "remote_as": 4321,
               "auth_type": "md5", "project_id": "admin-project", "tenant_id": "admin-project"})
    );
    let pid = id(&p);
    assert_eq!(t.show(&admin(), PEERS, &pid).await.unwrap(), p);
    assert_eq!(t.list(&admin(), PEERS, &[]).await, vec![p.clone()]);
    let fields = t
        .list(&admin(), PEERS, &[("fields", "password"), ("fields", "id")])
        .await;
    assert!(fields[0].get("password").is_none());
    // The password is kept (agents need it) but not shown.
    assert_eq!(stored(&t, &pid).await["password"], "my-secret");
    let up = t
        .update(
            &admin(),
            PEERS,
            &pid,
            json!({"name": "q", "password": "new"}),
        )
        .await
        .unwrap();
    assert_eq!(up["name"], "q");
    assert!(up.get("password").is_none());
    assert_eq!(stored(&t, &pid).await["password"], "new");
    // OSC's `bgp peer set --name` sends password null: it clears the password (upstream).
    set(&t, PEERS, &pid, json!({"name": "r", "password": null})).await;
    assert_eq!(stored(&t, &pid).await["password"], Value::Null);

    // md5 needs a password.
    for pw in [json!(null), json!("")] {
        let e = assert_err(
            t.create(
                &admin(),
                PEERS,
                json!({"peer_ip": "10.0.0.1", "remote_as": 1, "auth_type": "md5", "password": pw}),
            )
            .await,
            400,
            "InvalidBgpPeerMd5Authentication",
        );
        assert_eq!(
            e.message,
            "A password must be supplied when using auth_type md5."
        );
    }
    assert_err(
        t.create(
            &admin(),
            PEERS,
            json!({"peer_ip": "10.0.0.1", "remote_as": 1, "auth_type": "md5"}),
        )
        .await,
        400,
        "InvalidBgpPeerMd5Authentication",
    );
    // auth_type none with a password: accepted by the API, as upstream.
    let plain = t
        .ok(
            &admin(),
            PEERS,
            json!({"peer_ip": "2001:db8::1", "remote_as": 65000, "auth_type": "none", "password": "x"}),
        )
        .await;
    assert_eq!(plain["name"], "");
    assert!(plain.get("password").is_none());
    // A password on an unauthenticated peer: 404 BgpPeerNotAuthenticated.
    let e = assert_err(
        t.update(&admin(), PEERS, &id(&plain), json!({"password": "y"}))
            .await,
        404,
        "BgpPeerNotAuthenticated",
    );
    assert_eq!(
        e.message,
        format!("BGP peer {} not authenticated.", id(&plain))
    );
    t.update(&admin(), PEERS, &id(&plain), json!({"password": null}))
        .await
        .unwrap();

    let create = |body: Value| {
        let t = &t;
        async move { t.create(&admin(), PEERS, body).await }
    };
    let e = assert_err(
        create(json!({"remote_as": 1, "auth_type": "none"})).await,
        400,
        "HTTPBadRequest",
    );
    assert_eq!(
        e.message,
        "Failed to parse request. Required attribute 'peer_ip' not specified"
    );
    let e = assert_err(
        create(json!({"peer_ip": "10.0.0.1", "remote_as": 1})).await,
        400,
        "HTTPBadRequest",
    );
    assert_eq!(
        e.message,
        "Failed to parse request. Required attribute 'auth_type' not specified"
    );
    let e = assert_err(
        create(json!({"peer_ip": "10.0.0.1", "auth_type": "none"})).await,
        400,
        "HTTPBadRequest",
    );
    assert_eq!(
        e.message,
        "Invalid input for remote_as. Reason: 'None' is not an integer."
    );
    for ip in [
        json!("10.0.0.0/24"),
        json!("10.0.0.1 "),
        json!("host"),
        json!(7),
    ] {
        let e = assert_err(
            create(json!({"peer_ip": ip, "remote_as": 1, "auth_type": "none"})).await,
            400,
            "HTTPBadRequest",
        );
        assert!(e.message.starts_with("Invalid input for peer_ip."), "{e}");
    }
    for (k, v) in [
        ("auth_type", json!("sha1")),
        ("remote_as", json!(4294967296_u64)),
        ("remote_as", json!(0)),
    ] {
        let mut body = json!({"peer_ip": "10.0.0.1", "remote_as": 1, "auth_type": "none"});
        body[k] = v;
        assert_err(create(body).await, 400, "HTTPBadRequest");
    }
    for body in [
        json!({"peer_ip": "10.0.0.2"}),
        json!({"remote_as": 2}),
        json!({"auth_type": "md5"}),
    ] {
        let e = assert_err(
            t.update(&admin(), PEERS, &pid, body).await,
            400,
            "HTTPBadRequest",
        );
        assert!(
            e.message.starts_with("Cannot update read-only attribute"),
            "{e}"
        );
    }
    let missing = "0b3b8a1c-1d2e-4f50-9a0b-0c1d2e3f4a5b";
    let e = assert_err(
        t.update(&admin(), PEERS, missing, json!({"name": "x"}))
            .await,
        404,
        "BgpPeerNotFound",
    );
    assert_eq!(e.message, format!("BGP peer {missing} could not be found."));
    assert_err(
        t.show(&admin(), PEERS, missing).await,
        404,
        "BgpPeerNotFound",
    );
    t.delete(&admin(), PEERS, &pid).await.unwrap();
    assert_err(t.show(&admin(), PEERS, &pid).await, 404, "BgpPeerNotFound");
}

#[tokio::test]
async fn speaker_peer_actions() {
    let t = env().await;
    let sp = id(&speaker(&t, json!({})).await);
    let p1 = peer(&t, "192.168.1.1").await;
    let out = act(
        &t,
        &admin(),
        &sp,
        "add_bgp_peer",
        json!({"bgp_peer_id": p1}),
    )
    .await
    .unwrap();
    assert_eq!(out, json!({"bgp_peer_id": p1}));
    assert_eq!(
        t.show(&admin(), SPEAKERS, &sp).await.unwrap()["peers"],
        json!([p1])
    );
    // The same peer again, or another at the same address: 409.
    let same_ip = peer(&t, "192.168.1.1").await;
    for p in [&p1, &same_ip] {
        let e = assert_err(
            act(&t, &admin(), &sp, "add_bgp_peer", json!({"bgp_peer_id": p})).await,
            409,
            "DuplicateBgpPeerIpException",
        );
        assert_eq!(
            e.message,
            format!("BGP Speaker {sp} is already configured to peer with a BGP Peer at 192.168.1.1, it cannot peer with BGP Peer {p}.")
        );
    }
    // A peer of the other family is fine (MP-BGP; upstream does not check).
    let p6 = peer(&t, "2001:db8::9").await;
    act_ok(&t, &sp, "add_bgp_peer", json!({"bgp_peer_id": p6})).await;
    assert_eq!(
        t.show(&admin(), SPEAKERS, &sp).await.unwrap()["peers"],
        json!([p1, p6])
    );

    let missing = "0b3b8a1c-1d2e-4f50-9a0b-0c1d2e3f4a5b";
    assert_err(
        act(
            &t,
            &admin(),
            &sp,
            "add_bgp_peer",
            json!({"bgp_peer_id": missing}),
        )
        .await,
        404,
        "BgpPeerNotFound",
    );
    assert_err(
        act(
            &t,
            &admin(),
            missing,
            "add_bgp_peer",
            json!({"bgp_peer_id": p1}),
        )
        .await,
        404,
        "BgpSpeakerNotFound",
    );
    for action in ["add_bgp_peer", "remove_bgp_peer"] {
        for (body, msg) in [
            (
                json!({}),
                "Bad bgp-speaker request: bgp_peer_id must be specified.".to_string(),
            ),
            (
                json!({"bgp_peer_id": null}),
                "Bad bgp-speaker request: bgp_peer_id must be specified.".to_string(),
            ),
            (
                json!({"bgp_peer_id": "nope"}),
                "Bad bgp-speaker request: 'nope' is not a valid UUID.".to_string(),
            ),
        ] {
            let e = assert_err(
                act(&t, &admin(), &sp, action, body).await,
                400,
                "BadRequest",
            );
            assert_eq!(e.message, msg);
        }
    }
    // Remove: JSON null; a peer not bound (or missing): 404.
    let out = act(
        &t,
        &admin(),
        &sp,
        "remove_bgp_peer",
        json!({"bgp_peer_id": p1}),
    )
    .await
    .unwrap();
    assert_eq!(out, Value::Null);
    for p in [&p1, &same_ip, &missing.to_string()] {
        let e = assert_err(
            act(
                &t,
                &admin(),
                &sp,
                "remove_bgp_peer",
                json!({"bgp_peer_id": p}),
            )
            .await,
            404,
            "BgpSpeakerPeerNotAssociated",
        );
        assert_eq!(
            e.message,
            format!("BGP peer {p} is not associated with BGP speaker {sp}.")
        );
    }
    // Now the address is free again.
    act_ok(&t, &sp, "add_bgp_peer", json!({"bgp_peer_id": same_ip})).await;
    // Deleting a bound peer unbinds it (no 409, upstream's cascade).
    t.delete(&admin(), PEERS, &same_ip).await.unwrap();
    assert_eq!(
        t.show(&admin(), SPEAKERS, &sp).await.unwrap()["peers"],
        json!([p6])
    );
    // Unknown actions.
    assert_err(
        act(&t, &admin(), &sp, "add_nothing", json!({})).await,
        404,
        "HTTPNotFound",
    );
}

#[tokio::test]
async fn speaker_network_actions() {
    let t = env().await;
    let sp = id(&speaker(&t, json!({})).await);
    let sp2 = id(&speaker(&t, json!({})).await);
    let (ext, _) = t.external().await;
    let (other, _) = t.net(&admin(), json!({}), "10.9.0.0/24").await;
    let out = act(
        &t,
        &admin(),
        &sp,
        "add_gateway_network",
        json!({"network_id": ext}),
    )
    .await
    .unwrap();
    assert_eq!(out, json!({"network_id": ext}));
    // Several networks per speaker, several speakers per network: allowed.
    act_ok(&t, &sp, "add_gateway_network", json!({"network_id": other})).await;
    act_ok(&t, &sp2, "add_gateway_network", json!({"network_id": ext})).await;
    assert_eq!(
        t.show(&admin(), SPEAKERS, &sp).await.unwrap()["networks"],
        json!([ext, other])
    );
    let e = assert_err(
        act(
            &t,
            &admin(),
            &sp,
            "add_gateway_network",
            json!({"network_id": ext}),
        )
        .await,
        409,
        "BgpSpeakerNetworkBindingError",
    );
    assert_eq!(
        e.message,
        format!("Network {ext} is already bound to BgpSpeaker {sp}.")
    );
    let missing = "0b3b8a1c-1d2e-4f50-9a0b-0c1d2e3f4a5b";
    let e = assert_err(
        act(
            &t,
            &admin(),
            &sp,
            "add_gateway_network",
            json!({"network_id": missing}),
        )
        .await,
        404,
        "NetworkNotFound",
    );
    assert_eq!(e.message, format!("Network {missing} could not be found."));
    for action in ["add_gateway_network", "remove_gateway_network"] {
        let e = assert_err(
            act(&t, &admin(), &sp, action, json!({"net": ext})).await,
            400,
            "BadRequest",
        );
        assert_eq!(
            e.message,
            "Bad bgp-speaker request: network_id must be specified."
        );
        assert_err(
            act(&t, &admin(), &sp, action, json!({"network_id": 5})).await,
            400,
            "BadRequest",
        );
    }
    let out = act(
        &t,
        &admin(),
        &sp,
        "remove_gateway_network",
        json!({"network_id": ext}),
    )
    .await
    .unwrap();
    assert_eq!(out, json!({"network_id": ext}));
    let e = assert_err(
        act(
            &t,
            &admin(),
            &sp,
            "remove_gateway_network",
            json!({"network_id": ext}),
        )
        .await,
        404,
        "BgpSpeakerNetworkNotAssociated",
    );
    assert_eq!(
        e.message,
        format!("Network {ext} is not associated with BGP speaker {sp}.")
    );
    // Deleting a bound network unbinds it.
    t.delete(&admin(), "networks", &other).await.unwrap();
    assert_eq!(
        t.show(&admin(), SPEAKERS, &sp).await.unwrap()["networks"],
        json!([])
    );
    assert_eq!(
        t.show(&admin(), SPEAKERS, &sp2).await.unwrap()["networks"],
        json!([ext])
    );
    let problems = neutrino_app::consistency::check_store(&t.store)
        .await
        .unwrap();
    assert!(problems.is_empty(), "{problems:?}");
}

#[tokio::test]
async fn admin_only() {
    let t = env().await;
    let sp = id(&speaker(&t, json!({"project_id": "project-a"})).await);
    let pr = peer(&t, "10.1.1.1").await;
    let valid_sp = json!({"local_as": 1, "ip_version": 4});
    let valid_peer = json!({"peer_ip": "10.0.0.1", "remote_as": 1, "auth_type": "none"});
    for who in [tenant(), reader(), other_tenant()] {
        // Tempest test_create_bgp_speaker_non_admin / test_create_bgp_peer_non_admin.
        assert_err(
            t.create(&who, SPEAKERS, valid_sp.clone()).await,
            403,
            "PolicyNotAuthorized",
        );
        assert_err(
            t.create(&who, PEERS, valid_peer.clone()).await,
            403,
            "PolicyNotAuthorized",
        );
        // The body is checked before the policy.
        assert_err(
            t.create(&who, SPEAKERS, json!({"ip_version": 4})).await,
            400,
            "HTTPBadRequest",
        );
        // Reads: hidden (even the speaker of the caller's own project).
        assert!(t.list(&who, SPEAKERS, &[]).await.is_empty());
        assert!(t.list(&who, PEERS, &[]).await.is_empty());
        assert_err(t.show(&who, SPEAKERS, &sp).await, 404, "BgpSpeakerNotFound");
        assert_err(t.show(&who, PEERS, &pr).await, 404, "BgpPeerNotFound");
        assert_err(routes(&t, &who, &sp).await, 404, "BgpSpeakerNotFound");
        // Writes and actions: 404 too.
        assert_err(
            t.update(&who, SPEAKERS, &sp, json!({"name": "x"})).await,
            404,
            "BgpSpeakerNotFound",
        );
        assert_err(
            t.delete(&who, SPEAKERS, &sp).await,
            404,
            "BgpSpeakerNotFound",
        );
        assert_err(t.delete(&who, PEERS, &pr).await, 404, "BgpPeerNotFound");
        for action in ["add_bgp_peer", "remove_bgp_peer"] {
            assert_err(
                act(&t, &who, &sp, action, json!({"bgp_peer_id": pr})).await,
                404,
                "BgpSpeakerNotFound",
            );
        }
        // Scheduling calls: 403.
        assert_err(
            t.app.speaker_dragents(&who, &sp).await,
            403,
            "PolicyNotAuthorized",
        );
        assert_err(
            t.app
                .add_speaker_to_dragent(&who, &sp, json!({"bgp_speaker_id": sp}))
                .await,
            403,
            "PolicyNotAuthorized",
        );
    }
    assert_eq!(t.list(&admin(), SPEAKERS, &[]).await.len(), 1);
}

/// A scope with a pool for the external network and one for tenant subnets, as Tempest's
/// test_get_advertised_routes_project_networks; returns (external network, its subnet,
/// tenant subnet in scope, tenant subnet in another scope, unscoped tenant subnet, router,
/// gateway address).
struct Topo {
    ext: String,
    tenant_net: String,
    in_scope: String,
    other_scope: String,
    unscoped: String,
    router: String,
    gw_ip: String,
}

/// A shared IPv4 address scope.
async fn shared_scope(t: &Env, name: &str) -> String {
    let body = json!({"name": name, "ip_version": 4, "shared": true});
    id(&t.ok(&admin(), "address-scopes", body).await)
}

async fn scoped_topology(t: &Env) -> Topo {
    let a = admin();
    let scope = shared_scope(t, "s1").await;
    let scope2 = shared_scope(t, "s2").await;
    let ext_pool = id(&t
        .ok(
            &a,
            "subnetpools",
            json!({"name": "e", "prefixes": ["8.0.0.0/8"], "address_scope_id": scope}),
        )
        .await);
    let pool = id(&t.ok(&a, "subnetpools", json!({"name": "t", "prefixes": ["10.10.0.0/16"], "address_scope_id": scope, "shared": true})).await);
    let pool2 = id(&t.ok(&a, "subnetpools", json!({"name": "t2", "prefixes": ["11.10.0.0/16"], "address_scope_id": scope2, "shared": true})).await);
    let ext = id(&t
        .ok(
            &a,
            "networks",
            json!({"name": "public", "router:external": true}),
        )
        .await);
    t.ok(&a, "subnets", json!({"network_id": ext, "ip_version": 4, "cidr": "8.0.0.0/24", "subnetpool_id": ext_pool})).await;
    // One network per subnet (a network's subnets share a pool).
    let mut nets = Vec::new();
    for name in ["n1", "n2", "n3"] {
        nets.push(id(&t
            .ok(&tenant(), "networks", json!({"name": name}))
            .await));
    }
    let net = nets[0].clone();
    let sub = |cidr: &str, pool: Option<&str>| {
        let n = match cidr {
            "10.10.0.0/24" => &nets[0],
            "11.10.0.0/24" => &nets[1],
            _ => &nets[2],
        };
        let mut body = json!({"network_id": n, "ip_version": 4, "cidr": cidr});
        if let Some(p) = pool {
            body["subnetpool_id"] = json!(p);
        }
        body
    };
    let in_scope = id(&t
        .ok(&tenant(), "subnets", sub("10.10.0.0/24", Some(&pool)))
        .await);
    let other_scope = id(&t
        .ok(&tenant(), "subnets", sub("11.10.0.0/24", Some(&pool2)))
        .await);
    let unscoped = id(&t.ok(&tenant(), "subnets", sub("12.10.0.0/24", None)).await);
    let router = t
        .ok(
            &a,
            "routers",
            json!({"project_id": "project-a", "external_gateway_info": {"network_id": ext}}),
        )
        .await;
    let gw_ip = router["external_gateway_info"]["external_fixed_ips"][0]["ip_address"]
        .as_str()
        .unwrap()
        .to_string();
    let rid = id(&router);
    for s in [&in_scope, &other_scope, &unscoped] {
        t.action(
            &tenant(),
            &rid,
            "add_router_interface",
            json!({"subnet_id": s}),
        )
        .await
        .unwrap();
    }
    Topo {
        ext,
        tenant_net: net,
        in_scope,
        other_scope,
        unscoped,
        router: rid,
        gw_ip,
    }
}

fn route(d: &str, h: &str) -> (String, String) {
    (d.to_string(), h.to_string())
}

#[tokio::test]
async fn advertised_tenant_networks_follow_address_scopes() {
    let t = env().await;
    let topo = scoped_topology(&t).await;
    let _ = (&topo.other_scope, &topo.unscoped);
    let sp = id(&speaker(&t, json!({})).await);
    // Not bound yet: nothing.
    assert!(routes(&t, &admin(), &sp).await.unwrap().is_empty());
    act_ok(
        &t,
        &sp,
        "add_gateway_network",
        json!({"network_id": topo.ext}),
    )
    .await;
    // Only the subnet in the external subnet's scope (not the other scope, not the unscoped).
    assert_eq!(
        routes(&t, &admin(), &sp).await.unwrap(),
        vec![route("10.10.0.0/24", &topo.gw_ip)]
    );
    // The flag turns it off.
    off_withdraws(&t, SPEAKERS, &sp, "advertise_tenant_networks", &sp).await;
    // An IPv6 speaker on the same network: no IPv6 scope there, nothing.
    let sp6 = id(&speaker(&t, json!({"ip_version": 6})).await);
    act_ok(
        &t,
        &sp6,
        "add_gateway_network",
        json!({"network_id": topo.ext}),
    )
    .await;
    assert!(routes(&t, &admin(), &sp6).await.unwrap().is_empty());
    // A disabled router advertises nothing.
    off_withdraws(&t, "routers", &topo.router, "admin_state_up", &sp).await;
    // Removing the interface withdraws the route.
    t.action(
        &tenant(),
        &topo.router,
        "remove_router_interface",
        json!({"subnet_id": topo.in_scope}),
    )
    .await
    .unwrap();
    assert!(routes(&t, &admin(), &sp).await.unwrap().is_empty());
    t.action(
        &tenant(),
        &topo.router,
        "add_router_interface",
        json!({"subnet_id": topo.in_scope}),
    )
    .await
    .unwrap();
    assert_eq!(routes(&t, &admin(), &sp).await.unwrap().len(), 1);
    // Removing the gateway too.
    set(
        &t,
        "routers",
        &topo.router,
        json!({"external_gateway_info": {}}),
    )
    .await;
    assert!(routes(&t, &admin(), &sp).await.unwrap().is_empty());
    // And unbinding the network.
    set(
        &t,
        "routers",
        &topo.router,
        json!({"external_gateway_info": {"network_id": topo.ext}}),
    )
    .await;
    assert_eq!(routes(&t, &admin(), &sp).await.unwrap().len(), 1);
    act_ok(
        &t,
        &sp,
        "remove_gateway_network",
        json!({"network_id": topo.ext}),
    )
    .await;
    assert!(routes(&t, &admin(), &sp).await.unwrap().is_empty());
    let _ = topo.tenant_net;
}

#[tokio::test]
async fn advertised_floating_ips() {
    let t = env().await;
    // Tempest test_get_advertised_routes_null_address_scope: nothing scoped, no FIP.
    let (ext, _) = t.external().await;
    let (net, sub) = t.net(&tenant(), json!({}), "10.0.0.0/24").await;
    let rid = t.gateway_router(&ext).await;
    let sp = id(&speaker(&t, json!({})).await);
    act_ok(&t, &sp, "add_gateway_network", json!({"network_id": ext})).await;
    assert!(routes(&t, &admin(), &sp).await.unwrap().is_empty());
    // test_get_advertised_routes_floating_ips: an associated FIP is a /32 via the gateway.
    t.action(
        &tenant(),
        &rid,
        "add_router_interface",
        json!({"subnet_id": sub}),
    )
    .await
    .unwrap();
    let vm = t
        .ok(
            &tenant(),
            "ports",
            json!({"network_id": net, "device_id": "d1", "device_owner": "compute:nova"}),
        )
        .await;
    let fip = t
        .ok(
            &tenant(),
            "floatingips",
            json!({"floating_network_id": ext, "port_id": id(&vm)}),
        )
        .await;
    let addr = fip["floating_ip_address"].as_str().unwrap();
    assert_eq!(
        routes(&t, &admin(), &sp).await.unwrap(),
        vec![route(&format!("{addr}/32"), "172.24.4.100")]
    );
    // An unassociated FIP is not advertised; nor with the flag off.
    t.ok(
        &tenant(),
        "floatingips",
        json!({"floating_network_id": ext}),
    )
    .await;
    assert_eq!(routes(&t, &admin(), &sp).await.unwrap().len(), 1);
    off_withdraws(&t, SPEAKERS, &sp, "advertise_floating_ip_host_routes", &sp).await;
    // Disassociating withdraws it; associating again brings it back; deleting withdraws it.
    t.update(
        &tenant(),
        "floatingips",
        &id(&fip),
        json!({"port_id": null}),
    )
    .await
    .unwrap();
    assert!(routes(&t, &admin(), &sp).await.unwrap().is_empty());
    t.update(
        &tenant(),
        "floatingips",
        &id(&fip),
        json!({"port_id": id(&vm)}),
    )
    .await
    .unwrap();
    assert_eq!(routes(&t, &admin(), &sp).await.unwrap().len(), 1);
    t.delete(&tenant(), "floatingips", &id(&fip)).await.unwrap();
    assert!(routes(&t, &admin(), &sp).await.unwrap().is_empty());
}

#[tokio::test]
async fn floating_ips_and_scoped_networks_together() {
    let t = env().await;
    let topo = scoped_topology(&t).await;
    let vm = t
        .ok(
            &tenant(),
            "ports",
            json!({"network_id": topo.tenant_net, "device_id": "d1", "device_owner": "compute:nova",
                   "fixed_ips": [{"subnet_id": topo.in_scope}]}),
        )
        .await;
    let fip = t
        .ok(
            &tenant(),
            "floatingips",
            json!({"floating_network_id": topo.ext, "port_id": id(&vm)}),
        )
        .await;
    let addr = fip["floating_ip_address"].as_str().unwrap();
    let sp = id(&speaker(&t, json!({})).await);
    act_ok(
        &t,
        &sp,
        "add_gateway_network",
        json!({"network_id": topo.ext}),
    )
    .await;
    // Floating IPs first, then tenant networks (upstream's order).
    assert_eq!(
        routes(&t, &admin(), &sp).await.unwrap(),
        vec![
            route(&format!("{addr}/32"), &topo.gw_ip),
            route("10.10.0.0/24", &topo.gw_ip)
        ]
    );
    set(
        &t,
        SPEAKERS,
        &sp,
        json!({"advertise_floating_ip_host_routes": false}),
    )
    .await;
    assert_eq!(
        routes(&t, &admin(), &sp).await.unwrap(),
        vec![route("10.10.0.0/24", &topo.gw_ip)]
    );
}

async fn register(t: &Env, host: &str, configurations: Value) {
    let body = json!({"agent": {"host": host, "configurations": configurations}});
    t.app.report_agent(&admin(), body).await.unwrap();
}

async fn bgp_agents(t: &Env) -> Vec<Value> {
    t.app
        .list_agents(
            &admin(),
            &query(&[("agent_type", "BGP dynamic routing agent")]),
        )
        .await
        .unwrap()
        .items
        .into_iter()
        .map(Value::Object)
        .collect()
}

async fn hosting(t: &Env, sp: &str) -> Vec<String> {
    agent_hosts(&t.app.speaker_dragents(&admin(), sp).await.unwrap())
}

#[tokio::test]
async fn dragent_scheduling() {
    let t = env().await;
    // A speaker created before any BGP agent stays unscheduled.
    let early = id(&speaker(&t, json!({})).await);
    register(&t, "plain", json!({})).await;
    assert!(bgp_agents(&t).await.is_empty());
    assert!(hosting(&t, &early).await.is_empty());
    // A host that reports `bgp: true` gets its BGP agent entry, and the waiting speaker.
    register(&t, "h1", json!({"bgp": true})).await;
    let agents = bgp_agents(&t).await;
    assert_eq!(agents.len(), 1);
    let a1 = agents[0].clone();
    assert_eq!(
        (
            &a1["agent_type"],
            &a1["binary"],
            &a1["topic"],
            &a1["host"],
            &a1["alive"]
        ),
        (
            &json!("BGP dynamic routing agent"),
            &json!("neutron-bgp-dragent"),
            &json!("bgp_dragent"),
            &json!("h1"),
            &json!(true)
        )
    );
    let a1 = id(&a1);
    assert_eq!(hosting(&t, &early).await, vec!["h1"]);
    let listed = t.app.dragent_speakers(&admin(), &a1).await.unwrap();
    assert_eq!(listed["bgp_speakers"][0]["id"], json!(early));
    // An agent hosts one speaker: the next speaker waits; explicit add is refused (409).
    let sp = id(&speaker(&t, json!({})).await);
    assert!(hosting(&t, &sp).await.is_empty());
    let e = assert_err(
        t.app
            .add_speaker_to_dragent(&admin(), &a1, json!({"bgp_speaker_id": sp}))
            .await,
        409,
        "DrAgentAssociationError",
    );
    assert_eq!(
        e.message,
        format!("BgpDrAgent {a1} is already associated to a BGP speaker.")
    );
    // A second BGP host: the waiting speaker is scheduled when it registers.
    register(&t, "h2", json!({"bgp": true})).await;
    assert_eq!(hosting(&t, &sp).await, vec!["h2"]);
    let a2 = bgp_agents(&t)
        .await
        .into_iter()
        .find(|a| a["host"] == "h2")
        .map(|a| id(&a))
        .unwrap();
    // Explicit removal and add (OSC `bgp dragent remove speaker` / `add speaker`).
    t.app
        .remove_speaker_from_dragent(&admin(), &a2, &sp)
        .await
        .unwrap();
    assert!(hosting(&t, &sp).await.is_empty());
    let e = assert_err(
        t.app.remove_speaker_from_dragent(&admin(), &a2, &sp).await,
        404,
        "DrAgentNotHostingBgpSpeaker",
    );
    assert_eq!(
        e.message,
        format!("BGP speaker {sp} is not hosted by the BgpDrAgent {a2}.")
    );
    assert_eq!(
        t.app.dragent_speakers(&admin(), &a2).await.unwrap(),
        json!({"bgp_speakers": []})
    );
    let out = t
        .app
        .add_speaker_to_dragent(&admin(), &a2, json!({"bgp_speaker_id": sp}))
        .await
        .unwrap();
    assert_eq!(out, Value::Null);
    assert_eq!(hosting(&t, &sp).await, vec!["h2"]);
    // A speaker may be hosted by several agents (HA) when bound by hand.
    t.app
        .remove_speaker_from_dragent(&admin(), &a1, &early)
        .await
        .unwrap();
    t.app
        .add_speaker_to_dragent(&admin(), &a1, json!({"bgp_speaker_id": sp}))
        .await
        .unwrap();
    let mut both = hosting(&t, &sp).await;
    both.sort();
    assert_eq!(both, vec!["h1", "h2"]);

    // Errors: unknown agent, an agent of another type, a disabled agent, a bad body.
    let missing = "0b3b8a1c-1d2e-4f50-9a0b-0c1d2e3f4a5b";
    assert_err(
        t.app
            .add_speaker_to_dragent(&admin(), missing, json!({"bgp_speaker_id": sp}))
            .await,
        404,
        "AgentNotFound",
    );
    assert_err(
        t.app.dragent_speakers(&admin(), missing).await,
        404,
        "AgentNotFound",
    );
    assert_err(
        t.app
            .remove_speaker_from_dragent(&admin(), missing, &sp)
            .await,
        404,
        "AgentNotFound",
    );
    let plain = t
        .app
        .list_agents(&admin(), &[("host".to_string(), "plain".to_string())])
        .await
        .unwrap()
        .items[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let e = assert_err(
        t.app
            .add_speaker_to_dragent(&admin(), &plain, json!({"bgp_speaker_id": early}))
            .await,
        404,
        "DrAgentInvalid",
    );
    assert_eq!(
        e.message,
        format!("BgpDrAgent {plain} is invalid or has been disabled.")
    );
    assert_err(
        t.app
            .remove_speaker_from_dragent(&admin(), &plain, &sp)
            .await,
        404,
        "DrAgentInvalid",
    );
    t.app
        .remove_speaker_from_dragent(&admin(), &a1, &sp)
        .await
        .unwrap();
    t.app
        .update_agent(&admin(), &a1, json!({"agent": {"admin_state_up": false}}))
        .await
        .unwrap();
    assert_err(
        t.app
            .add_speaker_to_dragent(&admin(), &a1, json!({"bgp_speaker_id": early}))
            .await,
        404,
        "DrAgentInvalid",
    );
    // A disabled agent gets no new speaker either.
    let later = id(&speaker(&t, json!({})).await);
    assert!(hosting(&t, &later).await.is_empty());
    for body in [json!({}), json!({"bgp_speaker_id": "x"})] {
        assert_err(
            t.app.add_speaker_to_dragent(&admin(), &a2, body).await,
            400,
            "HTTPBadRequest",
        );
    }
    t.app
        .remove_speaker_from_dragent(&admin(), &a2, &sp)
        .await
        .unwrap();
    assert_err(
        t.app
            .add_speaker_to_dragent(&admin(), &a2, json!({"bgp_speaker_id": missing}))
            .await,
        404,
        "BgpSpeakerNotFound",
    );
    let problems = neutrino_app::consistency::check_store(&t.store)
        .await
        .unwrap();
    assert!(problems.is_empty(), "{problems:?}");
    // Deleting a speaker frees its agent; an unknown speaker has no agents.
    t.app
        .add_speaker_to_dragent(&admin(), &a2, json!({"bgp_speaker_id": sp}))
        .await
        .unwrap();
    t.delete(&admin(), SPEAKERS, &sp).await.unwrap();
    assert_eq!(
        t.app.speaker_dragents(&admin(), &sp).await.unwrap(),
        json!({"agents": []})
    );
    t.app
        .add_speaker_to_dragent(&admin(), &a2, json!({"bgp_speaker_id": later}))
        .await
        .unwrap();
    // Deleting the agent entry frees it too.
    t.app.delete_agent(&admin(), &a2).await.unwrap();
    assert!(hosting(&t, &later).await.is_empty());
    // A host that stops reporting `bgp` loses its entry.
    register(&t, "h1", json!({})).await;
    assert!(bgp_agents(&t).await.iter().all(|a| a["host"] != "h1"));
    let mut tx = t.store.read().await.unwrap();
    let (_, claims) = tx.dump().await.unwrap();
    assert!(
        claims.iter().all(|(s, _, _)| s != "bgp-dragent"),
        "{claims:?}"
    );
}

/// The id of the BGP agent entry of `host`.
async fn bgp_agent_of(t: &Env, host: &str) -> String {
    bgp_agents(t)
        .await
        .into_iter()
        .find(|a| a["host"] == host)
        .map(|a| id(&a))
        .unwrap()
}

#[tokio::test]
async fn speakers_leave_dead_dragents() {
    let t = env().await;
    register(&t, "h1", json!({"bgp": true})).await;
    let sp = id(&speaker(&t, json!({})).await);
    assert_eq!(hosting(&t, &sp).await, vec!["h1"]);
    register(&t, "h2", json!({"bgp": true})).await;
    // Nothing moves while the agents live.
    assert_eq!(t.app.reschedule_bgp_speakers().await.unwrap(), 0);
    assert_eq!(hosting(&t, &sp).await, vec!["h1"]);
    // h1's heartbeat is older than the agent down time: the speaker goes to h2.
    t.store.heartbeat("h1", 0).await.unwrap();
    assert_eq!(t.app.reschedule_bgp_speakers().await.unwrap(), 1);
    assert_eq!(hosting(&t, &sp).await, vec!["h2"]);
    assert_eq!(t.app.reschedule_bgp_speakers().await.unwrap(), 0, "stable");
    // A dead agent that is disabled keeps its speaker (upstream's down bindings are those
    // of enabled agents).
    let a2 = bgp_agent_of(&t, "h2").await;
    t.app
        .update_agent(&admin(), &a2, json!({"agent": {"admin_state_up": false}}))
        .await
        .unwrap();
    t.store.heartbeat("h2", 0).await.unwrap();
    assert_eq!(t.app.reschedule_bgp_speakers().await.unwrap(), 0);
    assert_eq!(hosting(&t, &sp).await, vec!["h2"]);
    // Enabled again with no live agent left: the speaker is unbound and waits...
    t.app
        .update_agent(&admin(), &a2, json!({"agent": {"admin_state_up": true}}))
        .await
        .unwrap();
    assert_eq!(t.app.reschedule_bgp_speakers().await.unwrap(), 1);
    assert!(hosting(&t, &sp).await.is_empty());
    assert_eq!(t.app.reschedule_bgp_speakers().await.unwrap(), 0);
    // ...until an agent lives again: the next pass schedules it there.
    register(&t, "h1", json!({"bgp": true})).await;
    assert_eq!(t.app.reschedule_bgp_speakers().await.unwrap(), 1);
    assert_eq!(hosting(&t, &sp).await, vec!["h1"]);
}

#[tokio::test]
async fn two_servers_move_a_speaker_off_a_dead_dragent_once() {
    for (n, pair) in server_pairs().await.iter().enumerate() {
        let (one, two) = (&pair.one, &pair.two);
        let hosts: Vec<String> = ["a", "b", "c"]
            .iter()
            .map(|h| format!("bgp-pair{n}-{h}"))
            .collect();
        let body = json!({"agent": {"host": hosts[0], "configurations": {"bgp": true}}});
        one.report_agent(&admin(), body).await.unwrap();
        let sp = one
            .create(
                &admin(),
                coll(SPEAKERS),
                vec![doc(json!({"name": "s", "local_as": 1234, "ip_version": 4}))],
            )
            .await
            .unwrap();
        let sp = sp[0]["id"].as_str().unwrap().to_string();
        let on = |app: &App| {
            let (app, sp) = (app.clone(), sp.clone());
            async move { agent_hosts(&app.speaker_dragents(&admin(), &sp).await.unwrap()) }
        };
        assert_eq!(on(one).await, vec![hosts[0].clone()]);
        for h in &hosts[1..] {
            let body = json!({"agent": {"host": h, "configurations": {"bgp": true}}});
            two.report_agent(&admin(), body).await.unwrap();
        }
        pair.store.heartbeat(&hosts[0], 0).await.unwrap();
        let (x, y) = tokio::join!(one.reschedule_bgp_speakers(), two.reschedule_bgp_speakers());
        assert_eq!(x.unwrap() + y.unwrap(), 1, "moved once");
        let now = on(two).await;
        assert_eq!(now.len(), 1, "{now:?}");
        assert!(hosts[1..].contains(&now[0]), "{now:?}");
        // Leave nothing for other tests sharing the database.
        one.delete(&admin(), coll(SPEAKERS), &sp, None)
            .await
            .unwrap();
        for h in &hosts {
            pair.store.heartbeat(h, 0).await.unwrap();
        }
    }
}

/// `GET /neutrino/v1/bgp-speakers?host=H`: what a BGP agent needs to speak (its speaker, the
/// peers with their passwords, the advertised routes); nothing for other hosts.
#[tokio::test]
async fn agent_fetches_its_speakers_with_peers_and_routes() {
    let t = env().await;
    let topo = scoped_topology(&t).await;
    register(&t, "bgp-host", json!({"bgp": true})).await;
    register(&t, "other", json!({})).await;
    let sp = id(&speaker(&t, json!({"local_as": "64512"})).await);
    let pid = peer(&t, "198.18.0.2").await;
    act_ok(&t, &sp, "add_bgp_peer", json!({"bgp_peer_id": pid})).await;
    act_ok(
        &t,
        &sp,
        "add_gateway_network",
        json!({"network_id": topo.ext}),
    )
    .await;
    let doc = t.app.host_bgp_speakers(&admin(), "bgp-host").await.unwrap();
    assert_eq!(
        doc,
        json!({"bgp_speakers": [{
            "id": sp, "name": "s", "local_as": 64512, "ip_version": 4,
            "peers": [{"id": pid, "peer_ip": "198.18.0.2", "remote_as": 4321,
                       "auth_type": "md5", "password": "my-secret"}],
            "advertised_routes": [{"destination": "10.10.0.0/24", "next_hop": topo.gw_ip}],
        }]})
    );
    for host in ["other", "nobody"] {
        let doc = t.app.host_bgp_speakers(&admin(), host).await.unwrap();
        assert_eq!(doc, json!({"bgp_speakers": []}));
    }
    // A disabled BGP agent keeps its speaker but gets nothing (upstream's
    // get_bgp_speakers_for_agent_host); enabled again, it gets it back.
    let agent = bgp_agent_of(&t, "bgp-host").await;
    for up in [false, true] {
        t.app
            .update_agent(&admin(), &agent, json!({"agent": {"admin_state_up": up}}))
            .await
            .unwrap();
        let doc = t.app.host_bgp_speakers(&admin(), "bgp-host").await.unwrap();
        assert_eq!(
            doc["bgp_speakers"].as_array().unwrap().len(),
            usize::from(up)
        );
    }
    // Unbound: the agent gets nothing (and stops announcing).
    t.app
        .remove_speaker_from_dragent(&admin(), &agent, &sp)
        .await
        .unwrap();
    let doc = t.app.host_bgp_speakers(&admin(), "bgp-host").await.unwrap();
    assert_eq!(doc, json!({"bgp_speakers": []}));
    // Agents only: a project user is refused.
    let err = t
        .app
        .host_bgp_speakers(&tenant(), "bgp-host")
        .await
        .unwrap_err();
    assert_eq!(err.status, 403);
}

async fn feed_revision(t: &Env) -> i64 {
    t.app.feed_snapshot(&admin()).await.unwrap()["revision"]
        .as_i64()
        .unwrap()
}

/// The BGP status a Neutrino agent reports (`configurations.bgp_dragent`) is shown in its BGP
/// agent entry, as upstream's dragent reports its counts, with each peer's session state;
/// the agent's own record does not carry it.
#[tokio::test]
async fn dragent_reports_counts_and_peer_states() {
    let t = env().await;
    register(&t, "h1", json!({"bgp": true})).await;
    let conf = |agents: Vec<Value>| agents[0]["configurations"].clone();
    assert_eq!(
        conf(bgp_agents(&t).await),
        json!({"bgp_speakers": 0, "bgp_peers": 0, "advertise_routes": 0})
    );
    let peer = "11111111-2222-4333-8444-555555555555";
    let status = |state: &str| {
        json!({"bgp": true, "bgp_dragent": {
            "bgp_speakers": 1, "bgp_peers": 1, "advertise_routes": 2,
            "neutrino:peer_states": {peer: state}, "junk": "dropped"}})
    };
    register(&t, "h1", status("Active")).await;
    let revision = feed_revision(&t).await;
    register(&t, "h1", status("Active")).await;
    assert_eq!(
        feed_revision(&t).await,
        revision,
        "an unchanged status is no write"
    );
    register(&t, "h1", status("Established")).await;
    assert!(feed_revision(&t).await > revision);
    assert_eq!(
        conf(bgp_agents(&t).await),
        json!({"bgp_speakers": 1, "bgp_peers": 1, "advertise_routes": 2,
               "neutrino:peer_states": {peer: "Established"}})
    );
    let all = t
        .app
        .list_agents(&admin(), &query(&[]))
        .await
        .unwrap()
        .items;
    let main = all
        .iter()
        .find(|a| a["agent_type"] == "Neutrino agent")
        .unwrap();
    assert_eq!(main["configurations"]["bgp"], true);
    assert!(
        main["configurations"].get("bgp_dragent").is_none(),
        "{main:?}"
    );
    // A report without the status (an older agent) leaves the entry as it is.
    register(&t, "h1", json!({"bgp": true})).await;
    assert_eq!(
        conf(bgp_agents(&t).await)["neutrino:peer_states"][peer],
        "Established"
    );
}
