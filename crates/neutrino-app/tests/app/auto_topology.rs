//! `is_default` external networks and the auto-allocated topology ("get me a network"):
//! prerequisites, the topology built once (also when two requests race), and its removal.

use crate::common::*;
use serde_json::{json, Value};

impl Env {
    /// Shared default subnet pools for both IP versions.
    async fn default_pools(&self) {
        for (prefix, len) in [("10.100.0.0/16", 26), ("fd00:aa::/48", 64)] {
            self.ok(
                &admin(),
                "subnetpools",
                json!({"name": prefix, "prefixes": [prefix], "default_prefixlen": len,
                       "is_default": true, "shared": true}),
            )
            .await;
        }
    }

    async fn topology(&self, ctx: &Context, project: &str) -> Result<Value, ApiError> {
        self.app.auto_allocated_topology(ctx, project, &[]).await
    }

    async fn dry_run(&self, ctx: &Context) -> Result<Value, ApiError> {
        let fields = ["dry-run".to_string()];
        self.app.auto_allocated_topology(ctx, "None", &fields).await
    }

    async fn names(&self, path: &str) -> Vec<String> {
        let items = self
            .app
            .list(&admin(), coll(path), &[])
            .await
            .unwrap()
            .items;
        let mut out: Vec<String> = items
            .iter()
            .map(|i| i["name"].as_str().unwrap_or_default().to_string())
            .filter(|n| n.starts_with("auto_allocated"))
            .collect();
        out.sort();
        out
    }
}

#[tokio::test]
async fn one_default_external_network() {
    let t = env().await;
    let (ext, _) = t.external().await;
    let net = t.show(&admin(), "networks", &ext).await.unwrap();
    assert_eq!(net["is_default"], false);
    let internal = t.ok(&tenant(), "networks", json!({})).await;
    assert!(
        internal.get("is_default").is_none(),
        "only external networks say"
    );
    assert_err(
        t.update(
            &tenant(),
            "networks",
            &id(&internal),
            json!({"is_default": true}),
        )
        .await,
        403,
        "PolicyNotAuthorized",
    );
    assert_err(
        t.create(&tenant(), "networks", json!({"is_default": true}))
            .await,
        403,
        "PolicyNotAuthorized",
    );
    let rev = net["revision_number"].as_i64().unwrap();
    let net = t
        .update(&admin(), "networks", &ext, json!({"is_default": true}))
        .await
        .unwrap();
    assert_eq!(net["is_default"], true);
    assert!(net["revision_number"].as_i64().unwrap() > rev);
    // Other updates leave it alone.
    let net = t
        .update(&admin(), "networks", &ext, json!({"description": "gman"}))
        .await
        .unwrap();
    assert_eq!(net["is_default"], true);
    let e = t
        .create(
            &admin(),
            "networks",
            json!({"router:external": true, "is_default": true}),
        )
        .await;
    assert_err(e, 409, "DefaultExternalNetworkExists");
    let other = t
        .ok(&admin(), "networks", json!({"router:external": true}))
        .await;
    assert_err(
        t.update(
            &admin(),
            "networks",
            &id(&other),
            json!({"is_default": true}),
        )
        .await,
        409,
        "DefaultExternalNetworkExists",
    );
    // A default external network is shared with everyone: its wildcard policy stays.
    let policies = t
        .app
        .list(
            &admin(),
            coll("rbac-policies"),
            &[
                ("object_id".into(), ext.clone()),
                ("action".into(), "access_as_external".into()),
            ],
        )
        .await
        .unwrap()
        .items;
    let wildcard = policies[0]["id"].as_str().unwrap().to_string();
    assert_err(
        t.delete(&admin(), "rbac-policies", &wildcard).await,
        409,
        "RbacPolicyInUse",
    );
    assert_err(
        t.update(
            &admin(),
            "rbac-policies",
            &wildcard,
            json!({"target_tenant": "project-a"}),
        )
        .await,
        409,
        "RbacPolicyInUse",
    );
    // No longer external: no longer the default, and another network may be.
    let net = t
        .update(
            &admin(),
            "networks",
            &ext,
            json!({"router:external": false}),
        )
        .await
        .unwrap();
    assert!(net.get("is_default").is_none());
    t.update(
        &admin(),
        "networks",
        &id(&other),
        json!({"is_default": true}),
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn prerequisites() {
    let t = env().await;
    let me = tenant();
    let e = assert_err(t.dry_run(&me).await, 409, "AutoAllocationFailure");
    assert!(
        e.message.contains("No default router:external network"),
        "{e}"
    );
    assert_err(t.topology(&me, "None").await, 409, "AutoAllocationFailure");
    let (ext, _) = t.external().await;
    t.update(&admin(), "networks", &ext, json!({"is_default": true}))
        .await
        .unwrap();
    let e = assert_err(t.dry_run(&me).await, 409, "AutoAllocationFailure");
    assert!(e.message.contains("No default subnetpools defined"), "{e}");
    let e = assert_err(
        t.topology(&me, "project-a").await,
        409,
        "AutoAllocationFailure",
    );
    assert!(e.message.contains("private network"), "{e}");
    assert!(
        t.names("networks").await.is_empty(),
        "nothing half-built stays"
    );
    t.default_pools().await;
    assert_eq!(
        t.dry_run(&me).await.unwrap(),
        json!({"auto_allocated_topology": {"id": "dry-run=pass", "project_id": "project-a"}})
    );
    assert_err(
        t.topology(&me, "project-b").await,
        403,
        "PolicyNotAuthorized",
    );
    let e = t
        .app
        .auto_allocated_topology(&me, "None", &["id".to_string()])
        .await;
    assert_err(e, 400, "BadRequest");
}

#[tokio::test]
async fn topology_is_built_once_and_removed() {
    let t = env().await;
    let me = tenant();
    let (ext, _) = t.external().await;
    t.update(&admin(), "networks", &ext, json!({"is_default": true}))
        .await
        .unwrap();
    t.default_pools().await;
    // Two requests at once: one topology, both see it.
    let (a, b) = tokio::join!(t.topology(&me, "None"), t.topology(&me, "project-a"));
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a, b);
    let net = a["auto_allocated_topology"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(a["auto_allocated_topology"]["project_id"], "project-a");
    assert_eq!(t.names("networks").await, ["auto_allocated_network"]);
    assert_eq!(
        t.names("subnets").await,
        ["auto_allocated_subnet_v4", "auto_allocated_subnet_v6"]
    );
    assert_eq!(t.names("routers").await, ["auto_allocated_router"]);
    let network = t.show(&me, "networks", &net).await.unwrap();
    assert_eq!(network["admin_state_up"], true);
    assert_eq!(network["project_id"], "project-a");
    let routers = t.app.list(&me, coll("routers"), &[]).await.unwrap().items;
    assert_eq!(
        routers[0]["external_gateway_info"]["network_id"],
        json!(ext)
    );
    let interfaces = t
        .app
        .list(
            &me,
            coll("ports"),
            &[("device_owner".into(), "network:router_interface".into())],
        )
        .await
        .unwrap()
        .items;
    assert_eq!(interfaces.len(), 2, "one interface per subnet");
    assert_eq!(t.topology(&me, "None").await.unwrap(), a, "idempotent");

    // An admin gets one for another project.
    let theirs = t.topology(&admin(), "project-b").await.unwrap();
    assert_eq!(theirs["auto_allocated_topology"]["project_id"], "project-b");
    assert_ne!(theirs, a);

    // A port in use keeps the topology; then DELETE removes it all (and twice is fine).
    let port = t
        .ok(&me, "ports", json!({"network_id": net, "device_id": "vm"}))
        .await;
    assert_err(
        t.app.delete_auto_allocated_topology(&me, "None").await,
        409,
        "NetworkInUse",
    );
    t.delete(&me, "ports", &id(&port)).await.unwrap();
    t.app
        .delete_auto_allocated_topology(&me, "None")
        .await
        .unwrap();
    t.app
        .delete_auto_allocated_topology(&me, "None")
        .await
        .unwrap();
    let mine = |path: &'static str| {
        let t = &t;
        async move {
            t.app
                .list(
                    &tenant(),
                    coll(path),
                    &[("project_id".into(), "project-a".into())],
                )
                .await
                .unwrap()
                .items
                .len()
        }
    };
    assert_eq!((mine("networks").await, mine("routers").await), (0, 0));
    // Rebuilt on the next request; taken apart by hand, it is forgotten and built anew.
    let again = t.topology(&me, "None").await.unwrap();
    assert_ne!(again, a);
    let net = again["auto_allocated_topology"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let router = id(
        &t.app.list(&me, coll("routers"), &[]).await.unwrap().items[0]
            .clone()
            .into(),
    );
    for sn in t.app.list(&me, coll("subnets"), &[]).await.unwrap().items {
        t.action(
            &me,
            &router,
            "remove_router_interface",
            json!({"subnet_id": sn["id"]}),
        )
        .await
        .unwrap();
    }
    t.delete(&me, "routers", &router).await.unwrap();
    t.delete(&me, "networks", &net).await.unwrap();
    let third = t.topology(&me, "None").await.unwrap();
    assert_ne!(third, again);
    assert_eq!(
        t.names("routers").await.len(),
        2,
        "project-b's and the new one"
    );
}
