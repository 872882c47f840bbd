//! Address groups through the application API: address normalisation and the add / remove
//! actions, security group rules naming a group as their remote, RBAC sharing and the in-use
//! rules between the three.

use crate::common::*;
use serde_json::{json, Value};

impl Env {
    async fn group(&self, ctx: &Context, addresses: Value) -> Result<Value, ApiError> {
        self.create(
            ctx,
            "address-groups",
            json!({"name": "ag", "addresses": addresses}),
        )
        .await
    }

    /// An ingress TCP rule of `ctx` naming address group `ag`, in a new group.
    async fn rule_for(&self, ctx: &Context, ag: &str, extra: Value) -> Result<Value, ApiError> {
        let sg = self
            .ok(ctx, "security-groups", json!({"name": "web"}))
            .await;
        let mut body = json!({"security_group_id": id(&sg), "direction": "ingress",
                              "protocol": "tcp", "remote_address_group_id": ag});
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        self.create(ctx, "security-group-rules", body).await
    }

    async fn share_group(&self, object: &str, target: &str) -> Value {
        self.ok(
            &admin(),
            "rbac-policies",
            json!({"object_type": "address_group", "object_id": object,
                   "action": "access_as_shared", "target_tenant": target}),
        )
        .await
    }
}

fn sorted(v: &Value) -> Vec<String> {
    let mut out: Vec<String> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_str().unwrap().to_string())
        .collect();
    out.sort();
    out
}

#[tokio::test]
async fn addresses_are_normalised_and_edited_atomically() {
    let t = env().await;
    let me = tenant();
    let ag = t
        .group(
            &me,
            json!(["10.10.10.3/32", "192.168.0.10/24", "2001:db8::f00/64"]),
        )
        .await
        .unwrap();
    let expected = ["10.10.10.3/32", "192.168.0.0/24", "2001:db8::/64"];
    assert_eq!(sorted(&ag["addresses"]), expected);
    assert_eq!(ag["revision_number"], 1);
    assert!(ag.get("shared").is_none());
    for bad in [
        json!(["10.20.30.40"]),
        json!(["not an address"]),
        json!(["10.0.0.0/8", "10.0.0.0/8"]),
    ] {
        assert_err(t.group(&me, bad).await, 400, "HTTPBadRequest");
    }
    let agid = id(&ag);
    // Host agents mirror address groups (their firewalls match on the addresses).
    let snap = t.app.feed_snapshot(&admin()).await.unwrap();
    let mirrored = &snap["resources"]["address_group"];
    assert_eq!(mirrored[0]["id"], json!(agid));
    assert_eq!(sorted(&mirrored[0]["addresses"]), expected);
    let added = t
        .act(
            &me,
            "address-groups",
            &agid,
            "add_addresses",
            json!({"addresses": ["10.20.30.40"]}),
        )
        .await
        .unwrap();
    assert!(sorted(&added["address_group"]["addresses"]).contains(&"10.20.30.40/32".to_string()));
    assert_eq!(added["address_group"]["revision_number"], 2);
    let again = t
        .act(
            &me,
            "address-groups",
            &agid,
            "add_addresses",
            json!({"addresses": ["10.20.30.40/32", "10.9.9.9/32"]}),
        )
        .await;
    assert_err(again, 400, "AddressesAlreadyExist");
    let bad = t
        .act(
            &me,
            "address-groups",
            &agid,
            "add_addresses",
            json!({"addresses": ["this is bad"]}),
        )
        .await;
    assert_err(bad, 400, "AddrFormatError");
    let missing = t
        .act(
            &me,
            "address-groups",
            &agid,
            "remove_addresses",
            json!({"addresses": ["10.10.10.3", "10.200.200.200"]}),
        )
        .await;
    assert_err(missing, 404, "AddressesNotFound");
    let shown = t.show(&me, "address-groups", &agid).await.unwrap();
    assert_eq!(
        shown["addresses"].as_array().unwrap().len(),
        4,
        "nothing changed"
    );
    let removed = t
        .act(
            &me,
            "address-groups",
            &agid,
            "remove_addresses",
            json!({"addresses": ["10.10.10.3"]}),
        )
        .await
        .unwrap();
    assert_eq!(
        sorted(&removed["address_group"]["addresses"]),
        ["10.20.30.40/32", "192.168.0.0/24", "2001:db8::/64"]
    );
    let updated = t
        .update(&me, "address-groups", &agid, json!({"description": "new"}))
        .await
        .unwrap();
    assert_eq!(updated["description"], "new");
    assert_err(
        t.update(&me, "address-groups", &agid, json!({"addresses": []}))
            .await,
        400,
        "HTTPBadRequest",
    );
    t.delete(&me, "address-groups", &agid).await.unwrap();
    assert_err(
        t.show(&me, "address-groups", &agid).await,
        404,
        "AddressGroupNotFound",
    );
}

#[tokio::test]
async fn rules_name_visible_groups_only() {
    let t = env().await;
    let me = tenant();
    let ag = id(&t.group(&me, json!(["10.0.0.0/24"])).await.unwrap());
    let rule = t.rule_for(&me, &ag, json!({})).await.unwrap();
    assert_eq!(rule["remote_address_group_id"], json!(ag));
    assert_err(
        t.rule_for(&me, &ag, json!({"remote_ip_prefix": "10.0.0.0/8"}))
            .await,
        400,
        "SecurityGroupMultipleRemoteEntites",
    );
    assert_err(
        t.rule_for(&me, "0b3b8a1c-1d2e-4f50-9a0b-0c1d2e3f4a5b", json!({}))
            .await,
        404,
        "AddressGroupNotFound",
    );
    assert_err(
        t.rule_for(&other_tenant(), &ag, json!({})).await,
        404,
        "AddressGroupNotFound",
    );

    // In use while a rule names it; free once the rule (or its whole group) is gone.
    assert_err(
        t.delete(&me, "address-groups", &ag).await,
        409,
        "AddressGroupInUse",
    );
    t.delete(&me, "security-group-rules", &id(&rule))
        .await
        .unwrap();
    let rule = t
        .rule_for(
            &me,
            &ag,
            json!({"port_range_min": 22, "port_range_max": 22}),
        )
        .await
        .unwrap();
    assert_err(
        t.delete(&me, "address-groups", &ag).await,
        409,
        "AddressGroupInUse",
    );
    t.delete(
        &me,
        "security-groups",
        rule["security_group_id"].as_str().unwrap(),
    )
    .await
    .unwrap();
    t.delete(&me, "address-groups", &ag).await.unwrap();
}

#[tokio::test]
async fn sharing_through_rbac() {
    let t = env().await;
    let (me, bob) = (tenant(), other_tenant());
    let ag = id(&t.group(&admin(), json!(["10.1.0.0/16"])).await.unwrap());
    assert_err(
        t.show(&me, "address-groups", &ag).await,
        404,
        "AddressGroupNotFound",
    );
    let policy = t.share_group(&ag, "project-a").await;
    assert_eq!(policy["object_type"], "address_group");
    t.show(&me, "address-groups", &ag).await.unwrap();
    assert_err(
        t.show(&bob, "address-groups", &ag).await,
        404,
        "AddressGroupNotFound",
    );
    // Shared is not owned: the object stays out of reach for changes, like in Neutron.
    assert_err(
        t.update(&me, "address-groups", &ag, json!({"name": "mine"}))
            .await,
        404,
        "AddressGroupNotFound",
    );
    let e = t
        .create(&me, "rbac-policies", json!({"object_type": "address_group", "object_id": ag,
                                              "action": "access_as_shared", "target_tenant": "project-b"}))
        .await;
    assert_err(e, 400, "InvalidInput");
    let e = t
        .create(&admin(), "rbac-policies", json!({"object_type": "address_group", "object_id": ag,
                                                   "action": "access_as_external", "target_tenant": "*"}))
        .await;
    assert_err(e, 400, "InvalidInput");

    // A rule of the project the group is shared with keeps the policy in place...
    let rule = t.rule_for(&me, &ag, json!({})).await.unwrap();
    let policy = id(&policy);
    assert_err(
        t.delete(&admin(), "rbac-policies", &policy).await,
        409,
        "RbacPolicyInUse",
    );
    assert_err(
        t.update(
            &admin(),
            "rbac-policies",
            &policy,
            json!({"target_tenant": "project-b"}),
        )
        .await,
        409,
        "RbacPolicyInUse",
    );
    // ...unless another policy grants the same access.
    let wildcard = id(&t.share_group(&ag, "*").await);
    t.delete(&admin(), "rbac-policies", &policy).await.unwrap();
    assert_err(
        t.delete(&admin(), "rbac-policies", &wildcard).await,
        409,
        "RbacPolicyInUse",
    );
    t.delete(&me, "security-group-rules", &id(&rule))
        .await
        .unwrap();
    t.delete(&admin(), "rbac-policies", &wildcard)
        .await
        .unwrap();
    assert_err(
        t.show(&me, "address-groups", &ag).await,
        404,
        "AddressGroupNotFound",
    );

    // Deleting the group takes its policies along.
    t.share_group(&ag, "project-b").await;
    t.delete(&admin(), "address-groups", &ag).await.unwrap();
    let left = t
        .app
        .list(&admin(), coll("rbac-policies"), &[])
        .await
        .unwrap();
    assert!(left.items.iter().all(|p| p["object_id"] != json!(ag)));
}
