//! Port pools: an admin-only collection; the background refill tops a pool up to its size
//! (never beyond, also when refills run at once); a take hands a parked port to a container
//! in one transaction and never the same port twice.

use std::collections::BTreeSet;

use crate::common::*;
use serde_json::{json, Value};

/// A network with a /24 and a pool of `size` on host h1 for it: (network, pool id).
async fn pool(t: &Env, size: i64) -> (String, String) {
    let (net, _) = t.net(&admin(), json!({"name": "n"}), "10.9.0.0/24").await;
    let out = t
        .app
        .create_port_pool(
            &admin(),
            &json!({"port_pool": {"host": "h1", "network_id": net, "size": size}}),
        )
        .await
        .unwrap();
    let p = &out["port_pool"];
    assert_eq!(p["size"], size, "{out}");
    assert_eq!(p["ready"], 0, "{out}");
    (net, id(p))
}

async fn show(t: &Env, pool: &str) -> Value {
    t.app.show_port_pool(&admin(), pool).await.unwrap()["port_pool"].clone()
}

fn take_body(net: &str, ctr: &str) -> Value {
    json!({"port": {"binding:host_id": "h1", "network_id": net, "device_id": ctr,
        "name": format!("cni-{ctr}"),
        "binding:profile": {"neutrino:netns": "/run/netns/x", "neutrino:ifname": "eth0"}}})
}

#[tokio::test]
async fn only_admins_manage_pools_and_bad_input_is_400() {
    let t = env().await;
    let (net, pool) = pool(&t, 2).await;
    let body = json!({"port_pool": {"host": "h2", "network_id": net, "size": 1}});
    assert_err(
        t.app.create_port_pool(&tenant(), &body).await,
        403,
        "PolicyNotAuthorized",
    );
    // Others neither see nor change pools, nor take ports from them.
    let listed = t.app.list_port_pools(&tenant(), &[]).await.unwrap();
    assert_eq!(listed["port_pools"], json!([]));
    assert_err(
        t.app.show_port_pool(&tenant(), &pool).await,
        404,
        "PortPoolNotFound",
    );
    assert_err(
        t.app
            .update_port_pool(&tenant(), &pool, &json!({"port_pool": {"size": 9}}))
            .await,
        404,
        "PortPoolNotFound",
    );
    assert_err(
        t.app.delete_port_pool(&tenant(), &pool).await,
        404,
        "PortPoolNotFound",
    );
    assert_err(
        t.app
            .take_pooled_port(&tenant(), &take_body(&net, "c1"))
            .await,
        403,
        "PolicyNotAuthorized",
    );
    for bad in [
        json!({}),
        json!({"port_pool": 1}),
        json!({"port_pool": {"host": "", "network_id": net, "size": 1}}),
        json!({"port_pool": {"host": "h", "network_id": "x", "size": 1}}),
        json!({"port_pool": {"host": "h", "network_id": net, "size": -1}}),
        json!({"port_pool": {"host": "h", "network_id": net, "size": 100000}}),
        json!({"port_pool": {"host": "h", "network_id": net, "size": "2"}}),
        json!({"port_pool": {"host": "h", "network_id": net, "size": 1, "security_groups": "x"}}),
        json!({"port_pool": {"host": "h", "network_id": net, "size": 1, "bogus": 1}}),
    ] {
        assert_err(
            t.app.create_port_pool(&admin(), &bad).await,
            400,
            "HTTPBadRequest",
        );
    }
    let unknown = json!({"port_pool": {"host": "h", "size": 1,
        "network_id": "00000000-0000-4000-8000-000000000000"}});
    assert_eq!(
        t.app
            .create_port_pool(&admin(), &unknown)
            .await
            .unwrap_err()
            .status,
        404
    );
    // One pool per (host, network, groups).
    let again = json!({"port_pool": {"host": "h1", "network_id": net, "size": 1}});
    assert_err(
        t.app.create_port_pool(&admin(), &again).await,
        409,
        "PortPoolExists",
    );
    for bad in [
        json!({"port_pool": {"size": -3}}),
        json!({"port_pool": {"host": "h9"}}),
    ] {
        assert_err(
            t.app.update_port_pool(&admin(), &pool, &bad).await,
            400,
            "HTTPBadRequest",
        );
    }
    for bad in [
        json!({}),
        json!({"port": {"network_id": net, "device_id": "c"}}),
        json!({"port": {"binding:host_id": "h1", "network_id": net}}),
        json!({"port": {"binding:host_id": "h1", "network_id": net, "device_id": "c", "binding:profile": 3}}),
    ] {
        assert_err(
            t.app.take_pooled_port(&admin(), &bad).await,
            400,
            "HTTPBadRequest",
        );
    }
    let listed = t
        .app
        .list_port_pools(&admin(), &query(&[("host", "h1")]))
        .await
        .unwrap();
    assert_eq!(listed["port_pools"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn refill_fills_to_size_resizes_and_delete_removes_parked_ports() {
    let t = env().await;
    let (net, pool) = pool(&t, 3).await;
    assert_eq!(t.app.refill_port_pools().await.unwrap(), 3);
    assert_eq!(t.app.refill_port_pools().await.unwrap(), 0);
    let parked = t
        .ports(&[
            ("device_owner", "compute:container-pool"),
            ("network_id", &net),
        ])
        .await;
    assert_eq!(parked.len(), 3);
    let default_group = show(&t, &pool).await["security_groups"].clone();
    for p in &parked {
        assert_eq!(p["binding:host_id"], "h1");
        assert_eq!(p["device_id"], json!(pool));
        assert_eq!(p["binding:profile"], json!({"neutrino:pool": pool}));
        assert_eq!(p["security_groups"], default_group);
        assert_eq!(p["project_id"], "admin-project");
    }
    let shown = show(&t, &pool).await;
    assert_eq!(
        (shown["building"].clone(), shown["in_use"].clone()),
        (json!(3), json!(0))
    );
    // Shrunk: the surplus goes; grown: filled again.
    t.app
        .update_port_pool(&admin(), &pool, &json!({"port_pool": {"size": 1}}))
        .await
        .unwrap();
    t.app.refill_port_pools().await.unwrap();
    assert_eq!(show(&t, &pool).await["building"], 1);
    t.app
        .update_port_pool(&admin(), &pool, &json!({"port_pool": {"size": 2}}))
        .await
        .unwrap();
    assert_eq!(t.app.refill_port_pools().await.unwrap(), 1);
    // A take leaves the taken port alone when the pool is deleted.
    t.app
        .take_pooled_port(&admin(), &take_body(&net, "c1"))
        .await
        .unwrap();
    t.app.delete_port_pool(&admin(), &pool).await.unwrap();
    let left = t.ports(&[("network_id", &net)]).await;
    let owners: Vec<&str> = left
        .iter()
        .filter_map(|p| p["device_owner"].as_str())
        .filter(|o| o.starts_with("compute:"))
        .collect();
    assert_eq!(owners, vec!["compute:container"]);
    assert_err(
        t.app.show_port_pool(&admin(), &pool).await,
        404,
        "PortPoolNotFound",
    );
}

#[tokio::test]
async fn take_hands_a_parked_port_to_the_container_and_the_pool_refills() {
    let t = env().await;
    let (net, pool) = pool(&t, 2).await;
    // Empty pool, no matching pool: 404, the plugin creates a port instead.
    assert_err(
        t.app
            .take_pooled_port(&admin(), &take_body(&net, "c1"))
            .await,
        404,
        "PortPoolEmpty",
    );
    let mut other = take_body(&net, "c1");
    other["port"]["binding:host_id"] = json!("h2");
    t.app.refill_port_pools().await.unwrap();
    assert_err(
        t.app.take_pooled_port(&admin(), &other).await,
        404,
        "PortPoolEmpty",
    );
    let parked: BTreeSet<String> = t
        .ports(&[("device_id", &pool)])
        .await
        .iter()
        .map(id)
        .collect();
    let out = t
        .app
        .take_pooled_port(&admin(), &take_body(&net, "c1"))
        .await
        .unwrap();
    let port = &out["port"];
    assert!(parked.contains(&id(port)), "{out}");
    assert_eq!(port["device_id"], "c1");
    assert_eq!(port["device_owner"], "compute:container");
    assert_eq!(port["name"], "cni-c1");
    assert_eq!(port["status"], "DOWN");
    assert_eq!(port["binding:host_id"], "h1");
    assert_eq!(
        port["binding:profile"],
        json!({"neutrino:netns": "/run/netns/x", "neutrino:ifname": "eth0", "neutrino:pool": pool})
    );
    assert_eq!(port["revision_number"], 2);
    let shown = show(&t, &pool).await;
    assert_eq!(
        (shown["building"].clone(), shown["in_use"].clone()),
        (json!(1), json!(1))
    );
    assert_eq!(t.app.refill_port_pools().await.unwrap(), 1);
    assert_eq!(show(&t, &pool).await["building"], 2);
    // Named security groups must be the pool's set.
    let mut named = take_body(&net, "c2");
    named["port"]["security_groups"] = shown["security_groups"].clone();
    t.app.take_pooled_port(&admin(), &named).await.unwrap();
    named["port"]["security_groups"] = json!([]);
    assert_err(
        t.app.take_pooled_port(&admin(), &named).await,
        404,
        "PortPoolEmpty",
    );
}

#[tokio::test]
async fn concurrent_takes_and_refills_never_share_or_overfill() {
    for pair in server_pairs().await {
        let admin = admin();
        let net = pair
            .one
            .create(&admin, coll("networks"), vec![doc(json!({"name": "n"}))])
            .await
            .unwrap()[0]["id"]
            .as_str()
            .unwrap()
            .to_string();
        pair.one
            .create(
                &admin,
                coll("subnets"),
                vec![doc(
                    json!({"network_id": net, "ip_version": 4, "cidr": "10.8.0.0/24"}),
                )],
            )
            .await
            .unwrap();
        let out = pair
            .one
            .create_port_pool(
                &admin,
                &json!({"port_pool": {"host": "h1", "network_id": net, "size": 20}}),
            )
            .await
            .unwrap();
        let pool = id(&out["port_pool"]);
        // Refills from both servers at once fill the pool exactly once.
        let (a, b) = tokio::join!(pair.one.refill_port_pools(), pair.two.refill_port_pools());
        assert_eq!(a.unwrap() + b.unwrap(), 20);
        // 24 takes at once, from both servers: 20 distinct ports, then "empty".
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..24 {
            let app = if i % 2 == 0 {
                pair.one.clone()
            } else {
                pair.two.clone()
            };
            let body = take_body(&net, &format!("c{i}"));
            let ctx = admin.clone();
            tasks.spawn(async move { app.take_pooled_port(&ctx, &body).await });
        }
        let mut taken = BTreeSet::new();
        let mut empty = 0;
        while let Some(r) = tasks.join_next().await {
            match r.unwrap() {
                Ok(out) => assert!(taken.insert(id(&out["port"])), "port handed out twice"),
                Err(e) => {
                    assert_eq!((e.status, e.kind.as_str()), (404, "PortPoolEmpty"));
                    empty += 1;
                }
            }
        }
        assert_eq!((taken.len(), empty), (20, 4));
        let shown = pair.one.show_port_pool(&admin, &pool).await.unwrap();
        assert_eq!(shown["port_pool"]["in_use"], 20);
        assert_eq!(shown["port_pool"]["building"], 0);
        pair.one.delete_port_pool(&admin, &pool).await.unwrap();
    }
}

/// The isolation matrix's callers (A's member and reader, B's member and reader, an admin of
/// another project) on a pool of project A: only admins read or write pools, others get an
/// empty list, 404 for the pool and 403 for creates and takes (admin-only resources as
/// Neutron answers them).
#[tokio::test]
async fn isolation_of_pools_by_caller() {
    let t = env().await;
    let (net, pool) = pool(&t, 1).await;
    let in_a = json!({"port_pool": {"host": "h7", "network_id": net, "size": 0,
        "project_id": "project-a"}});
    let other_admin = Context::new("root", "project-z", &["admin".into()]);
    let callers = [
        ("A member", tenant(), false),
        (
            "A reader",
            Context::new("rita", "project-a", &["reader".into()]),
            false,
        ),
        ("B member", other_tenant(), false),
        (
            "B reader",
            Context::new("rob", "project-b", &["reader".into()]),
            false,
        ),
        ("admin", other_admin, true),
    ];
    for (who, ctx, admin) in callers {
        let listed = t.app.list_port_pools(&ctx, &[]).await.unwrap();
        assert_eq!(
            listed["port_pools"].as_array().unwrap().len(),
            usize::from(admin),
            "{who}"
        );
        let read = t.app.show_port_pool(&ctx, &pool).await;
        let resize = json!({"port_pool": {"size": 1}});
        let write = t.app.update_port_pool(&ctx, &pool, &resize).await;
        let take = t.app.take_pooled_port(&ctx, &take_body(&net, "c")).await;
        let create = t.app.create_port_pool(&ctx, &in_a).await;
        if admin {
            assert!(read.is_ok() && write.is_ok(), "{who}");
            // The pool is empty (no refill ran): the plugin falls back to a create.
            assert_err(take, 404, "PortPoolEmpty");
            assert_eq!(create.unwrap()["port_pool"]["project_id"], "project-a");
        } else {
            assert_err(read, 404, "PortPoolNotFound");
            assert_err(write, 404, "PortPoolNotFound");
            assert_err(take, 403, "PolicyNotAuthorized");
            assert_err(create, 403, "PolicyNotAuthorized");
            assert_err(
                t.app.delete_port_pool(&ctx, &pool).await,
                404,
                "PortPoolNotFound",
            );
        }
    }
}

/// An agent reports containers whose runtime namespace is gone: their container ports bound
/// to its host are deleted; a VM's port, another host's container port, a parked pool port
/// and unknown ids are left alone; bad input is 400.
#[tokio::test]
async fn ports_of_containers_gone_are_deleted_and_nothing_else() {
    let t = env().await;
    let (net, _) = t.net(&admin(), json!({"name": "n"}), "10.0.0.0/24").await;
    let container = |host: &str, ctr: &str| {
        json!({"network_id": net, "binding:host_id": host, "device_id": ctr,
               "device_owner": "compute:container",
               "binding:profile": {"neutrino:netns": "/run/netns/x", "neutrino:ifname": "eth0"}})
    };
    let gone = id(&t.ok(&admin(), "ports", container("h1", "c1")).await);
    let elsewhere = id(&t.ok(&admin(), "ports", container("h2", "c2")).await);
    let vm = id(&t
        .ok(
            &admin(),
            "ports",
            json!({"network_id": net, "binding:host_id": "h1", "device_owner": "compute:nova"}),
        )
        .await);
    let unknown = "0b9d1f4e-0000-4000-8000-000000000000";
    let body = json!({"host": "h1", "ports": [gone, elsewhere, vm, unknown]});
    let out = t.app.report_containers_gone(&admin(), body).await.unwrap();
    assert_eq!(out["deleted"], 1);
    let left: BTreeSet<String> = t
        .app
        .list(&admin(), coll("ports"), &[])
        .await
        .unwrap()
        .items
        .iter()
        .map(|p| p["id"].as_str().unwrap().to_string())
        .collect();
    assert!(!left.contains(&gone));
    assert!(left.contains(&elsewhere) && left.contains(&vm));
    for bad in [
        json!({"ports": [vm]}),
        json!({"host": "h1"}),
        json!({"host": "h1", "ports": ["not-a-uuid"]}),
    ] {
        assert_err(
            t.app.report_containers_gone(&admin(), bad).await,
            400,
            "HTTPBadRequest",
        );
    }
    assert_err(
        t.app
            .report_containers_gone(&tenant(), json!({"host": "h1", "ports": []}))
            .await,
        403,
        "PolicyNotAuthorized",
    );
}
