//! Local IPs and their port associations through the application API: the address a Local
//! IP takes (from a port or a port of its own), what holds what, and upstream's errors.

use crate::common::*;
use neutrino_app::Context;
use serde_json::{json, Value};

/// `POST /local_ips/{lip}/port_associations`.
async fn associate(
    t: &Env,
    ctx: &Context,
    lip: &str,
    body: Value,
) -> Result<Value, neutrino_types::ApiError> {
    let mut out = t
        .app
        .create_in(ctx, coll("port_associations"), Some(lip), vec![doc(body)])
        .await?;
    Ok(Value::Object(out.remove(0)))
}

#[tokio::test]
async fn a_local_ip_on_a_network_gets_a_port_of_its_own_that_goes_with_it() {
    let t = env().await;
    let (net, sub) = t.net(&tenant(), json!({}), "10.70.0.0/24").await;
    let lip = t
        .ok(
            &tenant(),
            "local_ips",
            json!({"network_id": net, "local_ip_address": "10.70.0.200", "name": "l"}),
        )
        .await;
    assert_eq!(lip["local_ip_address"], "10.70.0.200");
    assert_eq!(lip["network_id"], json!(net));
    assert_eq!(lip["ip_mode"], "translate");
    let port = t
        .show(&admin(), "ports", lip["local_port_id"].as_str().unwrap())
        .await
        .unwrap();
    assert_eq!(port["device_owner"], "network:local_ip");
    assert_eq!(port["device_id"], lip["id"]);
    assert_eq!(port["project_id"], "project-a");
    assert_eq!(
        port["fixed_ips"],
        json!([{"subnet_id": sub, "ip_address": "10.70.0.200"}])
    );
    // The holding port cannot be deleted while the Local IP exists.
    assert_err(
        t.delete(&tenant(), "ports", &id(&port)).await,
        409,
        "ServicePortInUse",
    );
    // Only name and description change.
    let up = t
        .update(&tenant(), "local_ips", &id(&lip), json!({"name": "n2"}))
        .await
        .unwrap();
    assert_eq!(up["name"], "n2");
    assert_err(
        t.update(
            &tenant(),
            "local_ips",
            &id(&lip),
            json!({"local_ip_address": "10.70.0.9"}),
        )
        .await,
        400,
        "HTTPBadRequest",
    );
    t.delete(&tenant(), "local_ips", &id(&lip)).await.unwrap();
    assert_err(
        t.show(&admin(), "ports", &id(&port)).await,
        404,
        "PortNotFound",
    );
    assert_err(
        t.show(&tenant(), "local_ips", &id(&lip)).await,
        404,
        "LocalIPNotFound",
    );
}

#[tokio::test]
async fn a_local_ip_takes_an_address_of_a_given_port_and_keeps_the_port() {
    let t = env().await;
    let (net, sub) = t.net(&tenant(), json!({}), "10.71.0.0/24").await;
    let port = t
        .ok(
            &tenant(),
            "ports",
            json!({"network_id": net, "fixed_ips": [{"subnet_id": sub}, {"subnet_id": sub}]}),
        )
        .await;
    let ips: Vec<String> = port["fixed_ips"]
        .as_array()
        .unwrap()
        .iter()
        .map(|ip| ip["ip_address"].as_str().unwrap().to_string())
        .collect();
    // Addresses are allocated at random: pick one that is surely not the port's.
    let not_its_ip = ["10.71.0.250", "10.71.0.251", "10.71.0.252"]
        .into_iter()
        .find(|a| !ips.iter().any(|ip| ip == a))
        .unwrap();
    // Two addresses: which one must be said.
    assert_err(
        t.create(&tenant(), "local_ips", json!({"local_port_id": id(&port)}))
            .await,
        400,
        "LocalIPNoRequestedIP",
    );
    assert_err(
        t.create(
            &tenant(),
            "local_ips",
            json!({"local_port_id": id(&port), "local_ip_address": not_its_ip}),
        )
        .await,
        400,
        "LocalIPRequestedIPNotFound",
    );
    assert_err(
        t.create(&tenant(), "local_ips", json!({"name": "x"})).await,
        400,
        "LocalIPPortOrNetworkRequired",
    );
    assert_err(
        t.create(
            &tenant(),
            "local_ips",
            json!({"network_id": net, "ip_mode": "bogus"}),
        )
        .await,
        400,
        "HTTPBadRequest",
    );
    // Another project's port is not found.
    assert_err(
        t.create(
            &other_tenant(),
            "local_ips",
            json!({"local_port_id": id(&port)}),
        )
        .await,
        400,
        "BadRequest",
    );
    let lip = t
        .ok(
            &tenant(),
            "local_ips",
            json!({"local_port_id": id(&port), "local_ip_address": ips[1]}),
        )
        .await;
    assert_eq!(lip["local_ip_address"], json!(ips[1]));
    assert_eq!(lip["network_id"], json!(net));
    assert_err(
        t.delete(&tenant(), "ports", &id(&port)).await,
        409,
        "ServicePortInUse",
    );
    // The Local IP goes; the port it used stays, and can go now.
    t.delete(&tenant(), "local_ips", &id(&lip)).await.unwrap();
    t.show(&tenant(), "ports", &id(&port)).await.unwrap();
    t.delete(&tenant(), "ports", &id(&port)).await.unwrap();
    // A network without an IPv4 subnet holds no Local IP.
    let bare = id(&t.ok(&tenant(), "networks", json!({})).await);
    assert_err(
        t.create(&tenant(), "local_ips", json!({"network_id": bare}))
            .await,
        400,
        "BadRequest",
    );
}

#[tokio::test]
async fn associations_are_named_by_their_port_and_hold_the_local_ip() {
    let t = env().await;
    let (net, sub) = t.net(&tenant(), json!({}), "10.72.0.0/24").await;
    let lip = id(&t
        .ok(&tenant(), "local_ips", json!({"network_id": net}))
        .await);
    let port = t
        .ok(
            &admin(),
            "ports",
            json!({"network_id": net, "binding:host_id": "h1", "project_id": "project-a"}),
        )
        .await;
    let a = associate(&t, &tenant(), &lip, json!({"fixed_port_id": id(&port)}))
        .await
        .unwrap();
    let lip_doc = t.show(&tenant(), "local_ips", &lip).await.unwrap();
    assert_eq!(a["local_ip_id"], json!(lip));
    assert_eq!(a["fixed_port_id"], port["id"]);
    assert_eq!(a["fixed_ip"], port["fixed_ips"][0]["ip_address"]);
    assert_eq!(a["local_ip_address"], lip_doc["local_ip_address"]);
    assert_eq!(a["host"], "h1");
    assert!(a.get("id").is_none());
    // Shown and listed under the Local IP by the port's id.
    let c = coll("port_associations");
    let shown = t
        .app
        .show_in(&tenant(), c, Some(&lip), &id(&port), &[])
        .await
        .unwrap();
    assert_eq!(shown["fixed_port_id"], port["id"]);
    let listed = t
        .app
        .list_in(&tenant(), c, Some(&lip), &[])
        .await
        .unwrap()
        .items;
    assert_eq!(listed.len(), 1);
    // Once per Local IP and port; an address not the port's is refused.
    assert_err(
        associate(&t, &tenant(), &lip, json!({"fixed_port_id": id(&port)})).await,
        409,
        "Conflict",
    );
    let other = t
        .ok(
            &tenant(),
            "ports",
            json!({"network_id": net, "fixed_ips": [{"subnet_id": sub}]}),
        )
        .await;
    // Addresses are allocated at random: pick one that is surely not the port's.
    let not_its_ip = if other["fixed_ips"][0]["ip_address"] == "10.72.0.251" {
        "10.72.0.252"
    } else {
        "10.72.0.251"
    };
    assert_err(
        associate(
            &t,
            &tenant(),
            &lip,
            json!({"fixed_port_id": id(&other), "fixed_ip": not_its_ip}),
        )
        .await,
        400,
        "LocalIPRequestedIPNotFound",
    );
    // Another project sees neither the Local IP nor its associations.
    assert_err(
        t.app
            .show_in(&other_tenant(), c, Some(&lip), &id(&port), &[])
            .await,
        404,
        "LocalIPNotFound",
    );
    // In use while associated; the port going away takes the association along.
    assert_err(
        t.delete(&tenant(), "local_ips", &lip).await,
        409,
        "LocalIPInUse",
    );
    t.delete(&tenant(), "ports", &id(&port)).await.unwrap();
    assert_err(
        t.app
            .show_in(&tenant(), c, Some(&lip), &id(&port), &[])
            .await,
        404,
        "LocalIPAssociationNotFound",
    );
    // Deleted by the port's id.
    associate(&t, &tenant(), &lip, json!({"fixed_port_id": id(&other)}))
        .await
        .unwrap();
    t.app
        .delete_in(&tenant(), c, Some(&lip), &id(&other), None)
        .await
        .unwrap();
    t.delete(&tenant(), "local_ips", &lip).await.unwrap();
}
