//! Network segment ranges with Neutron's rules: the default range, validation, overlaps,
//! `used` / `available`, in-use checks, tenant networks taking ids from their project's
//! ranges, and the admin-only policy.

use crate::common::*;
use serde_json::{json, Value};

const RANGES: &str = "network_segment_ranges";

fn vxlan(lo: u64, hi: u64, project: Option<&str>) -> Value {
    match project {
        Some(p) => json!({"network_type": "vxlan", "minimum": lo, "maximum": hi,
                          "shared": false, "project_id": p}),
        None => json!({"network_type": "vxlan", "minimum": lo, "maximum": hi,
                       "physical_network": "", "project_id": "", "shared": true}),
    }
}

#[tokio::test]
async fn default_range_is_read_only() {
    let t = env().await;
    let all = t.list(&admin(), RANGES, &[]).await;
    assert_eq!(all.len(), 1);
    let default = &all[0];
    assert_eq!(default["default"], true);
    assert_eq!(default["shared"], true);
    assert_eq!(default["project_id"], Value::Null);
    assert_eq!(default["network_type"], "vxlan");
    assert_eq!(default["minimum"], 1);
    assert_eq!(default["maximum"], 16_000_000);
    assert_eq!(default["used"], json!({}));
    let did = id(default);
    let r = t.update(&admin(), RANGES, &did, json!({"name": "x"})).await;
    assert_err(r, 400, "NetworkSegmentRangeDefaultReadOnly");
    let r = t.delete(&admin(), RANGES, &did).await;
    assert_err(r, 400, "NetworkSegmentRangeDefaultReadOnly");
    // A restart keeps the one default range.
    let again = neutrino_app::App::new(t.store.clone(), Default::default())
        .await
        .unwrap();
    let page = again
        .list(&admin(), coll(RANGES), &query(&[]))
        .await
        .unwrap();
    assert_eq!(page.items.len(), 1);
}

#[tokio::test]
async fn validation_and_overlaps() {
    let t = env().await;
    let made = t.ok(&admin(), RANGES, vxlan(1100, 1105, None)).await;
    assert_eq!(made["default"], false);
    assert_eq!(made["shared"], true);
    assert_eq!(made["project_id"], Value::Null);
    assert_eq!(made["revision_number"], 1);
    assert_eq!(made["tags"], json!([]));
    assert_eq!(
        made["available"],
        json!([1100, 1101, 1102, 1103, 1104, 1105])
    );
    let r = t.create(&admin(), RANGES, vxlan(1105, 1200, None)).await;
    assert_err(r, 409, "NetworkSegmentRangeOverlaps");
    let r = t
        .create(&admin(), RANGES, vxlan(1000, 1100, Some("p1")))
        .await;
    assert_err(r, 409, "NetworkSegmentRangeOverlaps");
    // Inverted, out of the type's bounds, unsupported types, VLAN without a physnet.
    let r = t.create(&admin(), RANGES, vxlan(20, 10, None)).await;
    assert_eq!(r.unwrap_err().status, 400);
    let r = t.create(&admin(), RANGES, vxlan(1, 1 << 24, None)).await;
    assert_eq!(r.unwrap_err().status, 400);
    let gre = json!({"network_type": "gre", "minimum": 1, "maximum": 10});
    let r = t.create(&admin(), RANGES, gre).await;
    assert_err(r, 400, "NetworkSegmentRangeNetTypeNotSupported");
    let vlan = json!({"network_type": "vlan", "minimum": 100, "maximum": 4095,
                      "physical_network": "physnet1"});
    assert_eq!(
        t.create(&admin(), RANGES, vlan).await.unwrap_err().status,
        400
    );
    let vlan = json!({"network_type": "vlan", "minimum": 100, "maximum": 200});
    assert_eq!(
        t.create(&admin(), RANGES, vlan).await.unwrap_err().status,
        400
    );
    let vlan = json!({"network_type": "vlan", "minimum": 100, "maximum": 200,
                      "physical_network": "physnet1"});
    let v = t.ok(&admin(), RANGES, vlan.clone()).await;
    assert_eq!(v["physical_network"], "physnet1");
    // Another physical network does not overlap.
    let mut other = vlan.clone();
    other["physical_network"] = json!("physnet2");
    t.ok(&admin(), RANGES, other).await;
    assert_err(
        t.create(&admin(), RANGES, vlan).await,
        409,
        "NetworkSegmentRangeOverlaps",
    );
    // Type and physnet are set once; the span may move (not onto another range).
    let rid = id(&made);
    // Filtered by a project: only that project's ranges (never shared ones).
    let p1 = t.ok(&admin(), RANGES, vxlan(7000, 7001, Some("p1"))).await;
    let listed = t.list(&admin(), RANGES, &[("project_id", "p1")]).await;
    assert_eq!(listed.iter().map(id).collect::<Vec<_>>(), vec![id(&p1)]);
    let listed = t
        .list(&admin(), RANGES, &[("project_id", "admin-project")])
        .await;
    assert!(listed.is_empty(), "{listed:?}");
    let private = json!({"network_type": "vxlan", "minimum": 7100, "maximum": 7101,
                         "shared": false, "project_id": ""});
    assert_eq!(
        t.create(&admin(), RANGES, private)
            .await
            .unwrap_err()
            .status,
        400
    );
    let r = t
        .update(&admin(), RANGES, &rid, json!({"network_type": "vlan"}))
        .await;
    assert_eq!(r.unwrap_err().status, 400);
    let up = t
        .update(
            &admin(),
            RANGES,
            &rid,
            json!({"name": "n", "minimum": 1050, "maximum": 1155}),
        )
        .await
        .unwrap();
    assert_eq!(
        (up["minimum"].clone(), up["maximum"].clone()),
        (json!(1050), json!(1155))
    );
    assert_eq!(up["revision_number"], 2);
    // Admin-only, and 404 for who may not read it.
    let body = json!({"network_type": "vxlan", "minimum": 5000, "maximum": 5001});
    let r = t.create(&tenant(), RANGES, body).await;
    assert_eq!(r.unwrap_err().status, 403);
    assert!(t.list(&tenant(), RANGES, &[]).await.is_empty());
    let r = t.show(&tenant(), RANGES, &rid).await;
    assert_err(r, 404, "NetworkSegmentRangeNotFound");
    t.delete(&admin(), RANGES, &rid).await.unwrap();
    assert_err(
        t.show(&admin(), RANGES, &rid).await,
        404,
        "NetworkSegmentRangeNotFound",
    );
}

/// A network's segmentation id, as an admin reads it.
async fn seg(t: &Env, n: Value) -> Value {
    let shown = t.show(&admin(), "networks", &id(&n)).await.unwrap();
    shown["provider:segmentation_id"].clone()
}

#[tokio::test]
async fn tenant_networks_take_their_projects_ranges() {
    let t = env().await;
    let range = t
        .ok(&admin(), RANGES, vxlan(1100, 1102, Some("project-a")))
        .await;
    let rid = id(&range);
    assert_eq!(range["project_id"], "project-a");
    // Project A's networks take ids of its range, lowest first.
    let mut nets = Vec::new();
    for want in [1100, 1101, 1102] {
        let n = t.ok(&tenant(), "networks", json!({})).await;
        nets.push(id(&n));
        assert_eq!(seg(&t, n).await, want);
    }
    // Then shared ones, outside every project's range; other projects never get them.
    let n = t.ok(&tenant(), "networks", json!({})).await;
    assert_eq!(seg(&t, n).await, 1);
    let b = t.ok(&other_tenant(), "networks", json!({})).await;
    assert_eq!(seg(&t, b).await, 2);
    let shown = t.show(&admin(), RANGES, &rid).await.unwrap();
    assert_eq!(
        shown["used"],
        json!({"1100": "project-a", "1101": "project-a", "1102": "project-a"})
    );
    assert_eq!(shown["available"], json!([]));
    // In use: neither deleted nor shrunk past its networks.
    assert_err(
        t.delete(&admin(), RANGES, &rid).await,
        409,
        "NetworkSegmentRangeReferencedByProject",
    );
    for change in [
        json!({"minimum": 1101}),
        json!({"minimum": 1000, "maximum": 1101}),
    ] {
        let r = t.update(&admin(), RANGES, &rid, change).await;
        assert_err(r, 409, "NetworkSegmentRangeReferencedByProject");
    }
    // Upstream's check: the new span must still hold every held id (a minimum equal to the
    // lowest is fine).
    t.update(
        &admin(),
        RANGES,
        &rid,
        json!({"name": "renamed", "minimum": 1100, "maximum": 1150}),
    )
    .await
    .unwrap();
    t.update(
        &admin(),
        RANGES,
        &rid,
        json!({"minimum": 1000, "maximum": 1200}),
    )
    .await
    .unwrap();
    for n in &nets {
        t.delete(&admin(), "networks", n).await.unwrap();
    }
    let shown = t.show(&admin(), RANGES, &rid).await.unwrap();
    assert_eq!(shown["used"], json!({}));
    assert_eq!(shown["available"].as_array().unwrap().len(), 201);
    t.delete(&admin(), RANGES, &rid).await.unwrap();
    // An admin creating a network for the project (Tempest's way) uses it as well.
    let range = t
        .ok(&admin(), RANGES, vxlan(3000, 3001, Some("project-c")))
        .await;
    let n = t
        .ok(
            &admin(),
            "networks",
            json!({"project_id": "project-c", "provider:network_type": "vxlan"}),
        )
        .await;
    assert_eq!(n["provider:segmentation_id"], 3000);
    let r = t.delete(&admin(), RANGES, &id(&range)).await;
    assert_err(r, 409, "NetworkSegmentRangeReferencedByProject");
}

#[tokio::test]
async fn concurrent_overlapping_ranges_one_wins() {
    for pair in server_pairs().await {
        // A fresh span, also on a PostgreSQL database earlier runs left ranges in.
        let lo = 10_000_000 + u64::from(rand::random::<u16>()) * 16;
        let body = |shift: u64| doc(vxlan(lo + shift, lo + shift + 7, None));
        let (coll, who) = (coll(RANGES), admin());
        let (a, b) = tokio::join!(
            pair.one.create(&who, coll, vec![body(0)]),
            pair.two.create(&who, coll, vec![body(4)]),
        );
        let won = [&a, &b].iter().filter(|r| r.is_ok()).count();
        assert_eq!(won, 1, "{a:?} {b:?}");
        let (won, lost) = if a.is_err() { (b, a) } else { (a, b) };
        assert_err(lost, 409, "NetworkSegmentRangeOverlaps");
        let made = won.unwrap().remove(0);
        let id = made["id"].as_str().unwrap();
        pair.one.delete(&admin(), coll, id, None).await.unwrap();
    }
}
