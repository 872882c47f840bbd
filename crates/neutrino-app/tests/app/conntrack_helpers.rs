//! Router conntrack helpers with Neutron's rules: the allowed helpers and their protocols,
//! duplicates, the router's `conntrack_helpers`, cleanup with the router, and the router
//! owner's policy.

use crate::common::*;
use neutrino_app::Context;
use serde_json::{json, Value};

fn helpers() -> &'static neutrino_app::Collection {
    neutrino_app::Collection::child("routers", "conntrack_helpers").unwrap()
}

async fn add(t: &Env, ctx: &Context, router: &str, body: Value) -> Result<Value, ApiError> {
    let mut out = t
        .app
        .create_in(ctx, helpers(), Some(router), vec![doc(body)])
        .await?;
    Ok(Value::Object(out.pop().unwrap()))
}

#[tokio::test]
async fn helpers_of_a_router() {
    let t = env().await;
    let router = id(&t.ok(&tenant(), "routers", json!({"name": "r"})).await);
    assert_eq!(
        t.show(&tenant(), "routers", &router).await.unwrap()["conntrack_helpers"],
        json!([])
    );
    let tftp = add(
        &t,
        &tenant(),
        &router,
        json!({"helper": "tftp", "protocol": "udp", "port": 69}),
    )
    .await
    .unwrap();
    let mut keys: Vec<&String> = tftp.as_object().unwrap().keys().collect();
    keys.sort();
    assert_eq!(keys, ["helper", "id", "port", "protocol", "router_id"]);
    assert_eq!(tftp["router_id"], router.as_str());
    let ftp = add(
        &t,
        &tenant(),
        &router,
        json!({"helper": "ftp", "protocol": "tcp", "port": 21}),
    )
    .await
    .unwrap();
    // Not allowed, wrong protocol, duplicate, bad port.
    let r = add(
        &t,
        &tenant(),
        &router,
        json!({"helper": "foo", "protocol": "tcp", "port": 1}),
    )
    .await;
    assert_err(r, 400, "ConntrackHelperNotAllowed");
    let r = add(
        &t,
        &tenant(),
        &router,
        json!({"helper": "tftp", "protocol": "tcp", "port": 1}),
    )
    .await;
    assert_err(r, 400, "InvalidProtocolForHelper");
    let r = add(
        &t,
        &tenant(),
        &router,
        json!({"helper": "tftp", "protocol": "udp", "port": 69}),
    )
    .await;
    assert_eq!(r.unwrap_err().status, 400);
    let r = add(
        &t,
        &tenant(),
        &router,
        json!({"helper": "tftp", "protocol": "udp", "port": 0}),
    )
    .await;
    assert_eq!(r.unwrap_err().status, 400);
    let shown = t.show(&tenant(), "routers", &router).await.unwrap();
    assert_eq!(
        shown["conntrack_helpers"],
        json!([{"protocol": "udp", "port": 69, "helper": "tftp"},
               {"protocol": "tcp", "port": 21, "helper": "ftp"}])
    );
    // Update: the merged helper is checked again.
    let hid = id(&tftp);
    let up = t
        .app
        .update_in(
            &tenant(),
            helpers(),
            Some(&router),
            &hid,
            doc(json!({"port": 6969})),
            None,
        )
        .await
        .unwrap();
    assert_eq!(up["port"], 6969);
    let r = t
        .app
        .update_in(
            &tenant(),
            helpers(),
            Some(&router),
            &hid,
            doc(json!({"helper": "ftp"})),
            None,
        )
        .await;
    assert_err(r, 400, "InvalidProtocolForHelper");
    let r = t
        .app
        .update_in(
            &tenant(),
            helpers(),
            Some(&router),
            &hid,
            doc(json!({"helper": "ftp", "protocol": "tcp", "port": 21})),
            None,
        )
        .await;
    assert_eq!(r.unwrap_err().status, 400);
    // Another project neither sees nor writes them; the router's reader reads them.
    let page = t
        .app
        .list_in(&tenant(), helpers(), Some(&router), &[])
        .await
        .unwrap();
    assert_eq!(page.items.len(), 2);
    let r = t
        .app
        .list_in(&other_tenant(), helpers(), Some(&router), &[])
        .await;
    assert_eq!(r.unwrap_err().status, 404);
    let r = add(
        &t,
        &other_tenant(),
        &router,
        json!({"helper": "sip", "protocol": "udp", "port": 5060}),
    )
    .await;
    assert_eq!(r.unwrap_err().status, 404);
    // Delete one; the router's deletion takes the other.
    t.app
        .delete_in(&tenant(), helpers(), Some(&router), &hid, None)
        .await
        .unwrap();
    let r = t
        .app
        .show_in(&tenant(), helpers(), Some(&router), &hid, &[])
        .await;
    assert_err(r, 404, "ConntrackHelperNotFound");
    t.delete(&tenant(), "routers", &router).await.unwrap();
    let mut tx = t.store.begin().await.unwrap();
    let left = tx
        .list("conntrack_helper", &Default::default())
        .await
        .unwrap();
    assert!(left.iter().all(|r| r.id != id(&ftp)) && left.is_empty());
}
