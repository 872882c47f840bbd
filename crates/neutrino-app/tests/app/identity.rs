//! The built-in Keystone's role assignment listing: filters, `effective` (implied roles) and
//! `include_names` (what `openstack role assignment list --names` reads).

use crate::common::*;
use serde_json::{json, Value};

async fn assignments(t: &Env, filters: &[(&str, &str)]) -> Vec<Value> {
    let out = t
        .app
        .list_role_assignments(&admin(), &query(filters), IDENTITY_BASE)
        .await
        .unwrap();
    out["role_assignments"].as_array().unwrap().clone()
}

#[tokio::test]
async fn role_assignments_with_names_and_effective_roles() {
    let t = env().await;
    t.app.bootstrap(Some("secret")).await.unwrap();
    let bob = make_identity(&t, "users", "user", "bob").await;
    let proj = make_identity(&t, "projects", "project", "bobs").await;
    let member = role_id(&t, "member").await;
    let reader = role_id(&t, "reader").await;
    t.app
        .grant_role(&admin(), &proj, &bob, &member)
        .await
        .unwrap();

    // Ids only, as before.
    let plain = assignments(&t, &[("user.id", &bob)]).await;
    assert_eq!(
        plain,
        vec![json!({
            "role": {"id": member},
            "user": {"id": bob},
            "scope": {"project": {"id": proj}},
            "links": {"assignment": format!("{IDENTITY_BASE}/v3/projects/{proj}/users/{bob}/roles/{member}")},
        })]
    );
    // include_names: names, and the domain of the user and the project (roles are global).
    let named = assignments(&t, &[("user.id", &bob), ("include_names", "True")]).await;
    let domain = json!({"id": "default", "name": "Default"});
    assert_eq!(named.len(), 1);
    assert_eq!(named[0]["role"], json!({"id": member, "name": "member"}));
    assert_eq!(
        named[0]["user"],
        json!({"id": bob, "name": "bob", "domain": domain})
    );
    assert_eq!(
        named[0]["scope"]["project"],
        json!({"id": proj, "name": "bobs", "domain": domain})
    );
    // Keystone's false values leave the ids alone.
    for off in ["0", "false", "False"] {
        let out = assignments(&t, &[("user.id", &bob), ("include_names", off)]).await;
        assert_eq!(out, plain, "include_names={off}");
    }

    // effective: member implies reader, listed with the role it comes from.
    let eff = assignments(&t, &[("scope.project.id", &proj), ("effective", "")]).await;
    let roles: Vec<&Value> = eff.iter().map(|a| &a["role"]["id"]).collect();
    assert_eq!(roles, vec![&json!(member), &json!(reader)]);
    assert_eq!(
        eff[1]["links"]["prior_role"],
        json!(format!("{IDENTITY_BASE}/v3/roles/{member}"))
    );
    let eff_reader = assignments(
        &t,
        &[
            ("user.id", &bob),
            ("effective", "true"),
            ("role.id", &reader),
        ],
    )
    .await;
    assert_eq!(eff_reader.len(), 1);
    assert!(assignments(&t, &[("user.id", &bob), ("role.id", &reader)])
        .await
        .is_empty());

    // Every assignment is on a project: group, domain and inherited filters match nothing.
    for filter in [
        ("scope.domain.id", "default"),
        ("group.id", "g"),
        ("scope.OS-INHERIT:inherited_to", "projects"),
    ] {
        assert!(
            assignments(&t, &[("user.id", &bob), filter])
                .await
                .is_empty(),
            "{filter:?}"
        );
    }

    // A deleted role takes its assignments along (no dangling ids without names).
    let custom = make_identity(&t, "roles", "role", "custom").await;
    t.app
        .grant_role(&admin(), &proj, &bob, &custom)
        .await
        .unwrap();
    assert_eq!(assignments(&t, &[("user.id", &bob)]).await.len(), 2);
    t.app
        .identity_delete(&admin(), "roles", &custom)
        .await
        .unwrap();
    assert_eq!(assignments(&t, &[("user.id", &bob)]).await, plain);
}
