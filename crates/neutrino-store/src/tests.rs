//! The storage suite; every test runs on SQLite and, when `NEUTRINO_TEST_PG_URL` names a
//! PostgreSQL database, on PostgreSQL too.

use serde_json::json;

use super::*;

async fn stores() -> Vec<(Store, Option<tempfile::TempDir>)> {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("t.db").display());
    let mut out = vec![(Store::open(&url).await.unwrap(), Some(dir))];
    if let Ok(pg) = std::env::var("NEUTRINO_TEST_PG_URL") {
        out.push((Store::open(&pg).await.unwrap(), None));
    } else {
        eprintln!("skip PostgreSQL: NEUTRINO_TEST_PG_URL is not set");
    }
    out
}

fn unique(tag: &str) -> String {
    format!("{tag}-{}", std::process::id())
        + &format!("-{:?}", std::time::Instant::now()).replace([' ', '.', ':'], "")
}

#[tokio::test]
async fn insert_get_list_update_delete() {
    for (store, _dir) in stores().await {
        let project = unique("p");
        let net = unique("net");
        let mut tx = store.begin().await.unwrap();
        for (i, id) in [net.clone(), format!("{net}-b")].iter().enumerate() {
            tx.insert(&Record {
                kind: "network".into(),
                id: id.clone(),
                project_id: project.clone(),
                parent_id: None,
                body: json!({"id": id, "n": i}),
            })
            .await
            .unwrap();
        }
        tx.commit().await.unwrap();

        let mut tx = store.read().await.unwrap();
        let got = tx.get("network", &net).await.unwrap().unwrap();
        assert_eq!(got.body["n"], 0);
        let sel = Selector {
            project_ids: Some(vec![project.clone()]),
            ..Default::default()
        };
        let all = tx.list("network", &sel).await.unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].id, net, "creation order");
        assert_eq!(tx.count_owned("network", &project).await.unwrap(), 2);
        drop(tx);

        let mut tx = store.begin().await.unwrap();
        assert!(tx
            .update("network", &net, &json!({"id": net, "n": 7}))
            .await
            .unwrap());
        assert!(tx.delete("network", &format!("{net}-b")).await.unwrap());
        assert!(!tx.delete("network", "missing").await.unwrap());
        tx.commit().await.unwrap();
        let mut tx = store.read().await.unwrap();
        assert_eq!(tx.get("network", &net).await.unwrap().unwrap().body["n"], 7);
        assert_eq!(tx.list("network", &sel).await.unwrap().len(), 1);
    }
}

#[tokio::test]
async fn rollback_on_drop_leaves_nothing() {
    for (store, _dir) in stores().await {
        let id = unique("gone");
        let mut tx = store.begin().await.unwrap();
        tx.insert(&Record {
            kind: "port".into(),
            id: id.clone(),
            project_id: "p".into(),
            parent_id: Some("n".into()),
            body: json!({}),
        })
        .await
        .unwrap();
        assert!(tx.claim("ip:s", &id, &id).await.unwrap());
        drop(tx);
        let mut tx = store.read().await.unwrap();
        assert!(tx.get("port", &id).await.unwrap().is_none());
        assert_eq!(tx.claim_owner("ip:s", &id).await.unwrap(), None);
    }
}

#[tokio::test]
async fn claims_are_unique_and_ordered() {
    for (store, _dir) in stores().await {
        let scope = unique("ip");
        let mut tx = store.begin().await.unwrap();
        assert!(tx.claim(&scope, "0a", "p1").await.unwrap());
        assert!(
            !tx.claim(&scope, "0a", "p2").await.unwrap(),
            "second claim refused"
        );
        assert!(tx.claim(&scope, "0c", "p2").await.unwrap());
        assert!(tx.claim(&scope, "0b", "p2").await.unwrap());
        tx.commit().await.unwrap();
        let mut tx = store.begin().await.unwrap();
        assert_eq!(
            tx.claimed_keys(&scope, "0b", None, 10).await.unwrap(),
            vec!["0b", "0c"]
        );
        assert_eq!(
            tx.claimed_keys(&scope, "0a", Some("0c"), 10).await.unwrap(),
            vec!["0a", "0b"]
        );
        assert_eq!(
            tx.claimed_keys(&scope, "0a", None, 1).await.unwrap(),
            vec!["0a"]
        );
        assert_eq!(
            tx.claim_owner(&scope, "0a").await.unwrap().as_deref(),
            Some("p1")
        );
        tx.release_owned(&scope, "p2").await.unwrap();
        assert_eq!(tx.count_claims(&scope).await.unwrap(), 1);
        tx.commit().await.unwrap();
    }
}

#[tokio::test]
async fn concurrent_claims_have_one_winner() {
    for (store, _dir) in stores().await {
        let scope = unique("mac");
        let mut tasks = Vec::new();
        for i in 0..8 {
            let store = store.clone();
            let scope = scope.clone();
            tasks.push(tokio::spawn(async move {
                let mut tx = store.begin().await.unwrap();
                let won = tx
                    .claim(&scope, "fa:16:3e:00:00:01", &format!("o{i}"))
                    .await
                    .unwrap();
                tx.commit().await.unwrap();
                won
            }));
        }
        let mut winners = 0;
        for t in tasks {
            winners += t.await.unwrap() as usize;
        }
        assert_eq!(winners, 1);
    }
}

#[tokio::test]
async fn quotas_and_settings() {
    for (store, _dir) in stores().await {
        let project = unique("q");
        let mut tx = store.begin().await.unwrap();
        tx.set_quota(&project, "network", 5).await.unwrap();
        tx.set_quota(&project, "network", 7).await.unwrap();
        tx.set_quota(&project, "port", -1).await.unwrap();
        assert_eq!(
            tx.quotas(&project).await.unwrap(),
            vec![("network".to_string(), 7), ("port".to_string(), -1)]
        );
        assert!(tx.quota_projects().await.unwrap().contains(&project));
        tx.delete_quotas(&project).await.unwrap();
        assert!(tx.quotas(&project).await.unwrap().is_empty());
        let key = unique("k");
        assert_eq!(tx.setting_or_insert(&key, "a").await.unwrap(), "a");
        assert_eq!(tx.setting_or_insert(&key, "b").await.unwrap(), "a");
        tx.commit().await.unwrap();
    }
}

#[tokio::test]
async fn reopen_keeps_data_and_schema() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("t.db").display());
    let store = Store::open(&url).await.unwrap();
    let mut tx = store.begin().await.unwrap();
    tx.set_quota("p", "network", 3).await.unwrap();
    tx.commit().await.unwrap();
    store.close().await;
    let store = Store::open(&url).await.unwrap();
    let mut tx = store.read().await.unwrap();
    assert_eq!(tx.quotas("p").await.unwrap().len(), 1);
}

/// Writers dropped after writing (rolled back) must not make concurrent writers that read
/// first and then write fail with "database is locked".
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dropped_writers_do_not_break_concurrent_ones() {
    for (store, _dir) in stores().await {
        let scope = unique("drop");
        let mut tasks = Vec::new();
        for t in 0..8 {
            let store = store.clone();
            let scope = scope.clone();
            tasks.push(tokio::spawn(async move {
                for round in 0..40 {
                    let key = format!("{t}-{round}");
                    let mut tx = store.begin().await.unwrap();
                    tx.count_claims(&scope).await.unwrap();
                    tx.claim(&scope, &key, "o").await.unwrap();
                    if round % 2 == 0 {
                        drop(tx);
                    } else {
                        tx.commit().await.unwrap();
                    }
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let mut tx = store.read().await.unwrap();
        assert_eq!(tx.count_claims(&scope).await.unwrap(), 8 * 20);
    }
}
