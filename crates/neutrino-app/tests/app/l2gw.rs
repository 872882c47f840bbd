//! Layer-2 gateways through the public application API: every validation rule, error type
//! and status code of networking-l2gw (and its Tempest negative tests), and the
//! border-gateway extension.

use crate::common::*;
use serde_json::{json, Value};

const GWS: &str = "l2-gateways";
const CONNS: &str = "l2-gateway-connections";
const RGWS: &str = "l2-remote-gateways";
const RCONNS: &str = "l2-remote-gateway-connections";
const RMACS: &str = "l2-remote-macs";

fn devices(vlans: Option<&[&str]>) -> Value {
    let iface = match vlans {
        Some(v) => json!({"name": "eth1", "segmentation_id": v}),
        None => json!({"name": "eth1"}),
    };
    json!([{"device_name": "switch1", "interfaces": [iface]}])
}

async fn gateway(t: &Env, vlans: Option<&[&str]>) -> String {
    id(&t
        .ok(
            &admin(),
            GWS,
            json!({"name": "gw", "devices": devices(vlans)}),
        )
        .await)
}

async fn vxlan_net(t: &Env) -> String {
    id(&t.ok(&admin(), "networks", json!({"name": "n"})).await)
}

#[tokio::test]
async fn gateway_crud_and_response_shape() {
    let t = env().await;
    let gw = t
        .ok(
            &admin(),
            GWS,
            json!({"name": "gw1", "devices": [{"device_name": "switch1", "interfaces": [
                {"name": "eth1", "segmentation_id": ["100"]},
                {"name": "eth2", "segmentation_id": [100, "200"]}]}]}),
        )
        .await;
    assert_eq!(gw["name"], "gw1");
    assert_eq!(gw["tenant_id"], "admin-project");
    let dev = &gw["devices"][0];
    assert!(dev["id"].as_str().is_some_and(|s| s.len() == 36));
    assert_eq!(dev["device_name"], "switch1");
    assert_eq!(
        dev["interfaces"],
        json!([{"name": "eth1", "segmentation_id": ["100"]},
               {"name": "eth2", "segmentation_id": ["100", "200"]}])
    );
    assert!(gw.get("created_at").is_none() && gw.get("tags").is_none());
    let gid = id(&gw);
    assert_eq!(t.show(&admin(), GWS, &gid).await.unwrap(), gw);
    assert_eq!(t.list(&admin(), GWS, &[("name", "gw1")]).await.len(), 1);

    // Update: the name alone; then a device's interfaces are replaced, its id kept.
    let up = t
        .update(&admin(), GWS, &gid, json!({"name": "renamed"}))
        .await
        .unwrap();
    assert_eq!(
        (up["name"].clone(), up["devices"].clone()),
        (json!("renamed"), gw["devices"].clone())
    );
    let up = t
        .update(
            &admin(),
            GWS,
            &gid,
            json!({"devices": [{"device_name": "switch1", "interfaces": [
                {"name": "eth9", "segmentation_id": ["300"]}]}]}),
        )
        .await
        .unwrap();
    assert_eq!(up["devices"][0]["id"], dev["id"]);
    assert_eq!(
        up["devices"][0]["interfaces"],
        json!([{"name": "eth9", "segmentation_id": ["300"]}])
    );
    t.delete(&admin(), GWS, &gid).await.unwrap();
    assert_err(t.show(&admin(), GWS, &gid).await, 404, "L2GatewayNotFound");
    assert_err(
        t.delete(&admin(), GWS, &gid).await,
        404,
        "L2GatewayNotFound",
    );
    assert_err(
        t.delete(&admin(), GWS, "not-a-uuid").await,
        404,
        "L2GatewayNotFound",
    );
}

#[tokio::test]
async fn gateway_validation() {
    let t = env().await;
    let bad = |d: Value| json!({"name": "g", "devices": d});
    let cases = [
        (json!({"name": "g"}), 400, "HTTPBadRequest"),
        (bad(json!([])), 400, "HTTPBadRequest"),
        (
            bad(json!([{"device_name": "", "interfaces": [{"name": "e"}]}])),
            400,
            "HTTPBadRequest",
        ),
        (
            bad(json!([{"device_name": "d", "interfaces": []}])),
            400,
            "HTTPBadRequest",
        ),
        (
            bad(json!([{"device_name": "d", "interfaces": [{"name": ""}]}])),
            400,
            "HTTPBadRequest",
        ),
        (
            bad(
                json!([{"device_name": "d", "interfaces": [{"name": "e", "segmentation_id": "5"}]}]),
            ),
            400,
            "HTTPBadRequest",
        ),
        (
            bad(
                json!([{"device_name": "d", "interfaces": [{"name": "e", "segmentation_id": []}]}]),
            ),
            400,
            "HTTPBadRequest",
        ),
        (bad(devices(Some(&["-1"]))), 400, "InvalidInput"),
        (bad(devices(Some(&["4095"]))), 400, "InvalidInput"),
        (bad(devices(Some(&["4096"]))), 400, "InvalidInput"),
        (bad(devices(Some(&["abc"]))), 400, "InvalidInput"),
        (
            bad(json!([{"device_name": "d", "interfaces": [
                {"name": "e", "segmentation_id": ["5"]}, {"name": "f"}]}])),
            409,
            "L2GatewaySegmentationRequired",
        ),
        (
            json!({"devices": devices(None), "bogus": 1}),
            400,
            "HTTPBadRequest",
        ),
    ];
    for (body, status, kind) in cases {
        let r = t.create(&admin(), GWS, body.clone()).await;
        let e = r.expect_err(&body.to_string());
        assert_eq!((e.status, e.kind.as_str()), (status, kind), "{body}: {e}");
    }
    // The VLAN bounds themselves are fine; nothing above was stored.
    assert!(t.list(&admin(), GWS, &[]).await.is_empty());
    gateway(&t, Some(&["0", "4094"])).await;

    // Update rules.
    let gw = gateway(&t, Some(&["100"])).await;
    let empty_name = json!({"devices": [{"device_name": "", "interfaces": [{"name": "e"}]}]});
    assert_err(
        t.update(&admin(), GWS, &gw, empty_name).await,
        400,
        "HTTPBadRequest",
    );
    let unknown = json!({"devices": [{"device_name": "nope", "interfaces": [{"name": "e", "segmentation_id": ["1"]}]}]});
    assert_err(
        t.update(&admin(), GWS, &gw, unknown).await,
        404,
        "L2GatewayDeviceNotFound",
    );
    let no_vlans = json!({"devices": [{"device_name": "switch1", "interfaces": [{"name": "e"}]}]});
    assert_err(
        t.update(&admin(), GWS, &gw, no_vlans.clone()).await,
        404,
        "L2gatewaySegmentationIDNotFound",
    );
    let plain = gateway(&t, None).await;
    let vlans = json!({"devices": [{"device_name": "switch1", "interfaces": [{"name": "e", "segmentation_id": ["7"]}]}]});
    assert_err(
        t.update(&admin(), GWS, &plain, vlans).await,
        409,
        "L2GatewaySegmentationIDExists",
    );
    t.update(&admin(), GWS, &plain, no_vlans).await.unwrap();
    let bad_vlan = json!({"devices": [{"device_name": "switch1", "interfaces": [{"name": "e", "segmentation_id": ["4095"]}]}]});
    assert_err(
        t.update(&admin(), GWS, &gw, bad_vlan).await,
        400,
        "InvalidInput",
    );
    assert_err(
        t.update(
            &admin(),
            GWS,
            "00000000-0000-0000-0000-000000000000",
            json!({"name": "x"}),
        )
        .await,
        404,
        "L2GatewayNotFound",
    );
}

#[tokio::test]
async fn connection_rules() {
    let t = env().await;
    let net = vxlan_net(&t).await;
    let plain = gateway(&t, None).await;
    let tagged = gateway(&t, Some(&["100"])).await;

    // Segmentation id on exactly one side.
    let c = |gw: &str, seg: Option<Value>| {
        let mut b = json!({"l2_gateway_id": gw, "network_id": net});
        if let Some(seg) = seg {
            b["segmentation_id"] = seg;
        }
        b
    };
    assert_err(
        t.create(&admin(), CONNS, c(&plain, None)).await,
        400,
        "InvalidInput",
    );
    assert_err(
        t.create(&admin(), CONNS, c(&tagged, Some(json!("200"))))
            .await,
        400,
        "InvalidInput",
    );
    for bad in ["-1", "4095", "4096", "x"] {
        assert_err(
            t.create(&admin(), CONNS, c(&plain, Some(json!(bad)))).await,
            400,
            "InvalidInput",
        );
    }
    // Upstream validates the attribute as a string.
    assert_err(
        t.create(&admin(), CONNS, c(&plain, Some(json!(["100"]))))
            .await,
        400,
        "HTTPBadRequest",
    );
    assert_err(
        t.create(
            &admin(),
            CONNS,
            json!({"l2_gateway_id": plain, "network_id": net, "port_id": "x"}),
        )
        .await,
        400,
        "HTTPBadRequest",
    );
    assert_err(
        t.create(&admin(), CONNS, json!({"l2_gateway_id": plain}))
            .await,
        400,
        "HTTPBadRequest",
    );

    let conn = t.ok(&admin(), CONNS, c(&plain, Some(json!("100")))).await;
    assert_eq!(conn["segmentation_id"], 100);
    assert_eq!(conn["network_id"], json!(net));
    assert_eq!(conn["l2_gateway_id"], json!(plain));
    assert_eq!(conn["tenant_id"], "admin-project");
    let cid = id(&conn);
    assert_eq!(t.show(&admin(), CONNS, &cid).await.unwrap(), conn);
    let own = t.ok(&admin(), CONNS, c(&tagged, None)).await;
    assert_eq!(own["segmentation_id"], "");

    // Duplicates, unknown gateway / network, no VXLAN segment.
    assert_err(
        t.create(&admin(), CONNS, c(&plain, Some(json!("101"))))
            .await,
        409,
        "L2GatewayConnectionExists",
    );
    let missing = "00000000-0000-0000-0000-000000000000";
    let e = t
        .create(
            &admin(),
            CONNS,
            json!({"l2_gateway_id": missing, "network_id": net, "segmentation_id": "1"}),
        )
        .await;
    assert_err(e, 404, "L2GatewayNotFound");
    let e = t
        .create(
            &admin(),
            CONNS,
            json!({"l2_gateway_id": plain, "network_id": missing, "segmentation_id": "1"}),
        )
        .await;
    assert_err(e, 404, "NetworkNotFound");
    let local = t
        .ok(
            &admin(),
            "networks",
            json!({"provider:network_type": "local"}),
        )
        .await;
    let e = t
        .create(
            &admin(),
            CONNS,
            json!({"l2_gateway_id": plain, "network_id": id(&local), "segmentation_id": "1"}),
        )
        .await;
    assert_err(e, 404, "VxlanSegmentationIDNotFound");

    // No update; a connected gateway stays; connections filter by gateway and network.
    let e = t
        .update(&admin(), CONNS, &cid, json!({"segmentation_id": "5"}))
        .await;
    assert_err(e, 405, "HTTPMethodNotAllowed");
    assert_err(t.delete(&admin(), GWS, &plain).await, 409, "L2GatewayInUse");
    assert_eq!(
        t.list(&admin(), CONNS, &[("l2_gateway_id", &plain)])
            .await
            .len(),
        1
    );
    assert_eq!(
        t.list(&admin(), CONNS, &[("network_id", &net)]).await.len(),
        2
    );
    // A connected gateway may still be updated.
    t.update(&admin(), GWS, &plain, json!({"name": "still"}))
        .await
        .unwrap();

    t.delete(&admin(), CONNS, &cid).await.unwrap();
    assert_err(
        t.delete(&admin(), CONNS, &cid).await,
        404,
        "L2GatewayConnectionNotFound",
    );
    assert_err(
        t.show(&admin(), CONNS, &cid).await,
        404,
        "L2GatewayConnectionNotFound",
    );
    t.delete(&admin(), GWS, &plain).await.unwrap();
    // The pair is free again after delete.
    let plain = gateway(&t, None).await;
    t.ok(&admin(), CONNS, c(&plain, Some(json!("100")))).await;
    // Deleting the network takes its connections with it (upstream's cascade).
    t.delete(&admin(), "networks", &net).await.unwrap();
    assert!(t.list(&admin(), CONNS, &[]).await.is_empty());
    t.delete(&admin(), GWS, &plain).await.unwrap();
    t.delete(&admin(), GWS, &tagged).await.unwrap();
}

#[tokio::test]
async fn admin_only_by_default() {
    let t = env().await;
    let net = vxlan_net(&t).await;
    let gw = gateway(&t, None).await;
    let conn = id(&t
        .ok(
            &admin(),
            CONNS,
            json!({"l2_gateway_id": gw, "network_id": net, "segmentation_id": "3"}),
        )
        .await);
    let user = tenant();
    let e = t
        .create(&user, GWS, json!({"devices": devices(None)}))
        .await;
    assert_err(e, 403, "PolicyNotAuthorized");
    let e = t
        .create(
            &user,
            CONNS,
            json!({"l2_gateway_id": gw, "network_id": net, "segmentation_id": "4"}),
        )
        .await;
    assert_err(e, 403, "PolicyNotAuthorized");
    for path in [GWS, CONNS, RGWS, RCONNS, RMACS] {
        let e = t.app.list(&user, coll(path), &[]).await;
        assert_err(e, 403, "AdminRequired");
    }
    // Records of another project are invisible: 404 on update and delete, as Neutron hides them.
    assert_err(
        t.update(&user, GWS, &gw, json!({"name": "x"})).await,
        404,
        "L2GatewayNotFound",
    );
    assert_err(t.delete(&user, GWS, &gw).await, 404, "L2GatewayNotFound");
    assert_err(
        t.delete(&user, CONNS, &conn).await,
        404,
        "L2GatewayConnectionNotFound",
    );
    // Even its own records are refused to a non-admin by the policy.
    let e = t
        .create(&user, RGWS, json!({"name": "r", "ipaddr": "198.18.0.9"}))
        .await;
    assert_err(e, 403, "PolicyNotAuthorized");
}

#[tokio::test]
async fn border_gateway_extension() {
    let t = env().await;
    let net = vxlan_net(&t).await;
    let gw = gateway(&t, None).await;

    // Remote gateways.
    let e = t.create(&admin(), RGWS, json!({"name": "r"})).await;
    assert_err(e, 400, "HTTPBadRequest");
    let e = t
        .create(&admin(), RGWS, json!({"name": "r", "ipaddr": "not-an-ip"}))
        .await;
    assert_err(e, 400, "HTTPBadRequest");
    let rgw = t
        .ok(
            &admin(),
            RGWS,
            json!({"name": "cloud-b", "ipaddr": "198.18.5.1"}),
        )
        .await;
    assert_eq!(
        (rgw["name"].clone(), rgw["ipaddr"].clone()),
        (json!("cloud-b"), json!("198.18.5.1"))
    );
    let rgw = id(&rgw);
    let up = t
        .update(&admin(), RGWS, &rgw, json!({"ipaddr": "198.18.5.2"}))
        .await
        .unwrap();
    assert_eq!(up["ipaddr"], "198.18.5.2");
    assert_err(
        t.update(&admin(), RGWS, &rgw, json!({"ipaddr": "x"})).await,
        400,
        "HTTPBadRequest",
    );

    // Remote gateway connections need the local connection first.
    let rc = |seg: Value, flood: Value| json!({"gateway": gw, "network": net, "remote_gateway": rgw, "seg_id": seg, "flood": flood});
    assert_err(
        t.create(&admin(), RCONNS, rc(json!("456"), json!("True")))
            .await,
        404,
        "L2GatewayConnectionNotFound",
    );
    let conn = id(&t
        .ok(
            &admin(),
            CONNS,
            json!({"l2_gateway_id": gw, "network_id": net, "segmentation_id": "10"}),
        )
        .await);
    assert_err(
        t.create(&admin(), RCONNS, rc(json!("16777216"), json!("True")))
            .await,
        400,
        "HTTPBadRequest",
    );
    assert_err(
        t.create(&admin(), RCONNS, rc(json!("456"), json!("perhaps")))
            .await,
        400,
        "HTTPBadRequest",
    );
    let missing = "00000000-0000-0000-0000-000000000000";
    let mut body = rc(json!("456"), json!("True"));
    body["remote_gateway"] = json!(missing);
    assert_err(
        t.create(&admin(), RCONNS, body).await,
        404,
        "L2RemoteGatewayNotFound",
    );
    let mut body = rc(json!("456"), json!("True"));
    body["gateway"] = json!(missing);
    assert_err(
        t.create(&admin(), RCONNS, body).await,
        404,
        "L2GatewayNotFound",
    );
    let mut body = rc(json!("456"), json!("True"));
    body["network"] = json!(missing);
    assert_err(
        t.create(&admin(), RCONNS, body).await,
        404,
        "NetworkNotFound",
    );

    let r = t.ok(&admin(), RCONNS, rc(json!("456"), json!(false))).await;
    assert_eq!(
        (r["seg_id"].clone(), r["flood"].clone()),
        (json!("456"), json!("False"))
    );
    let rconn = id(&r);
    let e = t
        .create(
            &admin(),
            RCONNS,
            json!({"gateway": gw, "network": net, "remote_gateway": rgw}),
        )
        .await;
    assert_err(e, 409, "L2RemoteGatewayConnectionExists");
    assert_err(
        t.update(&admin(), RCONNS, &rconn, json!({"flood": "True"}))
            .await,
        405,
        "HTTPMethodNotAllowed",
    );
    // The local connection cannot go while a remote connection uses it.
    assert_err(
        t.delete(&admin(), CONNS, &conn).await,
        409,
        "L2GatewayConnectionInUse",
    );

    // Remote MACs: bulk create, filter by connection, uuid key, duplicates.
    let macs = t
        .app
        .create(
            &admin(),
            coll(RMACS),
            vec![
                doc(json!({"mac": "00:11:22:33:44:55", "ipaddr": "10.9.0.5", "rgw_connection": rconn})),
                doc(json!({"mac": "00:11:22:33:44:66", "rgw_connection": rconn})),
            ],
        )
        .await
        .unwrap();
    assert_eq!(macs.len(), 2);
    assert_eq!(macs[0]["uuid"], macs[0]["id"]);
    assert_eq!(macs[1]["ipaddr"], "");
    let e = t
        .create(
            &admin(),
            RMACS,
            json!({"mac": "00:11:22:33:44:55", "rgw_connection": rconn}),
        )
        .await;
    assert_err(e, 409, "L2RemoteMacExists");
    for bad in [
        json!({"mac": "zz", "rgw_connection": rconn}),
        json!({"mac": "01:00:5e:00:00:01", "rgw_connection": rconn}),
        json!({"mac": "00:11:22:33:44:77", "ipaddr": "10.0.0.300", "rgw_connection": rconn}),
        json!({"mac": "00:11:22:33:44:77"}),
    ] {
        assert_err(t.create(&admin(), RMACS, bad).await, 400, "HTTPBadRequest");
    }
    let e = t
        .create(
            &admin(),
            RMACS,
            json!({"mac": "00:11:22:33:44:77", "rgw_connection": missing}),
        )
        .await;
    assert_err(e, 404, "L2RemoteGatewayConnectionNotFound");
    // All or nothing: a bulk with one bad item stores none.
    let r = t
        .app
        .create(
            &admin(),
            coll(RMACS),
            vec![
                doc(json!({"mac": "00:11:22:33:44:88", "rgw_connection": rconn})),
                doc(json!({"mac": "00:11:22:33:44:55", "rgw_connection": rconn})),
            ],
        )
        .await;
    assert_err(r, 409, "L2RemoteMacExists");
    assert_eq!(
        t.list(&admin(), RMACS, &[("rgw_connection", &rconn)])
            .await
            .len(),
        2
    );
    assert!(t
        .list(&admin(), RMACS, &[("rgw_connection", missing)])
        .await
        .is_empty());
    let mac0 = macs[0]["uuid"].as_str().unwrap().to_string();
    t.delete(&admin(), RMACS, &mac0).await.unwrap();
    assert_err(
        t.show(&admin(), RMACS, &mac0).await,
        404,
        "L2RemoteMacNotFound",
    );
    // The MAC may come back once deleted.
    t.ok(
        &admin(),
        RMACS,
        json!({"mac": "00:11:22:33:44:55", "rgw_connection": rconn}),
    )
    .await;

    // Deleting the remote connection takes its MACs; deleting the remote gateway its connections.
    t.delete(&admin(), RCONNS, &rconn).await.unwrap();
    assert!(t.list(&admin(), RMACS, &[]).await.is_empty());
    let again = id(&t.ok(&admin(), RCONNS, rc(json!(""), json!("True"))).await);
    t.ok(
        &admin(),
        RMACS,
        json!({"mac": "00:11:22:33:44:55", "rgw_connection": again}),
    )
    .await;
    t.delete(&admin(), RGWS, &rgw).await.unwrap();
    assert!(t.list(&admin(), RCONNS, &[]).await.is_empty());
    assert!(t.list(&admin(), RMACS, &[]).await.is_empty());
    // And with nothing left on it, the local connection and the gateway go.
    t.delete(&admin(), CONNS, &conn).await.unwrap();
    t.delete(&admin(), GWS, &gw).await.unwrap();
    // Every claim went with its record.
    let mut tx = t.store.read().await.unwrap();
    let (records, claims) = tx.dump().await.unwrap();
    assert!(
        claims.iter().all(|(s, _, _)| !s.starts_with("l2gw")),
        "{claims:?}"
    );
    assert!(records.iter().all(|r| !r.kind.starts_with("l2_")));
}

#[tokio::test]
async fn network_delete_cascades_remote_records() {
    let t = env().await;
    let net = vxlan_net(&t).await;
    let gw = gateway(&t, Some(&["7"])).await;
    t.ok(
        &admin(),
        CONNS,
        json!({"l2_gateway_id": gw, "network_id": net}),
    )
    .await;
    let rgw = id(&t.ok(&admin(), RGWS, json!({"ipaddr": "198.18.6.1"})).await);
    let rconn = id(&t
        .ok(
            &admin(),
            RCONNS,
            json!({"gateway": gw, "network": net, "remote_gateway": rgw}),
        )
        .await);
    t.ok(
        &admin(),
        RMACS,
        json!({"mac": "02:00:00:00:00:01", "rgw_connection": rconn}),
    )
    .await;
    let problems = neutrino_app::consistency::check_store(&t.store)
        .await
        .unwrap();
    assert!(problems.is_empty(), "{problems:?}");
    t.delete(&admin(), "networks", &net).await.unwrap();
    for path in [CONNS, RCONNS, RMACS] {
        assert!(t.list(&admin(), path, &[]).await.is_empty(), "{path}");
    }
    let problems = neutrino_app::consistency::check_store(&t.store)
        .await
        .unwrap();
    assert!(problems.is_empty(), "{problems:?}");
    t.delete(&admin(), GWS, &gw).await.unwrap();
    t.delete(&admin(), RGWS, &rgw).await.unwrap();
}

#[tokio::test]
async fn concurrent_connections_one_wins() {
    let t = env().await;
    let net = vxlan_net(&t).await;
    let gw = gateway(&t, None).await;
    let body = json!({"l2_gateway_id": gw, "network_id": net, "segmentation_id": "9"});
    let ctx = admin();
    let (a, b) = tokio::join!(
        t.create(&ctx, CONNS, body.clone()),
        t.create(&ctx, CONNS, body.clone())
    );
    let wins = [&a, &b].iter().filter(|r| r.is_ok()).count();
    assert_eq!(wins, 1, "{a:?} {b:?}");
    let loser = if a.is_err() { a } else { b };
    assert_err(loser, 409, "L2GatewayConnectionExists");
}

#[tokio::test]
async fn gateway_hosts_report_learned_macs() {
    let t = env().await;
    let net = vxlan_net(&t).await;
    let stored = |t: &Env| {
        let store = t.store.clone();
        async move {
            let mut tx = store.read().await.unwrap();
            let (records, _) = tx.dump().await.unwrap();
            records
                .into_iter()
                .filter(|r| r.kind == "l2gw_learned_macs")
                .map(|r| r.body)
                .collect::<Vec<Value>>()
        }
    };
    let report = |macs: Value| json!({"host": "gw-host", "networks": {net.clone(): macs}});
    let r = t
        .app
        .report_l2gw_macs(
            &admin(),
            report(json!(["02:00:00:00:00:BB", "02:00:00:00:00:aa"])),
        )
        .await
        .unwrap();
    assert_eq!(r["updated"], 1);
    let docs = stored(&t).await;
    assert_eq!(docs.len(), 1);
    assert_eq!(
        docs[0]["macs"],
        json!(["02:00:00:00:00:aa", "02:00:00:00:00:bb"])
    );
    assert_eq!(docs[0]["host"], "gw-host");
    // The same set again is no write.
    let r = t
        .app
        .report_l2gw_macs(
            &admin(),
            report(json!(["02:00:00:00:00:aa", "02:00:00:00:00:bb"])),
        )
        .await
        .unwrap();
    assert_eq!(r["updated"], 0);
    // Refusals: a member, a bad MAC, a bad shape.
    let e = t.app.report_l2gw_macs(&tenant(), report(json!([]))).await;
    assert_err(e, 403, "PolicyNotAuthorized");
    let e = t
        .app
        .report_l2gw_macs(&admin(), report(json!(["nope"])))
        .await;
    assert_err(e, 400, "HTTPBadRequest");
    let e = t
        .app
        .report_l2gw_macs(&admin(), json!({"host": "h", "networks": []}))
        .await;
    assert_err(e, 400, "HTTPBadRequest");
    // Unknown networks are ignored; the network's deletion takes the report.
    let r = t
        .app
        .report_l2gw_macs(
            &admin(),
            json!({"host": "gw-host", "networks": {"00000000-0000-0000-0000-000000000000": ["02:00:00:00:00:01"]}}),
        )
        .await
        .unwrap();
    assert_eq!(r["updated"], 0);
    t.delete(&admin(), "networks", &net).await.unwrap();
    assert!(stored(&t).await.is_empty());
    let problems = neutrino_app::consistency::check_store(&t.store)
        .await
        .unwrap();
    assert!(problems.is_empty(), "{problems:?}");
    // An empty list clears a report.
    let net = vxlan_net(&t).await;
    let report = |macs: Value| json!({"host": "gw-host", "networks": {net.clone(): macs}});
    t.app
        .report_l2gw_macs(&admin(), report(json!(["02:00:00:00:00:aa"])))
        .await
        .unwrap();
    let r = t
        .app
        .report_l2gw_macs(&admin(), report(json!([])))
        .await
        .unwrap();
    assert_eq!(r["updated"], 1);
    assert!(stored(&t).await.is_empty());
}
