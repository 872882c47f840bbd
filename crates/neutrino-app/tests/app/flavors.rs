//! Service flavors and profiles with Neutron's rules: validation, bindings, in-use checks,
//! next providers, the providers list, and who may do what.

use crate::common::*;
use serde_json::{json, Value};

const HA_DRIVER: &str = "neutrino.l3.ha";

async fn profile(t: &Env, body: Value) -> String {
    id(&t.ok(&admin(), "service_profiles", body).await)
}

#[tokio::test]
async fn flavor_validation_and_visibility() {
    let t = env().await;
    let flavor = t
        .ok(
            &admin(),
            "flavors",
            json!({"name": "gold", "service_type": "L3_ROUTER_NAT"}),
        )
        .await;
    assert_eq!(flavor["enabled"], true);
    assert_eq!(flavor["service_profiles"], json!([]));
    assert_eq!(flavor["description"], "");
    let fid = id(&flavor);

    let bad_type = t
        .create(&admin(), "flavors", json!({"service_type": "NOPE"}))
        .await;
    assert_err(bad_type, 400, "InvalidServiceType");
    let no_type = t.create(&admin(), "flavors", json!({"name": "x"})).await;
    assert_eq!(no_type.expect_err("required").status, 400);
    let bad_profile = json!({"service_type": "L3_ROUTER_NAT", "service_profiles": ["x"]});
    assert_eq!(
        t.create(&admin(), "flavors", bad_profile)
            .await
            .unwrap_err()
            .status,
        400
    );
    let unknown = json!({"service_type": "L3_ROUTER_NAT",
                         "service_profiles": ["6f7c0d3e-1111-4f0e-9d1c-7a1c2b3d4e5f"]});
    let r = t.create(&admin(), "flavors", unknown).await;
    assert_err(r, 404, "ServiceProfileNotFound");
    // service_type is set once.
    let r = t
        .update(&admin(), "flavors", &fid, json!({"service_type": "QOS"}))
        .await;
    assert_eq!(r.unwrap_err().status, 400);

    // Every project reads flavors; only admins write them.
    assert_eq!(
        t.show(&tenant(), "flavors", &fid).await.unwrap()["name"],
        "gold"
    );
    assert_eq!(t.list(&tenant(), "flavors", &[]).await.len(), 1);
    let r = t
        .create(
            &tenant(),
            "flavors",
            json!({"service_type": "L3_ROUTER_NAT"}),
        )
        .await;
    assert_eq!(r.unwrap_err().status, 403);
    let r = t
        .update(&tenant(), "flavors", &fid, json!({"name": "x"}))
        .await;
    assert!(matches!(r.unwrap_err().status, 403 | 404));
    // Service profiles are the operator's alone.
    let r = t
        .create(&tenant(), "service_profiles", json!({"driver": HA_DRIVER}))
        .await;
    assert_eq!(r.unwrap_err().status, 403);
    assert!(t.list(&tenant(), "service_profiles", &[]).await.is_empty());
}

#[tokio::test]
async fn service_profile_needs_a_known_driver_or_metainfo() {
    let t = env().await;
    let r = t.create(&admin(), "service_profiles", json!({})).await;
    assert_err(r, 400, "ServiceProfileEmpty");
    let r = t
        .create(
            &admin(),
            "service_profiles",
            json!({"driver": "no.such.Driver"}),
        )
        .await;
    assert_err(r, 404, "ServiceProfileDriverNotFound");
    let meta = t
        .ok(
            &admin(),
            "service_profiles",
            json!({"metainfo": "{\"x\": 1}"}),
        )
        .await;
    assert_eq!(meta["driver"], "");
    assert_eq!(meta["enabled"], true);
    let p = profile(&t, json!({"driver": HA_DRIVER})).await;
    let r = t
        .update(
            &admin(),
            "service_profiles",
            &p,
            json!({"driver": "no.such"}),
        )
        .await;
    assert_err(r, 404, "ServiceProfileDriverNotFound");
}

#[tokio::test]
async fn bindings_in_use_and_next_providers() {
    let t = env().await;
    let p = profile(&t, json!({"driver": HA_DRIVER, "metainfo": "m"})).await;
    let f = id(&t
        .ok(
            &admin(),
            "flavors",
            json!({"service_type": "L3_ROUTER_NAT"}),
        )
        .await);
    let r = t.app.flavor_next_providers(&tenant(), &f).await;
    assert_err(r, 404, "FlavorServiceProfileBindingNotFound");

    let bound = t
        .app
        .bind_flavor_profile(&admin(), &f, json!({"service_profile": {"id": p}}))
        .await
        .unwrap();
    assert_eq!(bound["service_profile"]["id"], p.as_str());
    let again = t
        .app
        .bind_flavor_profile(&admin(), &f, json!({"service_profile": {"id": p}}))
        .await;
    assert_err(again, 409, "FlavorServiceProfileBindingExists");
    let r = t
        .app
        .bind_flavor_profile(&tenant(), &f, json!({"service_profile": {"id": p}}))
        .await;
    assert_eq!(r.unwrap_err().status, 403);
    assert_eq!(
        t.show(&admin(), "flavors", &f).await.unwrap()["service_profiles"],
        json!([p])
    );
    let shown = t.app.flavor_profile(&admin(), &f, &p).await.unwrap();
    assert_eq!(shown["service_profile"]["flavor_id"], f.as_str());

    let next = t.app.flavor_next_providers(&tenant(), &f).await.unwrap();
    assert_eq!(
        next["next_providers"],
        json!([{"driver": HA_DRIVER, "provider": "ha", "metainfo": "m"}])
    );

    // A bound profile can be neither changed nor deleted.
    let r = t
        .update(
            &admin(),
            "service_profiles",
            &p,
            json!({"description": "d"}),
        )
        .await;
    assert_err(r, 409, "ServiceProfileInUse");
    assert_err(
        t.delete(&admin(), "service_profiles", &p).await,
        409,
        "ServiceProfileInUse",
    );

    t.app.unbind_flavor_profile(&admin(), &f, &p).await.unwrap();
    let r = t.app.unbind_flavor_profile(&admin(), &f, &p).await;
    assert_err(r, 404, "FlavorServiceProfileBindingNotFound");
    t.update(&admin(), "service_profiles", &p, json!({"enabled": false}))
        .await
        .unwrap();

    // Bound at create, released when the flavor goes.
    let f2 = id(&t
        .ok(
            &admin(),
            "flavors",
            json!({"service_type": "L3_ROUTER_NAT", "service_profiles": [p]}),
        )
        .await);
    let r = t.app.flavor_next_providers(&admin(), &f2).await;
    assert_err(r, 503, "ServiceProfileDisabled");
    assert_err(
        t.delete(&admin(), "service_profiles", &p).await,
        409,
        "ServiceProfileInUse",
    );
    t.delete(&admin(), "flavors", &f2).await.unwrap();
    t.delete(&admin(), "service_profiles", &p).await.unwrap();
    let r = t.app.flavor_next_providers(&admin(), &f2).await;
    assert_err(r, 404, "FlavorNotFound");
    let problems = neutrino_app::consistency::check_store(&t.store)
        .await
        .unwrap();
    assert!(problems.is_empty(), "{problems:?}");
}

#[tokio::test]
async fn service_providers_list_and_filter() {
    let t = env().await;
    let all = t.app.service_providers(&tenant(), &[]).unwrap();
    assert!(all
        .iter()
        .any(|p| p["name"] == "ha" && p["service_type"] == "L3_ROUTER_NAT"));
    let q = query(&[("name", "dvr"), ("fields", "driver")]);
    let dvr = t.app.service_providers(&tenant(), &q).unwrap();
    assert_eq!(dvr.len(), 1);
    assert_eq!(
        Value::Object(dvr[0].clone()),
        json!({"driver": "neutrino.l3.dvr"})
    );
}

/// A flavor of the L3 service bound to a profile of `driver`.
async fn router_flavor(t: &Env, driver: &str) -> String {
    let profile = t
        .ok(&admin(), "service_profiles", json!({"driver": driver}))
        .await;
    let flavor = t
        .ok(
            &admin(),
            "flavors",
            json!({"name": "f", "service_type": "L3_ROUTER_NAT"}),
        )
        .await;
    t.app
        .bind_flavor_profile(
            &admin(),
            &id(&flavor),
            json!({"service_profile": {"id": id(&profile)}}),
        )
        .await
        .unwrap();
    id(&flavor)
}

#[tokio::test]
async fn a_router_flavor_decides_the_router_and_stays_while_used() {
    let t = env().await;
    // Upstream's driver paths name the same providers as this server's names.
    let dvr = router_flavor(
        &t,
        "neutron.services.l3_router.service_providers.dvr.DvrDriver",
    )
    .await;
    let legacy = router_flavor(&t, "neutrino.l3.single_node").await;
    // A project member may create a distributed router through the flavor.
    let r = t.ok(&tenant(), "routers", json!({"flavor_id": dvr})).await;
    assert_eq!(r["flavor_id"], json!(dvr));
    let shown = t.show(&admin(), "routers", &id(&r)).await.unwrap();
    assert_eq!(
        (shown["distributed"].clone(), shown["ha"].clone()),
        (json!(true), json!(false))
    );
    let plain = t
        .ok(&tenant(), "routers", json!({"flavor_id": legacy}))
        .await;
    assert_eq!(
        t.show(&admin(), "routers", &id(&plain)).await.unwrap()["distributed"],
        false
    );
    assert_eq!(
        t.ok(&tenant(), "routers", json!({})).await["flavor_id"],
        Value::Null
    );
    // Flags and a flavor together are refused; so is a flavor of another service.
    let both = t
        .create(
            &admin(),
            "routers",
            json!({"flavor_id": dvr, "distributed": true}),
        )
        .await;
    assert_err(both, 400, "BadRequest");
    let qos = t
        .ok(
            &admin(),
            "flavors",
            json!({"name": "q", "service_type": "QOS"}),
        )
        .await;
    assert_err(
        t.create(&tenant(), "routers", json!({"flavor_id": id(&qos)}))
            .await,
        400,
        "InvalidFlavorServiceType",
    );
    // In use: not deleted; free again once its routers are gone.
    assert_err(
        t.delete(&admin(), "flavors", &dvr).await,
        409,
        "FlavorInUse",
    );
    t.delete(&tenant(), "routers", &id(&r)).await.unwrap();
    t.delete(&admin(), "flavors", &dvr).await.unwrap();
}
