//! Service function chaining through the public application API: every validation rule and
//! conflict of networking-sfc, asserted by status code and NeutronError type.

use std::ops::Deref;

use crate::common::*;
use serde_json::{json, Value};

/// The common test environment plus a network per project (admin, a, b) for fresh ports.
struct SfcEnv {
    base: Env,
    nets: std::collections::HashMap<String, String>,
}

impl Deref for SfcEnv {
    type Target = Env;
    fn deref(&self) -> &Env {
        &self.base
    }
}

async fn sfc_env() -> SfcEnv {
    let mut t = SfcEnv {
        base: env().await,
        nets: Default::default(),
    };
    for (ctx, cidr) in [
        (admin(), "10.0.0.0/16"),
        (tenant(), "10.1.0.0/16"),
        (other_tenant(), "10.2.0.0/16"),
    ] {
        let (net, _) = t.net(&ctx, json!({"name": "n"}), cidr).await;
        t.nets.insert(ctx.project_id.clone(), net);
    }
    t
}

impl SfcEnv {
    /// A port of the caller's project on device `device`.
    async fn port(&self, ctx: &Context, device: &str) -> String {
        let net = &self.nets[&ctx.project_id];
        id(&self
            .ok(
                ctx,
                "ports",
                json!({"network_id": net, "device_id": device}),
            )
            .await)
    }

    /// A port pair on two fresh ports of one new device.
    async fn pp(&self, ctx: &Context, params: Value) -> String {
        let device = uuid::Uuid::new_v4().to_string();
        let (i, e) = (self.port(ctx, &device).await, self.port(ctx, &device).await);
        id(&self
            .ok(
                ctx,
                "port_pairs",
                json!({"ingress": i, "egress": e, "service_function_parameters": params}),
            )
            .await)
    }

    async fn ppg(&self, ctx: &Context, pps: &[&str]) -> String {
        id(&self
            .ok(ctx, "port_pair_groups", json!({"port_pairs": pps}))
            .await)
    }

    /// A group holding one fresh pair of correlation `corr`.
    async fn hop(&self, ctx: &Context, corr: Value) -> String {
        let pp = self.pp(ctx, json!({"correlation": corr})).await;
        self.ppg(ctx, &[&pp]).await
    }

    /// A flow classifier with a fresh logical source port and the given match.
    async fn fc(&self, ctx: &Context, mut body: Value) -> String {
        body["logical_source_port"] = json!(self.port(ctx, "src").await);
        id(&self.ok(ctx, "flow_classifiers", body).await)
    }

    async fn chain(&self, ctx: &Context, body: Value) -> Result<Value, ApiError> {
        self.create(ctx, "port_chains", body).await
    }

    /// A one-hop chain of correlation `corr` whose pair speaks `pp_corr`, classifying
    /// 10.<net>.0.0/16 (distinct per `net`).
    async fn linked_chain(&self, ctx: &Context, corr: &str, pp_corr: Value, net: u8) -> String {
        let g = self.hop(ctx, pp_corr).await;
        let fc = self
            .fc(ctx, json!({"source_ip_prefix": format!("10.{net}.0.0/16")}))
            .await;
        id(&self
            .chain(
                ctx,
                json!({"port_pair_groups": [g], "flow_classifiers": [fc],
                       "chain_parameters": {"correlation": corr}}),
            )
            .await
            .unwrap())
    }
}

#[tokio::test]
async fn flow_classifier_rules() {
    let t = &sfc_env().await;
    let a = tenant();
    let lsp = t.port(&a, "vm").await;
    let fc = t
        .ok(
            &a,
            "flow_classifiers",
            json!({"name": null, "protocol": "TCP", "ethertype": "ipv4",
                   "destination_port_range_min": "80", "destination_port_range_max": 80,
                   "source_ip_prefix": "10.1.0.5/32", "logical_source_port": lsp}),
        )
        .await;
    let want = json!({"name": "", "description": "", "ethertype": "IPv4", "protocol": "tcp",
        "source_port_range_min": null, "source_port_range_max": null,
        "destination_port_range_min": 80, "destination_port_range_max": 80,
        "source_ip_prefix": "10.1.0.5/32", "destination_ip_prefix": null,
        "logical_source_port": lsp, "logical_destination_port": null, "l7_parameters": {},
        "project_id": "project-a", "tenant_id": "project-a"});
    for (k, v) in want.as_object().unwrap() {
        assert_eq!(&fc[k], v, "{k}");
    }
    assert!(fc.get("created_at").is_none() && fc.get("revision_number").is_none());
    assert_eq!(t.show(&a, "flow_classifiers", &id(&fc)).await.unwrap(), fc);

    let bad = |body: Value| async move { t.create(&tenant(), "flow_classifiers", body).await };
    assert_err(
        bad(json!({"protocol": "6"})).await,
        400,
        "FlowClassifierInvalidProtocol",
    );
    assert_err(
        bad(json!({"ethertype": "arp"})).await,
        400,
        "FlowClassifierInvalidEthertype",
    );
    assert_err(
        bad(json!({"protocol": "udp", "source_port_range_max": 65536})).await,
        400,
        "FlowClassifierInvalidPortValue",
    );
    assert_err(
        bad(json!({"protocol": "udp", "source_port_range_max": "x"})).await,
        400,
        "FlowClassifierInvalidPortValue",
    );
    assert_err(
        bad(json!({"protocol": "tcp", "destination_port_range_min": 9, "destination_port_range_max": 8}))
            .await,
        400,
        "FlowClassifierInvalidPortRange",
    );
    assert_err(
        bad(json!({"protocol": "icmp", "source_port_range_min": 1})).await,
        400,
        "FlowClassifierProtocolRequiredWithPorts",
    );
    assert_err(
        bad(json!({"ethertype": "IPv6", "destination_ip_prefix": "10.0.0.0/8"})).await,
        400,
        "FlowClassifierIpPrefixFormatConflictWithEthertype",
    );
    assert_err(
        bad(json!({"source_ip_prefix": "10.0.0.1"})).await,
        400,
        "HTTPBadRequest",
    );
    assert_err(
        bad(json!({"l7_parameters": {"url": "/"}})).await,
        400,
        "FlowClassifierInvalidL7Parameter",
    );
    assert_err(
        bad(json!({"logical_source_port": "9f1c1b47-0000-4000-8000-000000000000"})).await,
        404,
        "FlowClassifierPortNotFound",
    );
    assert_err(
        bad(json!({"logical_source_port": "x"})).await,
        400,
        "HTTPBadRequest",
    );
    // Another project's port is not found either.
    let foreign = t.port(&other_tenant(), "vm").await;
    assert_err(
        bad(json!({"logical_destination_port": foreign})).await,
        404,
        "FlowClassifierPortNotFound",
    );

    // Full overlap with a visible classifier; differing logical source ports are fine.
    assert_err(
        bad(json!({"protocol": "tcp", "source_ip_prefix": "10.1.0.0/24", "logical_source_port": lsp}))
            .await,
        400,
        "FlowClassifierInConflict",
    );
    let lsp2 = t.port(&a, "vm").await;
    t.ok(
        &a,
        "flow_classifiers",
        json!({"protocol": "tcp", "source_ip_prefix": "10.1.0.0/24", "logical_source_port": lsp2}),
    )
    .await;
    // Scoping: project b does not see project a's classifiers.
    let b_port = t.port(&other_tenant(), "vm").await;
    t.ok(
        &other_tenant(),
        "flow_classifiers",
        json!({"protocol": "tcp", "logical_source_port": b_port}),
    )
    .await;
    // ... but an admin does.
    let admin_port = t.port(&admin(), "vm").await;
    assert_err(
        t.create(
            &admin(),
            "flow_classifiers",
            json!({"protocol": "tcp", "logical_source_port": lsp2}),
        )
        .await,
        400,
        "FlowClassifierInConflict",
    );
    t.ok(
        &admin(),
        "flow_classifiers",
        json!({"protocol": "tcp", "logical_source_port": admin_port}),
    )
    .await;

    // Update: name and description only.
    let up = t
        .update(
            &a,
            "flow_classifiers",
            &id(&fc),
            json!({"name": "web", "description": null}),
        )
        .await
        .unwrap();
    assert_eq!(
        (up["name"].as_str(), up["description"].as_str()),
        (Some("web"), Some(""))
    );
    assert_err(
        t.update(&a, "flow_classifiers", &id(&fc), json!({"protocol": "udp"}))
            .await,
        400,
        "HTTPBadRequest",
    );
    // Policy: other projects get 404, the port cannot go while used.
    assert_err(
        t.show(&other_tenant(), "flow_classifiers", &id(&fc)).await,
        404,
        "FlowClassifierNotFound",
    );
    assert_err(
        t.delete(&other_tenant(), "flow_classifiers", &id(&fc))
            .await,
        404,
        "FlowClassifierNotFound",
    );
    assert_err(t.delete(&a, "ports", &lsp).await, 409, "InUse");
    // Not for another project.
    assert_err(
        t.create(&a, "flow_classifiers", json!({"project_id": "project-b"}))
            .await,
        400,
        "HTTPBadRequest",
    );
    t.delete(&a, "flow_classifiers", &id(&fc)).await.unwrap();
    t.delete(&a, "ports", &lsp).await.unwrap();
    assert_err(
        t.show(&a, "flow_classifiers", &id(&fc)).await,
        404,
        "FlowClassifierNotFound",
    );
}

#[tokio::test]
async fn port_pair_rules() {
    let t = sfc_env().await;
    let a = tenant();
    let (i, e) = (t.port(&a, "vm1").await, t.port(&a, "vm1").await);
    let pp = t
        .ok(
            &a,
            "port_pairs",
            json!({"name": "pp", "ingress": i, "egress": e}),
        )
        .await;
    assert_eq!(
        pp["service_function_parameters"],
        json!({"correlation": null, "weight": 1})
    );
    // The same combination again.
    assert_err(
        t.create(&a, "port_pairs", json!({"ingress": i, "egress": e}))
            .await,
        400,
        "PortPairIngressEgressInUse",
    );
    // One port for both directions; partial parameters get their defaults.
    let single = t
        .ok(
            &a,
            "port_pairs",
            json!({"ingress": i, "egress": i,
                   "service_function_parameters": {"correlation": "mpls", "weight": "4"}}),
        )
        .await;
    assert_eq!(
        single["service_function_parameters"],
        json!({"correlation": "mpls", "weight": 4})
    );
    let p = t
        .ok(
            &a,
            "port_pairs",
            json!({"ingress": e, "egress": e, "service_function_parameters": {"correlation": "nsh"}}),
        )
        .await;
    assert_eq!(p["service_function_parameters"]["weight"], 1);
    for (params, kind) in [
        (json!({"correlation": "vxlan"}), "HTTPBadRequest"),
        (json!({"weight": -1}), "HTTPBadRequest"),
        (json!({"weight": "heavy"}), "InvalidInput"),
        (json!({"color": 1}), "HTTPBadRequest"),
        (json!("mpls"), "HTTPBadRequest"),
    ] {
        let (x, y) = (t.port(&a, "vm9").await, t.port(&a, "vm9").await);
        assert_err(
            t.create(
                &a,
                "port_pairs",
                json!({"ingress": x, "egress": y, "service_function_parameters": params}),
            )
            .await,
            400,
            kind,
        );
    }
    let missing = "9f1c1b47-0000-4000-8000-000000000000";
    assert_err(
        t.create(&a, "port_pairs", json!({"ingress": missing, "egress": e}))
            .await,
        404,
        "PortPairPortNotFound",
    );
    assert_err(
        t.create(&a, "port_pairs", json!({"ingress": "nope", "egress": e}))
            .await,
        400,
        "HTTPBadRequest",
    );
    assert_err(
        t.create(&a, "port_pairs", json!({"ingress": i})).await,
        400,
        "HTTPBadRequest",
    );
    let hostless = t.port(&a, "").await;
    assert_err(
        t.create(&a, "port_pairs", json!({"ingress": hostless, "egress": e}))
            .await,
        400,
        "PortPairIngressNoHost",
    );
    assert_err(
        t.create(&a, "port_pairs", json!({"ingress": e, "egress": hostless}))
            .await,
        400,
        "PortPairEgressNoHost",
    );
    let elsewhere = t.port(&a, "vm2").await;
    assert_err(
        t.create(&a, "port_pairs", json!({"ingress": i, "egress": elsewhere}))
            .await,
        400,
        "PortPairIngressEgressDifferentHost",
    );
    let foreign = t.port(&other_tenant(), "vm1").await;
    assert_err(
        t.create(&a, "port_pairs", json!({"ingress": i, "egress": foreign}))
            .await,
        404,
        "PortPairPortNotFound",
    );
    // Updates: name and description only.
    assert_eq!(
        t.update(&a, "port_pairs", &id(&pp), json!({"name": "renamed"}))
            .await
            .unwrap()["name"],
        "renamed"
    );
    for body in [
        json!({"ingress": e}),
        json!({"service_function_parameters": {"weight": 2}}),
    ] {
        assert_err(
            t.update(&a, "port_pairs", &id(&pp), body).await,
            400,
            "HTTPBadRequest",
        );
    }
    // In use by a group; its ports cannot go.
    let g = t.ppg(&a, &[&id(&pp)]).await;
    assert_err(
        t.delete(&a, "port_pairs", &id(&pp)).await,
        409,
        "PortPairInUse",
    );
    assert_err(t.delete(&a, "ports", &i).await, 409, "InUse");
    assert_err(
        t.delete(&other_tenant(), "port_pairs", &id(&pp)).await,
        404,
        "PortPairNotFound",
    );
    t.delete(&a, "port_pair_groups", &g).await.unwrap();
    t.delete(&a, "port_pairs", &id(&pp)).await.unwrap();
    t.delete(&a, "port_pairs", &id(&single)).await.unwrap();
    t.delete(&a, "ports", &i).await.unwrap();
}

#[tokio::test]
async fn port_pair_group_rules() {
    let t = sfc_env().await;
    let a = tenant();
    let pp1 = t.pp(&a, json!(null)).await;
    let pp2 = t.pp(&a, json!(null)).await;
    let g1 = t
        .ok(
            &a,
            "port_pair_groups",
            json!({"port_pairs": [pp1],
                   "port_pair_group_parameters": {"lb_fields": ["ip_src", "ip_dst"]}}),
        )
        .await;
    assert_eq!(g1["group_id"], 1);
    assert_eq!(g1["tap_enabled"], false);
    assert_eq!(
        g1["port_pair_group_parameters"],
        json!({"lb_fields": ["ip_src", "ip_dst"],
               "ppg_n_tuple_mapping": {"ingress_n_tuple": {}, "egress_n_tuple": {}}})
    );
    // Empty groups are fine; ids are global and the lowest free one is reused.
    let empty = t
        .ok(
            &other_tenant(),
            "port_pair_groups",
            json!({"port_pairs": []}),
        )
        .await;
    assert_eq!(empty["group_id"], 2);
    assert_eq!(
        empty["port_pair_group_parameters"]["ppg_n_tuple_mapping"],
        json!({"ingress_n_tuple": {}, "egress_n_tuple": {}})
    );
    let mapped = t
        .ok(
            &a,
            "port_pair_groups",
            json!({"port_pair_group_parameters": {"ppg_n_tuple_mapping":
                   {"ingress_n_tuple": {"source_ip_prefix": "10.0.0.0/24"}}}}),
        )
        .await;
    assert_eq!(mapped["group_id"], 3);
    assert_eq!(
        mapped["port_pair_group_parameters"],
        json!({"lb_fields": [], "ppg_n_tuple_mapping": {"ingress_n_tuple": {"source_ip_prefix": "10.0.0.0/24"}}})
    );
    t.delete(&other_tenant(), "port_pair_groups", &id(&empty))
        .await
        .unwrap();
    let again = t.ok(&a, "port_pair_groups", json!({})).await;
    assert_eq!(
        (again["group_id"].clone(), again["port_pairs"].clone()),
        (json!(2), json!([]))
    );

    // A pair in one group only.
    assert_err(
        t.create(&a, "port_pair_groups", json!({"port_pairs": [pp1]}))
            .await,
        409,
        "PortPairInUse",
    );
    assert_err(
        t.update(
            &a,
            "port_pair_groups",
            &id(&again),
            json!({"port_pairs": [pp1]}),
        )
        .await,
        409,
        "PortPairInUse",
    );
    let missing = "9f1c1b47-0000-4000-8000-000000000000";
    assert_err(
        t.create(&a, "port_pair_groups", json!({"port_pairs": [missing]}))
            .await,
        404,
        "PortPairNotFound",
    );
    assert_err(
        t.create(&a, "port_pair_groups", json!({"port_pairs": [pp2, pp2]}))
            .await,
        400,
        "HTTPBadRequest",
    );
    let b_pp = t.pp(&other_tenant(), json!(null)).await;
    assert_err(
        t.create(&a, "port_pair_groups", json!({"port_pairs": [b_pp]}))
            .await,
        404,
        "PortPairNotFound",
    );
    // One correlation per group.
    let mpls = t.pp(&a, json!({"correlation": "mpls"})).await;
    assert_err(
        t.create(&a, "port_pair_groups", json!({"port_pairs": [pp2, mpls]}))
            .await,
        400,
        "InconsistentCorrelations",
    );
    // Tap groups hold one pair.
    assert_err(
        t.create(
            &a,
            "port_pair_groups",
            json!({"port_pairs": [pp2, t.pp(&a, json!(null)).await], "tap_enabled": true}),
        )
        .await,
        400,
        "MultiplePortPairsInTapPPGNotSupported",
    );
    let tap = t
        .ok(
            &a,
            "port_pair_groups",
            json!({"port_pairs": [pp2], "tap_enabled": "True"}),
        )
        .await;
    assert_eq!(tap["tap_enabled"], true);
    assert_err(
        t.update(
            &a,
            "port_pair_groups",
            &id(&tap),
            json!({"port_pairs": [pp2, t.pp(&a, json!(null)).await]}),
        )
        .await,
        400,
        "MultiplePortPairsInTapPPGNotSupported",
    );
    // Parameters.
    for (params, kind) in [
        (json!({"lb_fields": ["vlan"]}), "HTTPBadRequest"),
        (json!({"lb_fields": "ip_src"}), "HTTPBadRequest"),
        (json!({"hash": 1}), "HTTPBadRequest"),
        (
            json!({"ppg_n_tuple_mapping": {"egress_n_tuple": {"protocol": "tcp"}}}),
            "PPGParametersInvalidNTupleMappingParameter",
        ),
    ] {
        assert_err(
            t.create(
                &a,
                "port_pair_groups",
                json!({"port_pair_group_parameters": params}),
            )
            .await,
            400,
            kind,
        );
    }
    // Updates: members (the scale-out path), not parameters or tap.
    let up = t
        .update(
            &a,
            "port_pair_groups",
            &id(&g1),
            json!({"port_pairs": [&mpls, &pp1]}),
        )
        .await;
    assert_err(up, 400, "InconsistentCorrelations");
    let pp3 = t.pp(&a, json!(null)).await;
    let up = t
        .update(
            &a,
            "port_pair_groups",
            &id(&g1),
            json!({"port_pairs": [pp1, pp3], "name": "g"}),
        )
        .await
        .unwrap();
    assert_eq!(up["port_pairs"], json!([pp1, pp3]));
    for body in [
        json!({"tap_enabled": true}),
        json!({"port_pair_group_parameters": {}}),
        json!({"group_id": 9}),
    ] {
        assert_err(
            t.update(&a, "port_pair_groups", &id(&g1), body).await,
            400,
            "HTTPBadRequest",
        );
    }
    // A removed member is free again.
    t.update(
        &a,
        "port_pair_groups",
        &id(&g1),
        json!({"port_pairs": [pp1]}),
    )
    .await
    .unwrap();
    t.delete(&a, "port_pairs", &pp3).await.unwrap();
    // In use by a chain.
    t.chain(&a, json!({"port_pair_groups": [id(&g1)]}))
        .await
        .unwrap();
    assert_err(
        t.delete(&a, "port_pair_groups", &id(&g1)).await,
        409,
        "PortPairGroupInUse",
    );
}

#[tokio::test]
async fn port_chain_rules() {
    let t = sfc_env().await;
    let a = tenant();
    let g1 = t.hop(&a, json!(null)).await;
    let g2 = t.hop(&a, json!("mpls")).await;
    let fc1 = t
        .fc(
            &a,
            json!({"protocol": "tcp", "source_ip_prefix": "10.1.0.0/24"}),
        )
        .await;
    let c1 = t
        .chain(
            &a,
            json!({"name": "c1", "port_pair_groups": [g1, g2], "flow_classifiers": [fc1]}),
        )
        .await
        .unwrap();
    assert_eq!(c1["chain_id"], 1);
    assert_eq!(
        c1["chain_parameters"],
        json!({"correlation": "mpls", "symmetric": false})
    );
    assert_eq!(c1["port_pair_groups"], json!([g1, g2]));
    assert_eq!(c1["flow_classifiers"], json!([fc1]));

    // Hop lists.
    assert_err(
        t.chain(&a, json!({"port_pair_groups": []})).await,
        400,
        "PortPairGroupNotSpecified",
    );
    assert_err(t.chain(&a, json!({})).await, 400, "HTTPBadRequest");
    assert_err(
        t.chain(&a, json!({"port_pair_groups": [g1, g1]})).await,
        400,
        "HTTPBadRequest",
    );
    let missing = "9f1c1b47-0000-4000-8000-000000000000";
    assert_err(
        t.chain(&a, json!({"port_pair_groups": [missing]})).await,
        404,
        "PortPairGroupNotFound",
    );
    assert_err(
        t.chain(&a, json!({"port_pair_groups": [g1, g2]})).await,
        409,
        "InvalidPortPairGroups",
    );
    // Same groups in another order, or shared, are fine.
    let c2 = t
        .chain(&a, json!({"port_pair_groups": [g2, g1]}))
        .await
        .unwrap();
    assert_eq!(c2["chain_id"], 2);
    assert_err(
        t.chain(
            &a,
            json!({"port_pair_groups": [g2], "flow_classifiers": [missing]}),
        )
        .await,
        404,
        "FlowClassifierNotFound",
    );
    // Taps may not follow each other.
    let tap_pp = t.pp(&a, json!(null)).await;
    let tap1 = id(&t
        .ok(
            &a,
            "port_pair_groups",
            json!({"port_pairs": [tap_pp], "tap_enabled": true}),
        )
        .await);
    let tap2 = id(&t
        .ok(&a, "port_pair_groups", json!({"tap_enabled": true}))
        .await);
    assert_err(
        t.chain(&a, json!({"port_pair_groups": [g1, tap1, tap2]}))
            .await,
        400,
        "ConsecutiveTapPPGNotSupported",
    );
    t.chain(&a, json!({"port_pair_groups": [tap1, g1, tap2]}))
        .await
        .unwrap();
    // Pairs must speak the chain's correlation (or none).
    assert_err(
        t.chain(
            &a,
            json!({"port_pair_groups": [g2], "chain_parameters": {"correlation": "nsh"}}),
        )
        .await,
        400,
        "PortChainInconsistentCorrelations",
    );
    let nsh = t
        .chain(
            &a,
            json!({"port_pair_groups": [g1], "chain_parameters": {"correlation": "nsh", "symmetric": "true"}}),
        )
        .await
        .unwrap();
    assert_eq!(
        nsh["chain_parameters"],
        json!({"correlation": "nsh", "symmetric": true})
    );
    for params in [
        json!({"correlation": null}),
        json!({"symmetric": "maybe"}),
        json!({"x": 1}),
    ] {
        let r = t
            .chain(
                &a,
                json!({"port_pair_groups": [g2], "chain_parameters": params}),
            )
            .await;
        assert_eq!(r.expect_err("bad chain parameters").status, 400);
    }
    // A classifier in one chain only.
    assert_err(
        t.chain(
            &a,
            json!({"port_pair_groups": [g2], "flow_classifiers": [fc1]}),
        )
        .await,
        409,
        "FlowClassifierInUse",
    );
    assert_err(
        t.delete(&a, "flow_classifiers", &fc1).await,
        409,
        "FlowClassifierInUse",
    );
    // Classifiers of different chains may not overlap, even from other source ports.
    let fc2 = t
        .fc(
            &a,
            json!({"protocol": "tcp", "source_ip_prefix": "10.1.0.7/32"}),
        )
        .await;
    let e = assert_err(
        t.chain(
            &a,
            json!({"port_pair_groups": [g2], "flow_classifiers": [fc2]}),
        )
        .await,
        400,
        "PortChainFlowClassifierInConflict",
    );
    assert!(
        e.message.contains(&fc1) && e.message.contains(&id(&c1)),
        "{e}"
    );
    let fc3 = t
        .fc(
            &a,
            json!({"protocol": "udp", "source_ip_prefix": "10.1.0.7/32"}),
        )
        .await;
    let fc4 = t.fc(&a, json!({"source_ip_prefix": "10.1.1.0/24"})).await;
    // Inside one chain they may.
    let fc5 = t.fc(&a, json!({"source_ip_prefix": "10.1.1.9/32"})).await;
    let c3 = t
        .chain(
            &a,
            json!({"port_pair_groups": [g2], "flow_classifiers": [fc3, fc4, fc5]}),
        )
        .await
        .unwrap();
    // Chain ids: explicit, taken, out of range.
    assert_err(
        t.chain(&a, json!({"port_pair_groups": [g1, tap1], "chain_id": 1}))
            .await,
        400,
        "PortChainChainIdInConflict",
    );
    assert_err(
        t.chain(
            &a,
            json!({"port_pair_groups": [g1, tap1], "chain_id": 65536}),
        )
        .await,
        400,
        "HTTPBadRequest",
    );
    let explicit = t
        .chain(
            &a,
            json!({"port_pair_groups": [g1, tap1], "chain_id": "4000"}),
        )
        .await
        .unwrap();
    assert_eq!(explicit["chain_id"], 4000);

    // Updates of a live chain: append a hop, add classifiers; never the parameters or id.
    let g3 = t.hop(&a, json!(null)).await;
    let up = t
        .update(
            &a,
            "port_chains",
            &id(&c1),
            json!({"port_pair_groups": [g1, g2, g3], "flow_classifiers": [fc1, fc2]}),
        )
        .await
        .unwrap();
    assert_eq!(up["port_pair_groups"], json!([g1, g2, g3]));
    assert_eq!(up["flow_classifiers"], json!([fc1, fc2]));
    assert_eq!(up["chain_id"], 1);
    assert_err(
        t.update(
            &a,
            "port_chains",
            &id(&c1),
            json!({"port_pair_groups": [g2, g1]}),
        )
        .await,
        409,
        "InvalidPortPairGroups",
    );
    assert_err(
        t.update(&a, "port_chains", &id(&c1), json!({"port_pair_groups": []}))
            .await,
        400,
        "PortPairGroupNotSpecified",
    );
    assert_err(
        t.update(
            &a,
            "port_chains",
            &id(&c1),
            json!({"flow_classifiers": [fc1, fc3]}),
        )
        .await,
        409,
        "FlowClassifierInUse",
    );
    let fc6 = t.fc(&a, json!({"source_ip_prefix": "10.1.1.128/25"})).await;
    assert_err(
        t.update(
            &a,
            "port_chains",
            &id(&c1),
            json!({"flow_classifiers": [fc1, fc6]}),
        )
        .await,
        400,
        "PortChainFlowClassifierInConflict",
    );
    for body in [
        json!({"chain_parameters": {"symmetric": true}}),
        json!({"chain_id": 7}),
    ] {
        assert_err(
            t.update(&a, "port_chains", &id(&c1), body).await,
            400,
            "HTTPBadRequest",
        );
    }
    // Removing a classifier frees it; deleting a chain frees groups, classifiers, the id.
    t.update(
        &a,
        "port_chains",
        &id(&c1),
        json!({"flow_classifiers": [fc1]}),
    )
    .await
    .unwrap();
    t.delete(&a, "flow_classifiers", &fc2).await.unwrap();
    t.delete(&a, "port_chains", &id(&c3)).await.unwrap();
    t.delete(&a, "flow_classifiers", &fc3).await.unwrap();
    let reuse = t
        .chain(&a, json!({"port_pair_groups": [g3]}))
        .await
        .unwrap();
    assert!(reuse["chain_id"].as_i64().unwrap() < 10);
    // Scoping: project b neither sees nor conflicts with project a's chains.
    let b = other_tenant();
    assert_err(
        t.show(&b, "port_chains", &id(&c1)).await,
        404,
        "PortChainNotFound",
    );
    assert_err(
        t.update(&b, "port_chains", &id(&c1), json!({"name": "x"}))
            .await,
        404,
        "PortChainNotFound",
    );
    assert_err(
        t.chain(&b, json!({"port_pair_groups": [g1]})).await,
        404,
        "PortPairGroupNotFound",
    );
    let bg = t.hop(&b, json!(null)).await;
    let bfc = t
        .fc(
            &b,
            json!({"protocol": "tcp", "source_ip_prefix": "10.1.0.0/24"}),
        )
        .await;
    let bc = t
        .chain(
            &b,
            json!({"port_pair_groups": [bg], "flow_classifiers": [bfc]}),
        )
        .await
        .unwrap();
    assert!(t.list(&b, "port_chains", &[]).await.len() == 1);
    assert_eq!(
        t.list(
            &admin(),
            "port_chains",
            &[("chain_id", &bc["chain_id"].to_string())]
        )
        .await
        .len(),
        1
    );
    // Unknown filters are ignored, as upstream.
    assert_eq!(t.list(&b, "port_chains", &[("bogus", "1")]).await.len(), 1);
}

#[tokio::test]
async fn chain_ids_run_out() {
    let t = sfc_env().await;
    let a = tenant();
    let g = t.hop(&a, json!(null)).await;
    let mut tx = t.store.begin().await.unwrap();
    for n in 1..65535 {
        tx.claim("sfc-chain-id", &format!("{n:010}"), "other")
            .await
            .unwrap();
    }
    tx.commit().await.unwrap();
    assert_err(
        t.chain(&a, json!({"port_pair_groups": [g]})).await,
        400,
        "PortChainUnavailableChainId",
    );
    // 65535 can still be asked for.
    let c = t
        .chain(&a, json!({"port_pair_groups": [g], "chain_id": 65535}))
        .await
        .unwrap();
    assert_eq!(c["chain_id"], 65535);
}

#[tokio::test]
async fn service_graph_rules() {
    let t = &sfc_env().await;
    let a = tenant();
    let c1 = t.linked_chain(&a, "mpls", json!("mpls"), 1).await;
    let c2 = t.linked_chain(&a, "mpls", json!("mpls"), 2).await;
    let c3 = t.linked_chain(&a, "mpls", json!("mpls"), 3).await;
    let c4 = t.linked_chain(&a, "mpls", json!("mpls"), 4).await;
    let d1 = t.linked_chain(&a, "mpls", json!("mpls"), 5).await;
    let d2 = t.linked_chain(&a, "mpls", json!("mpls"), 6).await;
    let c5 = t.linked_chain(&a, "mpls", json!("mpls"), 7).await;
    let legacy = t.linked_chain(&a, "mpls", json!(null), 8).await;
    let nsh = t.linked_chain(&a, "nsh", json!("nsh"), 9).await;
    let graph = |pcs: Value| async move {
        t.create(&tenant(), "service_graphs", json!({"port_chains": pcs}))
            .await
    };

    assert_err(
        graph(json!({&c1: [&c1]})).await,
        400,
        "ServiceGraphLoopDetected",
    );
    assert_err(
        graph(json!({&c1: [&c2], &c2: [&c3], &c3: [&c1]})).await,
        400,
        "ServiceGraphLoopDetected",
    );
    assert_err(
        graph(json!({&c1: [&legacy]})).await,
        400,
        "ServiceGraphImpossibleBranching",
    );
    assert_err(
        graph(json!({&legacy: [&c1]})).await,
        400,
        "ServiceGraphImpossibleBranching",
    );
    assert_err(
        graph(json!({&c1: [&nsh]})).await,
        400,
        "ServiceGraphInconsistentEncapsulation",
    );
    assert_err(
        graph(json!({&c1: [&c2, &c2]})).await,
        400,
        "ServiceGraphPortChainInConflict",
    );
    assert_err(graph(json!({"x": [&c1]})).await, 400, "InvalidUUID");
    assert_err(graph(json!({&c1: ["y"]})).await, 400, "InvalidUUID");
    let missing = "9f1c1b47-0000-4000-8000-000000000000";
    assert_err(
        graph(json!({&c1: [missing]})).await,
        404,
        "PortChainNotFound",
    );
    assert_err(
        t.create(&a, "service_graphs", json!({"name": "g"})).await,
        400,
        "HTTPBadRequest",
    );
    // Fan-out from c4 to d1 and d2 (disjoint classifiers) and a join of c1 and c2 into c3.
    let sg = t
        .ok(
            &a,
            "service_graphs",
            json!({"name": "g", "port_chains": {&c4: [&d1, &d2], &c1: [&c3], &c2: [&c3]}}),
        )
        .await;
    assert_eq!(sg["port_chains"][&c4], json!([d1, d2]));
    assert_eq!(sg["port_chains"][&c2], json!([c3]));
    assert_eq!(t.show(&a, "service_graphs", &id(&sg)).await.unwrap(), sg);
    // A chain belongs to one graph.
    assert_err(
        graph(json!({&c3: [&c5]})).await,
        409,
        "ServiceGraphInvalidPortChains",
    );
    // Chains in a graph keep their hops and classifiers.
    assert_err(
        t.delete(&a, "port_chains", &c3).await,
        409,
        "ServiceGraphPortChainInUse",
    );
    assert_err(
        t.update(&a, "port_chains", &c3, json!({"flow_classifiers": []}))
            .await,
        409,
        "ServiceGraphPortChainInUse",
    );
    t.update(&a, "port_chains", &c3, json!({"name": "renamed"}))
        .await
        .unwrap();
    assert_err(
        t.update(&a, "service_graphs", &id(&sg), json!({"port_chains": {}}))
            .await,
        400,
        "HTTPBadRequest",
    );
    assert_eq!(
        t.update(&a, "service_graphs", &id(&sg), json!({"description": "d"}))
            .await
            .unwrap()["description"],
        "d"
    );
    assert_err(
        t.show(&other_tenant(), "service_graphs", &id(&sg)).await,
        404,
        "ServiceGraphNotFound",
    );
    t.delete(&a, "service_graphs", &id(&sg)).await.unwrap();
    // The chains are free again.
    t.ok(&a, "service_graphs", json!({"port_chains": {&c3: [&c5]}}))
        .await;
    t.delete(&a, "port_chains", &c1).await.unwrap();
}

#[tokio::test]
async fn service_graph_branch_classifier_conflict() {
    let t = sfc_env().await;
    let (a, b) = (tenant(), other_tenant());
    // Destinations without classifiers are fine.
    let src = t.linked_chain(&a, "mpls", json!("mpls"), 1).await;
    let g = t.hop(&a, json!("mpls")).await;
    let bare = id(&t.chain(&a, json!({"port_pair_groups": [g]})).await.unwrap());
    t.ok(
        &a,
        "service_graphs",
        json!({"port_chains": {&src: [&bare]}}),
    )
    .await;
    // Chains of two projects may carry overlapping classifiers (each project's checks see
    // its own chains); an admin linking them behind one branching point is refused.
    let bsrc = t.linked_chain(&b, "mpls", json!("mpls"), 1).await;
    let bfc = t.fc(&b, json!({"source_ip_prefix": "10.200.0.0/16"})).await;
    let bg = t.hop(&b, json!("mpls")).await;
    let bd = id(&t
        .chain(
            &b,
            json!({"port_pair_groups": [bg], "flow_classifiers": [bfc]}),
        )
        .await
        .unwrap());
    let afc = t.fc(&a, json!({"source_ip_prefix": "10.200.1.0/24"})).await;
    let ag = t.hop(&a, json!("mpls")).await;
    let ad = id(&t
        .chain(
            &a,
            json!({"port_pair_groups": [ag], "flow_classifiers": [afc]}),
        )
        .await
        .unwrap());
    assert_err(
        t.create(
            &admin(),
            "service_graphs",
            json!({"port_chains": {&bsrc: [&bd, &ad]}}),
        )
        .await,
        400,
        "ServiceGraphFlowClassifierInConflict",
    );
}

#[tokio::test]
async fn quotas_and_policy() {
    let t = sfc_env().await;
    let a = tenant();
    let q = t.app.quota_show(&a, "project-a").await.unwrap();
    assert_eq!(
        (
            &q["quota"]["flow_classifier"],
            &q["quota"]["port_pair"],
            &q["quota"]["port_pair_group"],
            &q["quota"]["port_chain"],
            &q["quota"]["service_graph"]
        ),
        (&json!(100), &json!(100), &json!(10), &json!(10), &json!(-1))
    );
    for _ in 0..10 {
        t.ok(&a, "port_pair_groups", json!({})).await;
    }
    assert_err(
        t.create(&a, "port_pair_groups", json!({})).await,
        409,
        "OverQuota",
    );
    // A reader may look but not create (a valid body: as in Neutron, the body is checked
    // before the policy).
    let reader = Context::new("r", "project-a", &["reader".into()]);
    assert_eq!(t.list(&reader, "port_pair_groups", &[]).await.len(), 10);
    assert_err(
        t.create(&reader, "port_pair_groups", json!({})).await,
        403,
        "PolicyNotAuthorized",
    );
    // An admin may create for another project, and that project owns it.
    let fc = t
        .ok(
            &admin(),
            "flow_classifiers",
            json!({"project_id": "project-b", "protocol": "icmp"}),
        )
        .await;
    assert_eq!(fc["tenant_id"], "project-b");
    assert!(t
        .show(&other_tenant(), "flow_classifiers", &id(&fc))
        .await
        .is_ok());
}

#[tokio::test]
async fn change_feed_carries_sfc_resources() {
    let t = sfc_env().await;
    let a = tenant();
    let before = t.app.feed_snapshot(&admin()).await.unwrap()["revision"]
        .as_i64()
        .unwrap();
    let g = t.hop(&a, json!(null)).await;
    let pc = id(&t.chain(&a, json!({"port_pair_groups": [g]})).await.unwrap());
    let snap = t.app.feed_snapshot(&admin()).await.unwrap();
    let chains = snap["resources"]["port_chain"].as_array().unwrap();
    assert!(chains.iter().any(|c| c["id"] == pc.as_str()));
    assert_eq!(snap["resources"]["port_pair_group"][0]["id"], g.as_str());
    t.delete(&a, "port_chains", &pc).await.unwrap();
    let page = match t.app.feed_changes(&admin(), before, 1000).await.unwrap() {
        neutrino_app::agents::FeedPage::Changes(v) => v,
        _ => panic!("resync"),
    };
    let kinds: Vec<&str> = page["changes"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["kind"].as_str())
        .collect();
    for kind in ["port_pair", "port_pair_group", "port_chain"] {
        assert!(kinds.contains(&kind), "{kind} in {kinds:?}");
    }
}

/// The change feed's current revision.
async fn feed_revision(t: &Env) -> i64 {
    t.app.feed_snapshot(&admin()).await.unwrap()["revision"]
        .as_i64()
        .unwrap()
}

/// Binds both ports of port pair `pp` to `host` (as Nova would when booting the SF).
async fn bind_pair(t: &Env, pp: &str, host: &str) {
    let doc = t.show(&admin(), "port_pairs", pp).await.unwrap();
    for end in ["ingress", "egress"] {
        let port = doc[end].as_str().unwrap();
        t.update(&admin(), "ports", port, json!({"binding:host_id": host}))
            .await
            .unwrap();
    }
}

fn health(doc: &Value) -> (&str, &str) {
    (
        doc["neutrino:health"].as_str().unwrap(),
        doc["neutrino:health_detail"].as_str().unwrap(),
    )
}

fn epoch_ms() -> i64 {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    i64::try_from(since.as_millis()).unwrap()
}

#[tokio::test]
async fn port_pair_health_reports() {
    let t = sfc_env().await;
    let a = tenant();
    let pp = t.pp(&a, json!(null)).await;
    let elsewhere = t.pp(&a, json!(null)).await;
    let shown = t.show(&a, "port_pairs", &pp).await.unwrap();
    assert_eq!(health(&shown), ("UNKNOWN", ""));
    bind_pair(&t, &pp, "h1").await;
    bind_pair(&t, &elsewhere, "h2").await;

    let report = |health: &str, detail: Option<&str>| {
        let mut item = json!({"id": pp, "health": health});
        if let Some(d) = detail {
            item["detail"] = json!(d);
        }
        json!({"host": "h1", "port_pairs": [item,
               {"id": elsewhere, "health": "DOWN", "detail": "not mine"},
               {"id": "8d2c4b1e-0000-4000-8000-00000000dead", "health": "UP"}]})
    };
    let before = feed_revision(&t).await;
    let out = t
        .app
        .report_sfc_status(&admin(), report("DOWN", Some("no reply on eth1")))
        .await
        .unwrap();
    assert_eq!(out, json!({"updated": 1, "chains": 0}));
    let shown = t.show(&a, "port_pairs", &pp).await.unwrap();
    assert_eq!(health(&shown), ("DOWN", "no reply on eth1"));
    // One commit, and the feed carries the new document to the agents.
    assert_eq!(feed_revision(&t).await, before + 1);
    let page = match t.app.feed_changes(&admin(), before, 100).await.unwrap() {
        neutrino_app::agents::FeedPage::Changes(v) => v,
        _ => panic!("resync"),
    };
    let changes = page["changes"].as_array().unwrap();
    assert_eq!(changes.len(), 1);
    assert_eq!(changes[0]["id"], pp.as_str());
    assert_eq!(changes[0]["body"]["neutrino:health"], "DOWN");
    // The pair bound to another host was left alone.
    let other = t.show(&a, "port_pairs", &elsewhere).await.unwrap();
    assert_eq!(health(&other), ("UNKNOWN", ""));

    // The same report again writes nothing.
    let out = t
        .app
        .report_sfc_status(&admin(), report("DOWN", Some("no reply on eth1")))
        .await
        .unwrap();
    assert_eq!(out["updated"], 0);
    assert_eq!(feed_revision(&t).await, before + 1);
    // Back up, without detail: the detail clears.
    let out = t
        .app
        .report_sfc_status(&admin(), report("UP", None))
        .await
        .unwrap();
    assert_eq!(out["updated"], 1);
    assert_eq!(
        health(&t.show(&a, "port_pairs", &pp).await.unwrap()),
        ("UP", "")
    );
    assert_eq!(feed_revision(&t).await, before + 2);
    // Health is a filter like any read-only attribute.
    let up = t.list(&a, "port_pairs", &[("neutrino:health", "UP")]).await;
    assert_eq!(up.len(), 1);
    assert_eq!(up[0]["id"], pp.as_str());

    // Only admins report; bad reports are 400 and change nothing.
    assert_err(
        t.app.report_sfc_status(&a, report("DOWN", None)).await,
        403,
        "PolicyNotAuthorized",
    );
    for bad in [
        json!({"port_pairs": []}),
        json!({"host": "h1", "port_pairs": [{"id": pp, "health": "MAYBE"}]}),
        json!({"host": "h1", "port_pairs": [{"id": "nope", "health": "UP"}]}),
        json!({"host": "h1", "port_pairs": "all"}),
        json!({"host": "h1", "chains": [{"id": pp, "hops": [{"direction": "forward"}]}]}),
    ] {
        assert_err(
            t.app.report_sfc_status(&admin(), bad).await,
            400,
            "HTTPBadRequest",
        );
    }
    assert_eq!(feed_revision(&t).await, before + 2);

    // Clients cannot set the attributes.
    let (i, e) = (t.port(&a, "vm-h").await, t.port(&a, "vm-h").await);
    for key in ["neutrino:health", "neutrino:health_detail"] {
        let e = assert_err(
            t.create(
                &a,
                "port_pairs",
                json!({"ingress": i, "egress": e, key: "UP"}),
            )
            .await,
            400,
            "HTTPBadRequest",
        );
        assert!(e.message.contains(key), "{e}");
        assert_err(
            t.update(&admin(), "port_pairs", &pp, json!({ key: "DOWN" }))
                .await,
            400,
            "HTTPBadRequest",
        );
    }
}

#[tokio::test]
async fn port_pairs_stored_without_health_read_as_unknown() {
    let t = sfc_env().await;
    let a = tenant();
    let pp = t.pp(&a, json!(null)).await;
    // A document as stored before the attributes existed.
    let mut tx = t.store.begin().await.unwrap();
    let mut rec = tx.get("port_pair", &pp).await.unwrap().unwrap();
    let doc = rec.body.as_object_mut().unwrap();
    doc.remove("neutrino:health");
    doc.remove("neutrino:health_detail");
    tx.update("port_pair", &pp, &rec.body).await.unwrap();
    tx.commit().await.unwrap();

    assert_eq!(
        health(&t.show(&a, "port_pairs", &pp).await.unwrap()),
        ("UNKNOWN", "")
    );
    assert_eq!(
        health(&t.list(&a, "port_pairs", &[]).await[0]),
        ("UNKNOWN", "")
    );
    let snap = t.app.feed_snapshot(&admin()).await.unwrap();
    assert_eq!(health(&snap["resources"]["port_pair"][0]), ("UNKNOWN", ""));
    // A report brings them in; "UNKNOWN" is no change from nothing.
    bind_pair(&t, &pp, "h1").await;
    let out = t
        .app
        .report_sfc_status(
            &admin(),
            json!({"host": "h1", "port_pairs": [{"id": pp, "health": "UP", "detail": "ok"}]}),
        )
        .await
        .unwrap();
    assert_eq!(out["updated"], 1);
    assert_eq!(
        health(&t.show(&a, "port_pairs", &pp).await.unwrap()),
        ("UP", "ok")
    );
}

#[tokio::test]
async fn port_chain_statistics() {
    let t = sfc_env().await;
    let a = tenant();
    let (pp1, pp2) = (t.pp(&a, json!(null)).await, t.pp(&a, json!(null)).await);
    let pp3 = t.pp(&a, json!(null)).await;
    let g1 = t.ppg(&a, &[&pp1, &pp2]).await;
    let g2 = t.ppg(&a, &[&pp3]).await;
    // The chain crosses g2 first.
    let pc = id(&t
        .chain(&a, json!({"port_pair_groups": [g2, g1]}))
        .await
        .unwrap());
    let stats = |ctx: Context| {
        let t = &t;
        let pc = pc.clone();
        async move {
            t.app
                .get_action(&ctx, coll("port_chains"), &pc, "statistics")
                .await
        }
    };
    assert_eq!(
        stats(a.clone()).await.unwrap(),
        json!({"statistics": {"port_chain_id": pc, "hops": [],
               "dropped": {"packets": 0, "bytes": 0}, "updated_at": null}})
    );

    let hop = |g: &str, p: Option<&str>, dir: &str, packets: u64| {
        json!({"port_pair_group_id": g, "port_pair_id": p, "direction": dir,
               "packets": packets, "bytes": packets * 100})
    };
    let report = |host: &str, hops: Vec<Value>, dropped: u64| {
        json!({"host": host, "chains": [
            {"id": pc, "hops": hops, "dropped": {"packets": dropped, "bytes": dropped * 60}},
            {"id": "8d2c4b1e-0000-4000-8000-00000000beef", "hops": []}]})
    };
    let before = feed_revision(&t).await;
    let out = t
        .app
        .report_sfc_status(
            &admin(),
            report(
                "h1",
                vec![
                    hop(&g1, Some(&pp1), "forward", 10),
                    hop(&g1, Some(&pp2), "forward", 1),
                    hop(&g2, Some(&pp3), "forward", 7),
                ],
                1,
            ),
        )
        .await
        .unwrap();
    assert_eq!(out, json!({"updated": 0, "chains": 1}));
    for (host, hops, dropped) in [
        // Replaced by the next report of h2: the latest report counts, not their sum.
        ("h2", vec![hop(&g1, Some(&pp1), "forward", 1000)], 9),
        (
            "h2",
            vec![
                hop(&g1, Some(&pp1), "forward", 5),
                hop(&g1, Some(&pp1), "reverse", 3),
            ],
            2,
        ),
    ] {
        t.app
            .report_sfc_status(&admin(), report(host, hops, dropped))
            .await
            .unwrap();
    }
    // A host whose last report is older than five minutes no longer counts.
    t.app
        .report_sfc_status_at(
            &admin(),
            report("h3", vec![hop(&g2, Some(&pp3), "forward", 500)], 500),
            epoch_ms() - 6 * 60 * 1000,
        )
        .await
        .unwrap();
    // Counters are not resource writes: the feed did not move.
    assert_eq!(feed_revision(&t).await, before);

    let got = stats(a.clone()).await.unwrap();
    let s = &got["statistics"];
    let expect = |g: &str, p: &str, dir: &str, packets: u64, hosts: &[&str]| {
        json!({"port_pair_group_id": g, "port_pair_id": p, "direction": dir,
               "packets": packets, "bytes": packets * 100, "hosts": hosts})
    };
    // Hops in chain order, forward before reverse, pairs of one group by id.
    let (first, second) = if pp1 < pp2 {
        (
            expect(&g1, &pp1, "forward", 15, &["h1", "h2"]),
            expect(&g1, &pp2, "forward", 1, &["h1"]),
        )
    } else {
        (
            expect(&g1, &pp2, "forward", 1, &["h1"]),
            expect(&g1, &pp1, "forward", 15, &["h1", "h2"]),
        )
    };
    assert_eq!(
        s["hops"],
        json!([
            expect(&g2, &pp3, "forward", 7, &["h1"]),
            first,
            second,
            expect(&g1, &pp1, "reverse", 3, &["h2"]),
        ])
    );
    assert_eq!(s["dropped"], json!({"packets": 3, "bytes": 180}));
    assert_eq!(s["port_chain_id"], pc.as_str());
    let updated = s["updated_at"].as_str().unwrap();
    assert!(updated.len() == 20 && updated.ends_with('Z'), "{updated}");
    // The chain document itself carries no statistics.
    assert!(t
        .show(&a, "port_chains", &pc)
        .await
        .unwrap()
        .get("statistics")
        .is_none());

    // Whoever sees the chain sees its statistics.
    let reader = Context::new("r", "project-a", &["reader".into()]);
    assert_eq!(stats(reader).await.unwrap(), got);
    assert_eq!(stats(admin()).await.unwrap(), got);
    assert_err(stats(other_tenant()).await, 404, "PortChainNotFound");
    assert_err(
        t.app
            .get_action(
                &a,
                coll("port_chains"),
                "8d2c4b1e-0000-4000-8000-00000000beef",
                "statistics",
            )
            .await,
        404,
        "PortChainNotFound",
    );
    assert_err(
        t.app
            .get_action(&a, coll("port_pairs"), &pp1, "statistics")
            .await,
        404,
        "HTTPNotFound",
    );
    // Deleting the chain forgets its counters.
    t.delete(&a, "port_chains", &pc).await.unwrap();
    let mut tx = t.store.read().await.unwrap();
    assert!(tx.chain_counters(&pc, 0).await.unwrap().is_empty());
}

#[tokio::test]
async fn fail_open_group_parameter() {
    let t = sfc_env().await;
    let a = tenant();
    let upstream = json!({"lb_fields": [],
                          "ppg_n_tuple_mapping": {"ingress_n_tuple": {}, "egress_n_tuple": {}}});
    let plain = t.ok(&a, "port_pair_groups", json!({})).await;
    assert_eq!(plain["port_pair_group_parameters"], upstream);
    let open = t
        .ok(
            &a,
            "port_pair_groups",
            json!({"port_pair_group_parameters": {"fail_open": true, "lb_fields": ["ip_src"]}}),
        )
        .await;
    assert_eq!(
        open["port_pair_group_parameters"],
        json!({"lb_fields": ["ip_src"], "fail_open": true,
               "ppg_n_tuple_mapping": {"ingress_n_tuple": {}, "egress_n_tuple": {}}})
    );
    assert_eq!(
        t.show(&a, "port_pair_groups", &id(&open)).await.unwrap()["port_pair_group_parameters"],
        open["port_pair_group_parameters"]
    );
    let closed = t
        .ok(
            &a,
            "port_pair_groups",
            json!({"port_pair_group_parameters": {"fail_open": false}}),
        )
        .await;
    assert_eq!(
        closed["port_pair_group_parameters"]["fail_open"],
        json!(false)
    );
    for v in [json!("yes"), json!(1), json!(null)] {
        let e = assert_err(
            t.create(
                &a,
                "port_pair_groups",
                json!({"port_pair_group_parameters": {"fail_open": v}}),
            )
            .await,
            400,
            "HTTPBadRequest",
        );
        assert!(
            e.message
                .starts_with("Invalid input for port_pair_group_parameters. Reason:"),
            "{e}"
        );
    }
    // Like the other parameters, set on create only.
    assert_err(
        t.update(
            &a,
            "port_pair_groups",
            &id(&plain),
            json!({"port_pair_group_parameters": {"fail_open": true}}),
        )
        .await,
        400,
        "HTTPBadRequest",
    );
}
