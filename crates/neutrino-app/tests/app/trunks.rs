//! Trunks through the application API: the subport rules and conflicts of Neutron's trunk
//! plugin (with its exception names), `trunk_details` on the parent port, and what subports
//! look like while they are in a trunk.

use crate::common::*;
use serde_json::{json, Value};

const NO_PORT: &str = "0b3b8a1c-1d2e-4f50-9a0b-0c1d2e3f4a5b";

fn vlan(port: &str, id: i64) -> Value {
    json!({"port_id": port, "segmentation_type": "vlan", "segmentation_id": id})
}

impl Env {
    /// A port of `ctx` on a new network of its own.
    async fn port(&self, ctx: &Context) -> Value {
        let net = self.ok(ctx, "networks", json!({})).await;
        self.ok(ctx, "ports", json!({"network_id": id(&net)})).await
    }

    async fn trunk(
        &self,
        ctx: &Context,
        parent: &Value,
        subports: Value,
    ) -> Result<Value, ApiError> {
        self.create(
            ctx,
            "trunks",
            json!({"port_id": id(parent), "sub_ports": subports}),
        )
        .await
    }

    async fn port_as_admin(&self, port: &Value) -> Value {
        self.show(&admin(), "ports", &id(port)).await.unwrap()
    }
}

#[tokio::test]
async fn trunk_lifecycle() {
    let t = env().await;
    let me = tenant();
    let parent = t.port(&me).await;
    let sub = t.port(&me).await;
    let trunk = t.trunk(&me, &parent, json!([])).await.unwrap();
    assert_eq!(trunk["status"], "DOWN");
    assert_eq!(trunk["sub_ports"], json!([]));
    assert_eq!(trunk["tags"], json!([]));
    assert_eq!(trunk["project_id"], "project-a");
    let shown = t.show(&me, "ports", &id(&parent)).await.unwrap();
    assert_eq!(
        shown["trunk_details"],
        json!({"trunk_id": id(&trunk), "sub_ports": []})
    );
    let plain = t.show(&me, "ports", &id(&sub)).await.unwrap();
    assert!(plain.get("trunk_details").is_none());

    // Adding answers with the trunk itself (not wrapped), with a new revision.
    let added = t
        .act(
            &me,
            "trunks",
            &id(&trunk),
            "add_subports",
            json!({"sub_ports": [vlan(&id(&sub), 100)]}),
        )
        .await
        .unwrap();
    assert_eq!(added["sub_ports"], json!([vlan(&id(&sub), 100)]));
    assert!(added["revision_number"].as_i64() > trunk["revision_number"].as_i64());
    let listed = t
        .app
        .get_action(&me, coll("trunks"), &id(&trunk), "get_subports")
        .await
        .unwrap();
    assert_eq!(listed, json!({"sub_ports": [vlan(&id(&sub), 100)]}));
    let shown = t.show(&me, "ports", &id(&parent)).await.unwrap();
    let mut with_mac = vlan(&id(&sub), 100);
    with_mac["mac_address"] = sub["mac_address"].clone();
    assert_eq!(shown["trunk_details"]["sub_ports"], json!([with_mac]));
    let subport = t.port_as_admin(&sub).await;
    assert_eq!(subport["device_owner"], "trunk:subport");
    assert_eq!(
        subport["binding:profile"]["parent_name"],
        json!(id(&parent))
    );
    assert_eq!(subport["binding:profile"]["tag"], 100);

    // Subports follow the parent's binding host.
    t.update(
        &admin(),
        "ports",
        &id(&parent),
        json!({"binding:host_id": "node-1"}),
    )
    .await
    .unwrap();
    assert_eq!(t.port_as_admin(&sub).await["binding:host_id"], "node-1");

    let removed = t
        .act(
            &me,
            "trunks",
            &id(&trunk),
            "remove_subports",
            json!({"sub_ports": [{"port_id": id(&sub)}]}),
        )
        .await
        .unwrap();
    assert_eq!(removed["sub_ports"], json!([]));
    let subport = t.port_as_admin(&sub).await;
    assert_eq!(subport["device_owner"], "");
    assert_eq!(subport["binding:host_id"], "");
    assert!(subport["binding:profile"].get("parent_name").is_none());

    // The VLAN is free again, the trunk can be renamed and deleted; the ports survive.
    t.act(
        &me,
        "trunks",
        &id(&trunk),
        "add_subports",
        json!({"sub_ports": [vlan(&id(&sub), 100)]}),
    )
    .await
    .unwrap();
    let renamed = t
        .update(
            &me,
            "trunks",
            &id(&trunk),
            json!({"name": "t1", "description": "d"}),
        )
        .await
        .unwrap();
    assert_eq!(
        (renamed["name"].as_str(), renamed["status"].as_str()),
        (Some("t1"), Some("DOWN"))
    );
    assert_err(
        t.update(&me, "trunks", &id(&trunk), json!({"port_id": id(&sub)}))
            .await,
        400,
        "HTTPBadRequest",
    );
    t.delete(&me, "trunks", &id(&trunk)).await.unwrap();
    assert_err(
        t.show(&me, "trunks", &id(&trunk)).await,
        404,
        "TrunkNotFound",
    );
    assert!(t
        .show(&me, "ports", &id(&parent))
        .await
        .unwrap()
        .get("trunk_details")
        .is_none());
    assert_eq!(t.port_as_admin(&sub).await["device_owner"], "");
    // Both ports are free for a new trunk, the other way round.
    t.trunk(&me, &sub, json!([vlan(&id(&parent), 7)]))
        .await
        .unwrap();
}

#[tokio::test]
async fn parent_port_rules() {
    let t = env().await;
    let me = tenant();
    let parent = t.port(&me).await;
    let sub = t.port(&me).await;
    assert_err(
        t.create(&me, "trunks", json!({"port_id": NO_PORT})).await,
        404,
        "PortNotFound",
    );
    let theirs = t.port(&other_tenant()).await;
    assert_err(t.trunk(&me, &theirs, json!([])).await, 404, "PortNotFound");
    t.trunk(&me, &parent, json!([vlan(&id(&sub), 2)]))
        .await
        .unwrap();
    assert_err(
        t.trunk(&me, &parent, json!([])).await,
        409,
        "ParentPortInUse",
    );
    assert_err(t.trunk(&me, &sub, json!([])).await, 409, "TrunkPortInUse");
    // The trunk is invisible to other projects.
    let trunks = t
        .app
        .list(&other_tenant(), coll("trunks"), &[])
        .await
        .unwrap();
    assert!(trunks.items.is_empty());
}

#[tokio::test]
async fn subport_shape_is_checked_first() {
    let t = env().await;
    let me = tenant();
    let parent = t.port(&me).await;
    let (a, b) = (t.port(&me).await, t.port(&me).await);
    // On create the attribute check comes before the parent port is even looked up.
    for bad in [
        json!([{"port_id": NO_PORT, "segmentation_type": "vlan"}]),
        json!([{"port_id": NO_PORT, "segmentation_id": 3}]),
        json!([{"segmentation_type": "vlan", "segmentation_id": 3}]),
        json!([vlan(&id(&a), 2), vlan(&id(&b), 2)]),
        json!([vlan(&id(&a), 2), vlan(&id(&a), 3)]),
        json!({"port_id": id(&a)}),
    ] {
        let e = t
            .create(&me, "trunks", json!({"port_id": NO_PORT, "sub_ports": bad}))
            .await;
        assert_err(e, 400, "HTTPBadRequest");
    }
    let trunk = id(&t.trunk(&me, &parent, json!([])).await.unwrap());
    let add = |body: Value| t.act(&me, "trunks", &trunk, "add_subports", body);
    assert_err(
        add(json!({"sub_ports": vlan(&id(&a), 2)})).await,
        400,
        "InvalidInput",
    );
    assert_err(
        add(json!({"sub_ports": [{"port_id": id(&a), "segmentation_type": "vlan"}]})).await,
        400,
        "InvalidInput",
    );
    let e = assert_err(
        add(json!({"sub_ports": [{"port_id": id(&a), "segmentation_type": "gre", "segmentation_id": 3}]})).await,
        400,
        "InvalidInput",
    );
    assert!(e.message.contains("Unknown segmentation_type 'gre'"), "{e}");
    let e = assert_err(
        add(json!({"sub_ports": [vlan(&id(&a), 5000)]})).await,
        400,
        "InvalidInput",
    );
    assert!(e.message.contains("not in range"), "{e}");
    assert_err(
        add(json!({"sub_ports": [{"port_id": id(&a), "segmentation_type": "vlan", "segmentation_id": "x"}]})).await,
        400,
        "InvalidInput",
    );
    // A port given by id alone has no segmentation: fine to remove, not to add.
    assert_err(
        add(json!({"sub_ports": [{"port_id": id(&a)}]})).await,
        400,
        "InvalidInput",
    );
    let remove = t
        .act(
            &me,
            "trunks",
            &trunk,
            "remove_subports",
            json!({"sub_ports": {"port_id": id(&a)}}),
        )
        .await;
    assert_err(remove, 400, "InvalidInput");
}

#[tokio::test]
async fn subport_conflicts() {
    let t = env().await;
    let me = tenant();
    let (p1, p2) = (t.port(&me).await, t.port(&me).await);
    let (a, b, c) = (t.port(&me).await, t.port(&me).await, t.port(&me).await);
    let t1 = t.trunk(&me, &p1, json!([vlan(&id(&a), 10)])).await.unwrap();
    let t2 = t.trunk(&me, &p2, json!([])).await.unwrap();
    let add = |trunk: &Value, subs: Value| {
        let trunk = id(trunk);
        let me = me.clone();
        let t = &t;
        async move {
            t.act(
                &me,
                "trunks",
                &trunk,
                "add_subports",
                json!({ "sub_ports": subs }),
            )
            .await
        }
    };
    assert_err(
        add(&t1, json!([vlan(&id(&p1), 11)])).await,
        409,
        "ParentPortInUse",
    );
    assert_err(
        add(&t2, json!([vlan(&id(&p1), 11)])).await,
        409,
        "ParentPortInUse",
    );
    assert_err(
        add(&t2, json!([vlan(&id(&a), 11)])).await,
        409,
        "TrunkPortInUse",
    );
    assert_err(
        add(&t1, json!([vlan(NO_PORT, 11)])).await,
        404,
        "PortNotFound",
    );
    assert_err(
        add(&t1, json!([vlan(&id(&b), 10)])).await,
        409,
        "DuplicateSubPort",
    );
    // One VLAN id per trunk, but the same id on another trunk is fine.
    add(&t2, json!([vlan(&id(&b), 10)])).await.unwrap();
    // A port used by a device cannot be a subport.
    t.update(&me, "ports", &id(&c), json!({"device_id": "vm-1"}))
        .await
        .unwrap();
    assert_err(add(&t1, json!([vlan(&id(&c), 12)])).await, 409, "PortInUse");
    // All or nothing: the good first subport of a failing request is not added.
    t.update(&me, "ports", &id(&c), json!({"device_id": ""}))
        .await
        .unwrap();
    let d = t.port(&me).await;
    assert_err(
        add(&t1, json!([vlan(&id(&d), 20), vlan(&id(&c), 10)])).await,
        409,
        "DuplicateSubPort",
    );
    let shown = t.show(&me, "trunks", &id(&t1)).await.unwrap();
    assert_eq!(shown["sub_ports"], json!([vlan(&id(&a), 10)]));
    add(&t1, json!([vlan(&id(&d), 20)])).await.unwrap();
    // Removing anything that is not a subport of this trunk fails the whole request.
    let e = t
        .act(
            &me,
            "trunks",
            &id(&t1),
            "remove_subports",
            json!({"sub_ports": [{"port_id": id(&d)}, {"port_id": id(&b)}]}),
        )
        .await;
    assert_err(e, 404, "SubPortNotFound");
    assert_eq!(
        t.show(&me, "trunks", &id(&t1)).await.unwrap()["sub_ports"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    // Ports in a trunk cannot be deleted.
    assert_err(
        t.delete(&me, "ports", &id(&p1)).await,
        409,
        "PortInUseAsTrunkParent",
    );
    assert_err(
        t.delete(&me, "ports", &id(&a)).await,
        409,
        "PortInUseAsSubPort",
    );
}

#[tokio::test]
async fn disabled_trunks_are_locked() {
    let t = env().await;
    let me = tenant();
    let parent = t.port(&me).await;
    let sub = t.port(&me).await;
    let trunk = t
        .create(
            &me,
            "trunks",
            json!({"port_id": id(&parent), "admin_state_up": false,
                                       "sub_ports": [vlan(&id(&sub), 5)]}),
        )
        .await
        .unwrap();
    let other = t.port(&me).await;
    let add = t
        .act(
            &me,
            "trunks",
            &id(&trunk),
            "add_subports",
            json!({"sub_ports": [vlan(&id(&other), 6)]}),
        )
        .await;
    assert_err(add, 409, "TrunkDisabled");
    let remove = t
        .act(
            &me,
            "trunks",
            &id(&trunk),
            "remove_subports",
            json!({"sub_ports": [{"port_id": id(&sub)}]}),
        )
        .await;
    assert_err(remove, 409, "TrunkDisabled");
    assert_err(
        t.delete(&me, "trunks", &id(&trunk)).await,
        409,
        "TrunkDisabled",
    );
    t.update(&me, "trunks", &id(&trunk), json!({"admin_state_up": true}))
        .await
        .unwrap();
    t.delete(&me, "trunks", &id(&trunk)).await.unwrap();
}

#[tokio::test]
async fn segmentation_from_networks_and_mtus() {
    let t = env().await;
    let vlan_net = |seg: i64| {
        json!({"project_id": "project-a", "provider:network_type": "vlan",
               "provider:physical_network": "physnet1", "provider:segmentation_id": seg})
    };
    let on = |net: Value| {
        let t = &t;
        async move {
            let net = t.ok(&admin(), "networks", net).await;
            t.ok(&tenant(), "ports", json!({"network_id": id(&net)}))
                .await
        }
    };
    let me = tenant();
    let big_parent = on(vlan_net(300)).await;
    let (s1, s2) = (on(vlan_net(301)).await, on(vlan_net(302)).await);
    let trunk = t
        .trunk(
            &me,
            &big_parent,
            json!([{"port_id": id(&s1), "segmentation_type": "inherit"},
                                         {"port_id": id(&s2), "segmentation_type": "inherit"}]),
        )
        .await
        .unwrap();
    assert_eq!(
        trunk["sub_ports"],
        json!([vlan(&id(&s1), 301), vlan(&id(&s2), 302)])
    );
    // VXLAN networks have no VLAN to inherit.
    let vx = t.port(&me).await;
    let e = t
        .act(
            &me,
            "trunks",
            &id(&trunk),
            "add_subports",
            json!({"sub_ports": [{"port_id": id(&vx), "segmentation_type": "inherit"}]}),
        )
        .await;
    let e = assert_err(e, 400, "InvalidInput");
    let vx_net = vx["network_id"].as_str().unwrap();
    assert_eq!(
        e.message,
        format!(
            "Invalid input for operation: Subport {} cannot inherit a segmentation: its network \
             {vx_net} is a vxlan network, and segmentation_type 'inherit' needs a VLAN network.",
            id(&vx)
        )
    );
    // A subport's MTU (VLAN 1500) may not exceed the parent's (VXLAN 1450); equal is fine.
    let small_parent = t.port(&me).await;
    let big = on(vlan_net(303)).await;
    assert_err(
        t.trunk(&me, &small_parent, json!([vlan(&id(&big), 2)]))
            .await,
        409,
        "SubPortMtuGreaterThanTrunkPortMtu",
    );
    let small = t
        .trunk(&me, &small_parent, json!([vlan(&id(&vx), 2)]))
        .await
        .unwrap();
    let e = t
        .act(
            &me,
            "trunks",
            &id(&small),
            "add_subports",
            json!({"sub_ports": [vlan(&id(&big), 3)]}),
        )
        .await;
    assert_err(e, 409, "SubPortMtuGreaterThanTrunkPortMtu");
}

#[tokio::test]
async fn trunk_quota() {
    let t = env().await;
    let me = tenant();
    let parent = t.port(&me).await;
    t.app
        .quota_update(&admin(), "project-a", &json!({"quota": {"trunk": 0}}))
        .await
        .unwrap();
    assert_err(t.trunk(&me, &parent, json!([])).await, 409, "OverQuota");
}

/// The agent of the parent's host reports the trunk's status; reports from another host
/// or with a status outside Neutron's machine are not taken; an unbound parent puts the
/// trunk back to DOWN.
#[tokio::test]
async fn trunk_status_comes_from_the_parents_host() {
    let t = env().await;
    let parent = t.port(&admin()).await;
    let trunk = t.trunk(&admin(), &parent, json!([])).await.unwrap();
    let tid = id(&trunk);
    t.update(
        &admin(),
        "ports",
        &id(&parent),
        json!({"binding:host_id": "h1"}),
    )
    .await
    .unwrap();
    let report =
        |host: &str, status: &str| json!({"host": host, "trunks": [{"id": tid, "status": status}]});
    let other = t
        .app
        .report_trunk_status(&admin(), report("h2", "ACTIVE"))
        .await
        .unwrap();
    assert_eq!(other["updated"], 0);
    let own = t
        .app
        .report_trunk_status(&admin(), report("h1", "DEGRADED"))
        .await
        .unwrap();
    assert_eq!(own["updated"], 1);
    let shown = t.show(&admin(), "trunks", &tid).await.unwrap();
    assert_eq!(shown["status"], "DEGRADED");
    for bad in [
        report("h1", "WIRED"),
        json!({"host": "h1", "trunks": {}}),
        json!({"trunks": []}),
        json!({"host": "h1", "trunks": [{"id": "x", "status": "ACTIVE"}]}),
    ] {
        let e = t.app.report_trunk_status(&admin(), bad).await.unwrap_err();
        assert_eq!(e.status, 400, "{e:?}");
    }
    // A tenant is no agent.
    assert!(t
        .app
        .report_trunk_status(&tenant(), report("h1", "ACTIVE"))
        .await
        .is_err());
    t.update(
        &admin(),
        "ports",
        &id(&parent),
        json!({"binding:host_id": ""}),
    )
    .await
    .unwrap();
    let shown = t.show(&admin(), "trunks", &tid).await.unwrap();
    assert_eq!(shown["status"], "DOWN");
}
