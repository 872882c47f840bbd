//! QoS through the application API: policies (sharing, the project default, deletion in use),
//! nested rule collections with upstream's validation, the rule aliases, rule types and
//! `qos_policy_id` on networks and ports.

use crate::common::*;
use serde_json::{json, Value};

const BW: &str = "bandwidth_limit_rules";
const DSCP: &str = "dscp_marking_rules";
const MIN_BW: &str = "minimum_bandwidth_rules";
const MIN_PPS: &str = "minimum_packet_rate_rules";

fn rules(child: &str) -> &'static Collection {
    Collection::child("qos/policies", child).expect("nested rule collection")
}

impl Env {
    async fn policy(&self, ctx: &Context, body: Value) -> Value {
        self.ok(ctx, "qos/policies", body).await
    }

    async fn rule(
        &self,
        ctx: &Context,
        policy: &str,
        child: &str,
        body: Value,
    ) -> Result<Value, ApiError> {
        let mut out = self
            .app
            .create_in(ctx, rules(child), Some(policy), vec![doc(body)])
            .await?;
        Ok(Value::Object(out.pop().unwrap()))
    }

    async fn rule_list(
        &self,
        ctx: &Context,
        policy: &str,
        child: &str,
    ) -> Result<Vec<Value>, ApiError> {
        let page = self
            .app
            .list_in(ctx, rules(child), Some(policy), &[])
            .await?;
        Ok(page.items.into_iter().map(Value::Object).collect())
    }
}

#[tokio::test]
async fn bandwidth_limit_rules_validate_like_upstream() {
    let t = env().await;
    let a = admin();
    let p = id(&t.policy(&a, json!({"name": "gold"})).await);
    let r = t
        .rule(&a, &p, BW, json!({"max_kbps": 10000}))
        .await
        .unwrap();
    assert_eq!(r["direction"], "egress");
    assert_eq!(r["max_burst_kbps"], 0);
    assert!(r.get("project_id").is_none());
    // One rule per direction.
    let e = assert_err(
        t.rule(&a, &p, BW, json!({"max_kbps": 5, "direction": "egress"}))
            .await,
        409,
        "NeutronDbObjectDuplicateEntry",
    );
    assert!(e.message.contains(&p));
    t.rule(
        &a,
        &p,
        BW,
        json!({"max_kbps": 20000, "direction": "ingress"}),
    )
    .await
    .unwrap();
    for bad in [
        json!({}),
        json!({"max_kbps": -1}),
        json!({"max_kbps": 2_147_483_648_i64}),
        json!({"max_kbps": "many"}),
        json!({"max_kbps": 1, "max_burst_kbps": -5}),
        json!({"max_kbps": 1, "direction": "sideways"}),
        json!({"max_kbps": 1, "qos_policy_id": p}),
    ] {
        assert_err(t.rule(&a, &p, BW, bad).await, 400, "HTTPBadRequest");
    }
    // Changing the direction onto an existing one conflicts too.
    let coll = rules(BW);
    let e = t
        .app
        .update_in(
            &a,
            coll,
            Some(&p),
            &id(&r),
            doc(json!({"direction": "ingress"})),
            None,
        )
        .await
        .unwrap_err();
    assert_eq!(e.status, 409);
    let changed = t
        .app
        .update_in(
            &a,
            coll,
            Some(&p),
            &id(&r),
            doc(json!({"max_kbps": 20000})),
            None,
        )
        .await
        .unwrap();
    assert_eq!(changed["max_kbps"], 20000);
    // The policy lists its rules, with their type.
    let shown = t.show(&a, "qos/policies", &p).await.unwrap();
    let listed = shown["rules"].as_array().unwrap();
    assert_eq!(listed.len(), 2);
    assert!(listed.iter().all(|r| r["type"] == "bandwidth_limit"));
    assert_eq!(t.rule_list(&a, &p, BW).await.unwrap().len(), 2);
    // A rule is found only under its own policy.
    let other = id(&t.policy(&a, json!({"name": "other"})).await);
    let e = t
        .app
        .show_in(&a, coll, Some(&other), &id(&r), &[])
        .await
        .unwrap_err();
    assert_eq!((e.status, e.kind.as_str()), (404, "QosRuleNotFound"));
    // Under a missing policy: the policy's 404.
    let missing = "00000000-0000-0000-0000-000000000000";
    let e = t
        .rule(&a, missing, BW, json!({"max_kbps": 1}))
        .await
        .unwrap_err();
    assert_eq!((e.status, e.kind.as_str()), (404, "QosPolicyNotFound"));
    let e = t.rule_list(&a, missing, BW).await.unwrap_err();
    assert_eq!(e.status, 404);
    // Deleted through the policy, then gone.
    t.app
        .delete_in(&a, coll, Some(&p), &id(&r), None)
        .await
        .unwrap();
    assert_eq!(t.rule_list(&a, &p, BW).await.unwrap().len(), 1);
}

#[tokio::test]
async fn dscp_and_minimum_rules_validate_like_upstream() {
    let t = env().await;
    let a = admin();
    let p = id(&t.policy(&a, json!({"name": "marks"})).await);
    for bad in [1, 7, 42, 63, 64, -1] {
        let e = t
            .rule(&a, &p, DSCP, json!({"dscp_mark": bad}))
            .await
            .unwrap_err();
        assert_eq!(e.status, 400, "{bad}");
    }
    let r = t
        .rule(&a, &p, DSCP, json!({"dscp_mark": 46}))
        .await
        .unwrap();
    assert_eq!(r["dscp_mark"], 46);
    assert_err(
        t.rule(&a, &p, DSCP, json!({"dscp_mark": 8})).await,
        409,
        "NeutronDbObjectDuplicateEntry",
    );
    let e = t
        .app
        .update_in(
            &a,
            rules(DSCP),
            Some(&p),
            &id(&r),
            doc(json!({"dscp_mark": 9})),
            None,
        )
        .await
        .unwrap_err();
    assert_eq!(e.status, 400);
    // Minimum bandwidth: both directions (qos-bw-minimum-ingress).
    t.rule(&a, &p, MIN_BW, json!({"min_kbps": 1000}))
        .await
        .unwrap();
    t.rule(
        &a,
        &p,
        MIN_BW,
        json!({"min_kbps": 1000, "direction": "ingress"}),
    )
    .await
    .unwrap();
    assert_err(
        t.rule(&a, &p, MIN_BW, json!({})).await,
        400,
        "HTTPBadRequest",
    );
    // Minimum packet rate: `any` conflicts with a directional rule.
    t.rule(
        &a,
        &p,
        MIN_PPS,
        json!({"min_kpps": 1000, "direction": "ingress"}),
    )
    .await
    .unwrap();
    assert_err(
        t.rule(&a, &p, MIN_PPS, json!({"min_kpps": 10, "direction": "any"}))
            .await,
        409,
        "QoSRulesConflict",
    );
}

#[tokio::test]
async fn aliases_reach_rules_by_id_alone() {
    let t = env().await;
    let a = admin();
    let p = id(&t.policy(&a, json!({"name": "alias"})).await);
    let r = t.rule(&a, &p, BW, json!({"max_kbps": 100})).await.unwrap();
    let alias = Collection::by_path("qos/alias_bandwidth_limit_rules").unwrap();
    assert_eq!(alias.key, "alias_bandwidth_limit_rule");
    let shown = t.app.show(&a, alias, &id(&r), &[]).await.unwrap();
    assert_eq!(shown["max_kbps"], 100);
    let changed = t
        .app
        .update(&a, alias, &id(&r), doc(json!({"max_kbps": 200})), None)
        .await
        .unwrap();
    assert_eq!(changed["max_kbps"], 200);
    t.app.delete(&a, alias, &id(&r), None).await.unwrap();
    let e = t.app.show(&a, alias, &id(&r), &[]).await.unwrap_err();
    assert_eq!((e.status, e.kind.as_str()), (404, "QosRuleNotFound"));
}

#[tokio::test]
async fn policies_are_admin_made_shared_through_rbac_and_default_once() {
    let t = env().await;
    let a = admin();
    let me = tenant();
    // Creating a policy is admin only by default.
    assert_err(
        t.create(&me, "qos/policies", json!({"name": "x"})).await,
        403,
        "PolicyNotAuthorized",
    );
    // So is creating a rule: refused before the (here missing) policy is looked up.
    for child in ["bandwidth_limit_rules", "dscp_marking_rules"] {
        let body = json!({"max_kbps": 1, "dscp_mark": 8});
        let mut b = doc(body);
        if child == "dscp_marking_rules" {
            b.remove("max_kbps");
        } else {
            b.remove("dscp_mark");
        }
        let r = t
            .app
            .create_in(&me, rules(child), Some("policy"), vec![b])
            .await;
        assert_err(r, 403, "PolicyNotAuthorized");
    }
    let p = t
        .policy(&a, json!({"name": "mine", "project_id": me.project_id}))
        .await;
    assert_eq!(
        (p["shared"].clone(), p["is_default"].clone()),
        (json!(false), json!(false))
    );
    assert_eq!(p["rules"], json!([]));
    assert_eq!(p["revision_number"], 1);
    // The owner reads it, another project does not until it is shared.
    t.show(&me, "qos/policies", &id(&p)).await.unwrap();
    let them = other_tenant();
    assert_err(
        t.show(&them, "qos/policies", &id(&p)).await,
        404,
        "QosPolicyNotFound",
    );
    t.ok(
        &a,
        "rbac-policies",
        json!({"object_type": "qos_policy", "object_id": id(&p),
               "action": "access_as_shared", "target_tenant": them.project_id}),
    )
    .await;
    let seen = t.show(&them, "qos/policies", &id(&p)).await.unwrap();
    assert_eq!(seen["shared"], true);
    // shared=True is a wildcard policy.
    let open = t.policy(&a, json!({"name": "open", "shared": true})).await;
    assert_eq!(open["shared"], true);
    let unshared = t
        .update(&a, "qos/policies", &id(&open), json!({"shared": false}))
        .await
        .unwrap();
    assert_eq!(unshared["shared"], false);
    // One default per project.
    let d = t
        .policy(
            &a,
            json!({"name": "d", "is_default": true, "project_id": me.project_id}),
        )
        .await;
    assert_err(
        t.create(
            &a,
            "qos/policies",
            json!({"name": "d2", "is_default": true, "project_id": me.project_id}),
        )
        .await,
        409,
        "QoSPolicyDefaultAlreadyExists",
    );
    // A project's new network gets its default policy; explicit null means none.
    let net = t.ok(&me, "networks", json!({"name": "n"})).await;
    assert_eq!(net["qos_policy_id"], id(&d));
    let bare = t
        .ok(&me, "networks", json!({"name": "m", "qos_policy_id": null}))
        .await;
    assert_eq!(bare["qos_policy_id"], Value::Null);
    t.update(&a, "qos/policies", &id(&d), json!({"is_default": false}))
        .await
        .unwrap();
    t.policy(
        &a,
        json!({"name": "d3", "is_default": true, "project_id": me.project_id}),
    )
    .await;
}

#[tokio::test]
async fn networks_and_ports_name_visible_policies_and_hold_them() {
    let t = env().await;
    let a = admin();
    let me = tenant();
    let p = id(&t
        .policy(&a, json!({"name": "p", "project_id": me.project_id}))
        .await);
    let foreign = id(&t.policy(&a, json!({"name": "admin's"})).await);
    let missing = "00000000-0000-0000-0000-000000000000";
    for bad in [missing, foreign.as_str()] {
        assert_err(
            t.create(&me, "networks", json!({"name": "n", "qos_policy_id": bad}))
                .await,
            404,
            "QosPolicyNotFound",
        );
    }
    assert_err(
        t.create(
            &me,
            "networks",
            json!({"name": "n", "qos_policy_id": "nope"}),
        )
        .await,
        400,
        "HTTPBadRequest",
    );
    let net = t
        .ok(&me, "networks", json!({"name": "n", "qos_policy_id": p}))
        .await;
    assert_eq!(net["qos_policy_id"], p);
    // In use by the network.
    let e = assert_err(
        t.delete(&a, "qos/policies", &p).await,
        409,
        "QosPolicyInUse",
    );
    assert!(e.message.contains(&id(&net)));
    t.update(&me, "networks", &id(&net), json!({"qos_policy_id": null}))
        .await
        .unwrap();
    // A port holds it too; moving the port to another policy frees the first.
    let port = t
        .ok(
            &me,
            "ports",
            json!({"network_id": id(&net), "qos_policy_id": p}),
        )
        .await;
    assert_eq!(port["qos_policy_id"], p);
    assert_err(
        t.delete(&a, "qos/policies", &p).await,
        409,
        "QosPolicyInUse",
    );
    let q = id(&t
        .policy(&a, json!({"name": "q", "project_id": me.project_id}))
        .await);
    let moved = t
        .update(&me, "ports", &id(&port), json!({"qos_policy_id": q}))
        .await
        .unwrap();
    assert_eq!(moved["qos_policy_id"], q);
    let r = t.rule(&a, &p, BW, json!({"max_kbps": 1})).await.unwrap();
    t.delete(&a, "qos/policies", &p).await.unwrap();
    // Its rules went with it.
    let alias = Collection::by_path("qos/alias_bandwidth_limit_rules").unwrap();
    assert_eq!(
        t.app
            .show(&a, alias, &id(&r), &[])
            .await
            .unwrap_err()
            .status,
        404
    );
    // A deleted port or network no longer holds its policy, and leaves no claim behind.
    let net2 = t
        .ok(&me, "networks", json!({"name": "n2", "qos_policy_id": q}))
        .await;
    t.delete(&me, "networks", &id(&net2)).await.unwrap();
    t.delete(&me, "ports", &id(&port)).await.unwrap();
    let problems = neutrino_app::consistency::check_store(&t.store)
        .await
        .unwrap();
    assert_eq!(problems, Vec::<String>::new());
    t.delete(&a, "qos/policies", &q).await.unwrap();
    // Host agents mirror policies and the enforced rules.
    let snap = t.app.feed_snapshot(&a).await.unwrap();
    assert!(snap["resources"].get("policy").is_some());
    assert!(snap["resources"].get("bandwidth_limit_rule").is_some());
}

#[tokio::test]
async fn sharing_cannot_be_withdrawn_from_a_project_using_the_policy() {
    let t = env().await;
    let a = admin();
    let me = tenant();
    let open = id(&t.policy(&a, json!({"name": "open", "shared": true})).await);
    let net = t
        .ok(&me, "networks", json!({"name": "n", "qos_policy_id": open}))
        .await;
    assert_err(
        t.update(&a, "qos/policies", &open, json!({"shared": false}))
            .await,
        409,
        "QosPolicyInUse",
    );
    let grants = t
        .list(&a, "rbac-policies", &[("object_id", open.as_str())])
        .await;
    assert_eq!(grants.len(), 1);
    assert_err(
        t.delete(&a, "rbac-policies", &id(&grants[0])).await,
        409,
        "RbacPolicyInUse",
    );
    // Once the network lets go, sharing can end.
    t.update(&me, "networks", &id(&net), json!({"qos_policy_id": null}))
        .await
        .unwrap();
    let unshared = t
        .update(&a, "qos/policies", &open, json!({"shared": false}))
        .await
        .unwrap();
    assert_eq!(unshared["shared"], false);
}

#[tokio::test]
async fn rule_types_and_details() {
    let t = env().await;
    let types = t.app.qos_rule_types(&tenant());
    assert_eq!(types["rule_types"][0]["type"], "bandwidth_limit");
    let details = t.app.qos_rule_type(&admin(), "dscp_marking").unwrap();
    assert_eq!(details["rule_type"]["drivers"][0]["name"], "neutrino");
    assert_eq!(
        t.app.qos_rule_type(&admin(), "nope").unwrap_err().status,
        404
    );
    assert_eq!(
        t.app
            .qos_rule_type(&tenant(), "bandwidth_limit")
            .unwrap_err()
            .status,
        403
    );
}

#[tokio::test]
async fn a_policy_marker_the_caller_cannot_see_pages_from_the_start() {
    // As upstream's object pager: the marker is looked up as the caller; one it cannot see is
    // ignored (other collections answer 404).
    let t = env().await;
    let theirs = t
        .ok(
            &admin(),
            "qos/policies",
            json!({"name": "admins", "description": "pg"}),
        )
        .await;
    let mine = t
        .ok(
            &admin(),
            "qos/policies",
            json!({"name": "mine", "description": "pg", "project_id": "project-a"}),
        )
        .await;
    let pairs = query(&[
        ("limit", "1"),
        ("description", "pg"),
        ("marker", theirs["id"].as_str().unwrap()),
    ]);
    let page = t
        .app
        .list(&tenant(), coll("qos/policies"), &pairs)
        .await
        .unwrap();
    let ids: Vec<&str> = page
        .items
        .iter()
        .map(|d| d["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [mine["id"].as_str().unwrap()]);
    let missing = query(&[
        ("limit", "1"),
        ("marker", "00000000-0000-4000-8000-000000000000"),
    ]);
    assert!(t
        .app
        .list(&tenant(), coll("networks"), &missing)
        .await
        .is_err());
}

#[tokio::test]
async fn an_rbac_target_update_withdraws_as_upstream_does_per_object_type() {
    let t = env().await;
    // A network shared to everyone as external, used by B's router: narrowing the wildcard
    // to B keeps B's access (upstream's network RBAC counts the updated policy).
    let ext = t
        .ok(
            &admin(),
            "networks",
            json!({"name": "e", "router:external": true}),
        )
        .await;
    t.ok(
        &admin(),
        "subnets",
        json!({"network_id": id(&ext), "ip_version": 4, "cidr": "172.30.0.0/24"}),
    )
    .await;
    t.ok(
        &other_tenant(),
        "routers",
        json!({"external_gateway_info": {"network_id": id(&ext)}}),
    )
    .await;
    let wildcard = |object: &Value, action: &str| {
        let object = id(object);
        let action = action.to_string();
        move |p: &Value| p["object_id"] == json!(object) && p["action"] == json!(action)
    };
    let policies = t.list(&admin(), "rbac-policies", &[]).await;
    let ext_policy = policies
        .iter()
        .find(|p| wildcard(&ext, "access_as_external")(p))
        .unwrap();
    t.update(
        &admin(),
        "rbac-policies",
        &id(ext_policy),
        json!({"target_tenant": "project-b"}),
    )
    .await
    .unwrap();
    // A QoS policy shared to everyone, used by B's network: the same update is refused
    // (upstream's object RBAC withdraws the old target as a delete would).
    let policy = t
        .ok(
            &admin(),
            "qos/policies",
            json!({"name": "q", "shared": true, "project_id": "project-a"}),
        )
        .await;
    t.ok(
        &other_tenant(),
        "networks",
        json!({"qos_policy_id": id(&policy)}),
    )
    .await;
    let policies = t.list(&admin(), "rbac-policies", &[]).await;
    let qos_policy = policies
        .iter()
        .find(|p| wildcard(&policy, "access_as_shared")(p))
        .unwrap();
    let e = t
        .update(
            &admin(),
            "rbac-policies",
            &id(qos_policy),
            json!({"target_tenant": "project-b"}),
        )
        .await;
    assert_err(e, 409, "RbacPolicyInUse");
}

#[tokio::test]
async fn a_project_cannot_detach_a_policy_it_cannot_see() {
    let t = env().await;
    let policy = t.ok(&admin(), "qos/policies", json!({"name": "adm"})).await;
    let net = t.ok(&tenant(), "networks", json!({})).await;
    t.update(
        &admin(),
        "networks",
        &id(&net),
        json!({"qos_policy_id": id(&policy)}),
    )
    .await
    .unwrap();
    let e = t
        .update(
            &tenant(),
            "networks",
            &id(&net),
            json!({"qos_policy_id": null}),
        )
        .await;
    assert_err(e, 403, "PolicyRemoveAuthorizationError");
    // Shared with everyone: the project may take it off.
    t.update(
        &admin(),
        "qos/policies",
        &id(&policy),
        json!({"shared": true}),
    )
    .await
    .unwrap();
    let out = t
        .update(
            &tenant(),
            "networks",
            &id(&net),
            json!({"qos_policy_id": null}),
        )
        .await
        .unwrap();
    assert_eq!(out["qos_policy_id"], Value::Null);
}
