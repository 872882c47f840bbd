//! Floating IP port forwarding through the application API: the life cycle, what the
//! floating IP shows and allows meanwhile, collisions, ranges, the rules on the internal
//! port, and concurrent creates that race for one external port.

use crate::common::*;
use serde_json::{json, Value};

fn pfs() -> &'static Collection {
    Collection::child("floatingips", "port_forwardings").unwrap()
}

struct Lab {
    t: Env,
    ext: String,
    net: String,
    router: String,
}

impl Lab {
    async fn new() -> Lab {
        let t = env().await;
        let (ext, _) = t.external().await;
        let (net, sub) = t.net(&tenant(), json!({}), "10.0.0.0/24").await;
        let router = t.router_between(&ext, &sub).await;
        Lab {
            t,
            ext,
            net,
            router,
        }
    }

    async fn fip(&self) -> Value {
        self.t
            .ok(
                &tenant(),
                "floatingips",
                json!({"floating_network_id": self.ext}),
            )
            .await
    }

    async fn port(&self) -> (String, String) {
        let p = self
            .t
            .ok(&tenant(), "ports", json!({"network_id": self.net}))
            .await;
        let ip = p["fixed_ips"][0]["ip_address"]
            .as_str()
            .unwrap()
            .to_string();
        (id(&p), ip)
    }

    async fn forward(&self, ctx: &Context, fip: &str, body: Value) -> Result<Value, ApiError> {
        let mut out = self
            .t
            .app
            .create_in(ctx, pfs(), Some(fip), vec![doc(body)])
            .await?;
        Ok(Value::Object(out.pop().unwrap()))
    }

    async fn list(&self, fip: &str) -> Vec<Value> {
        let page = self
            .t
            .app
            .list_in(&tenant(), pfs(), Some(fip), &[])
            .await
            .unwrap();
        page.items.into_iter().map(Value::Object).collect()
    }
}

fn tcp(port: &str, ip: &str, internal: u16, external: u16) -> Value {
    json!({"internal_port_id": port, "internal_ip_address": ip, "internal_port": internal,
           "external_port": external, "protocol": "tcp"})
}

#[tokio::test]
async fn life_cycle_and_what_the_floating_ip_shows() {
    let l = Lab::new().await;
    let fip = l.fip().await;
    let fid = id(&fip);
    assert_eq!(fip["port_forwardings"], json!([]));
    let (port, ip) = l.port().await;
    let pf = l
        .forward(
            &tenant(),
            &fid,
            json!({"internal_port_id": port, "internal_ip_address": ip,
            "internal_port": 22, "external_port": 2222, "protocol": "tcp", "description": "ssh"}),
        )
        .await
        .unwrap();
    assert_eq!(pf["internal_port"], 22);
    assert_eq!(pf["external_port_range"], "2222:2222");
    assert_eq!(pf["description"], "ssh");
    for hidden in ["floatingip_id", "project_id", "tenant_id"] {
        assert!(pf.get(hidden).is_none(), "{hidden} shown: {pf}");
    }
    assert_eq!(l.list(&fid).await, vec![pf.clone()]);
    // The floating IP now goes through the router, and lists the forwarding.
    let shown = l.t.show(&tenant(), "floatingips", &fid).await.unwrap();
    assert_eq!(shown["router_id"], json!(l.router));
    assert_eq!(
        shown["port_forwardings"],
        json!([{"id": pf["id"], "internal_port_id": port, "internal_ip_address": ip,
                "internal_port": 22, "external_port": 2222, "protocol": "tcp"}])
    );
    // Neither deleted nor associated with a port while it forwards; a disassociation
    // changes nothing.
    assert_err(
        l.t.delete(&tenant(), "floatingips", &fid).await,
        409,
        "FipInUseByPortForwarding",
    );
    let (other, _) = l.port().await;
    assert_err(
        l.t.update(&tenant(), "floatingips", &fid, json!({"port_id": other}))
            .await,
        409,
        "FipInUseByPortForwarding",
    );
    let same =
        l.t.update(&tenant(), "floatingips", &fid, json!({"port_id": null}))
            .await
            .unwrap();
    assert_eq!(same["router_id"], json!(l.router));
    // Update the internal port number: both forms follow.
    let up =
        l.t.app
            .update_in(
                &tenant(),
                pfs(),
                Some(&fid),
                &id(&pf),
                doc(json!({"internal_port": 3333})),
                None,
            )
            .await
            .unwrap();
    assert_eq!(
        (
            up["internal_port"].clone(),
            up["internal_port_range"].clone()
        ),
        (json!(3333), json!("3333:3333"))
    );
    // Another project sees none of it.
    let hidden =
        l.t.app
            .list_in(&other_tenant(), pfs(), Some(&fid), &[])
            .await;
    assert_err(hidden, 404, "FloatingIPNotFound");
    // Delete: the floating IP is free again.
    l.t.app
        .delete_in(&tenant(), pfs(), Some(&fid), &id(&pf), None)
        .await
        .unwrap();
    let e =
        l.t.app
            .show_in(&tenant(), pfs(), Some(&fid), &id(&pf), &[])
            .await;
    assert_err(e, 404, "PortForwardingNotFound");
    let shown = l.t.show(&tenant(), "floatingips", &fid).await.unwrap();
    assert_eq!(shown["router_id"], Value::Null);
    l.t.delete(&tenant(), "floatingips", &fid).await.unwrap();
}

#[tokio::test]
async fn collisions_outside_and_inside_are_refused() {
    let l = Lab::new().await;
    let fid = id(&l.fip().await);
    let (p1, ip1) = l.port().await;
    let (p2, ip2) = l.port().await;
    l.forward(&tenant(), &fid, tcp(&p1, &ip1, 1111, 2222))
        .await
        .unwrap();
    // The same external port to another destination.
    assert_err(
        l.forward(&tenant(), &fid, tcp(&p2, &ip2, 3333, 2222)).await,
        400,
        "BadRequest",
    );
    // Another external port to the same destination.
    assert_err(
        l.forward(&tenant(), &fid, tcp(&p1, &ip1, 1111, 5555)).await,
        400,
        "BadRequest",
    );
    // The other protocol may use both.
    let mut udp = tcp(&p1, &ip1, 1111, 2222);
    udp["protocol"] = json!("udp");
    l.forward(&tenant(), &fid, udp).await.unwrap();
    // A range overlapping the external port; then one beside it, to one internal port.
    let range = json!({"internal_port_id": p2, "internal_ip_address": ip2, "internal_port": 80,
                       "external_port_range": "2220:2230", "protocol": "tcp"});
    assert_err(l.forward(&tenant(), &fid, range).await, 400, "BadRequest");
    let range = json!({"internal_port_id": p2, "internal_ip_address": ip2, "internal_port": 80,
                       "external_port_range": "3000:3010", "protocol": "tcp"});
    let pf = l.forward(&tenant(), &fid, range).await.unwrap();
    assert_eq!(
        (pf["external_port"].clone(), pf["internal_port"].clone()),
        (Value::Null, json!(80))
    );
    // N-M ranges and port 0 are refused.
    let bad = json!({"internal_port_id": p2, "internal_ip_address": ip2,
                     "internal_port_range": "90:95", "external_port_range": "4000:4010", "protocol": "tcp"});
    assert_err(l.forward(&tenant(), &fid, bad).await, 400, "BadRequest");
    assert_err(
        l.forward(&tenant(), &fid, tcp(&p2, &ip2, 0, 4444)).await,
        400,
        "HTTPBadRequest",
    );
}

#[tokio::test]
async fn the_floating_ip_and_the_internal_port_must_be_free() {
    let l = Lab::new().await;
    // A floating IP associated with a port takes no forwarding.
    let (p1, ip1) = l.port().await;
    let used =
        l.t.ok(
            &tenant(),
            "floatingips",
            json!({"floating_network_id": l.ext, "port_id": p1}),
        )
        .await;
    let (p2, ip2) = l.port().await;
    assert_err(
        l.forward(&tenant(), &id(&used), tcp(&p2, &ip2, 1, 2)).await,
        409,
        "FloatingIPPortAlreadyAssociated",
    );
    // A port with a floating IP of its own takes none either.
    let fid = id(&l.fip().await);
    assert_err(
        l.forward(&tenant(), &fid, tcp(&p1, &ip1, 1, 2)).await,
        409,
        "PortHasBindingFloatingIP",
    );
    // The address must be the port's (p2's is random: take one no port has); the port must
    // exist.
    let not_its_ip = l.t.free_address(&["10.0.0.250", "10.0.0.251"]).await;
    assert_err(
        l.forward(&tenant(), &fid, tcp(&p2, &not_its_ip, 1, 2))
            .await,
        400,
        "BadRequest",
    );
    let missing = "00000000-0000-4000-8000-000000000000";
    assert_err(
        l.forward(&tenant(), &fid, tcp(missing, &ip2, 1, 2)).await,
        404,
        "PortNotFound",
    );
    // A port on a network no router connects to the external network.
    let (lone, _) = l.t.net(&tenant(), json!({}), "10.9.0.0/24").await;
    let p =
        l.t.ok(&tenant(), "ports", json!({"network_id": lone}))
            .await;
    let ip = p["fixed_ips"][0]["ip_address"]
        .as_str()
        .unwrap()
        .to_string();
    assert_err(
        l.forward(&tenant(), &fid, tcp(&id(&p), &ip, 1, 2)).await,
        400,
        "BadRequest",
    );
}

#[tokio::test]
async fn a_deleted_port_or_a_removed_address_takes_its_forwardings() {
    let l = Lab::new().await;
    let fid = id(&l.fip().await);
    let (p1, ip1) = l.port().await;
    let (p2, ip2) = l.port().await;
    l.forward(&tenant(), &fid, tcp(&p1, &ip1, 22, 2201))
        .await
        .unwrap();
    l.forward(&tenant(), &fid, tcp(&p2, &ip2, 22, 2202))
        .await
        .unwrap();
    l.t.delete(&tenant(), "ports", &p1).await.unwrap();
    assert_eq!(l.list(&fid).await.len(), 1);
    // p2 moves to another address (its own is random: take one no port has): its forwarding
    // goes, and the floating IP is free.
    let elsewhere = l.t.free_address(&["10.0.0.77", "10.0.0.78"]).await;
    l.t.update(
        &tenant(),
        "ports",
        &p2,
        json!({"fixed_ips": [{"ip_address": elsewhere}]}),
    )
    .await
    .unwrap();
    assert!(l.list(&fid).await.is_empty());
    let shown = l.t.show(&tenant(), "floatingips", &fid).await.unwrap();
    assert_eq!(shown["router_id"], Value::Null);
    l.t.delete(&tenant(), "floatingips", &fid).await.unwrap();
    let problems = neutrino_app::consistency::check_store(&l.t.store)
        .await
        .unwrap();
    assert!(problems.is_empty(), "{problems:?}");
}

#[tokio::test]
async fn concurrent_creates_never_share_an_external_port() {
    let l = Lab::new().await;
    let fid = id(&l.fip().await);
    let mut ports = Vec::new();
    for _ in 0..8 {
        ports.push(l.port().await);
    }
    let app = l.t.app.clone();
    let mut tasks = Vec::new();
    for (port, ip) in ports {
        let app = app.clone();
        let fid = fid.clone();
        tasks.push(tokio::spawn(async move {
            app.create_in(
                &tenant(),
                pfs(),
                Some(&fid),
                vec![doc(tcp(&port, &ip, 22, 2222))],
            )
            .await
        }));
    }
    let mut won = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(_) => won += 1,
            Err(e) => assert!(e.status == 400 || e.status == 409, "{e}"),
        }
    }
    assert_eq!(won, 1);
    assert_eq!(l.list(&fid).await.len(), 1);
}
