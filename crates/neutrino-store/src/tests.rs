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

/// Listings come in creation order whichever index serves the query: children of parents
/// whose ids sort the other way round than they were created, with and without a parent
/// filter.
#[tokio::test]
async fn listings_keep_creation_order_across_parents() {
    for (store, _dir) in stores().await {
        let kind = unique("ordered");
        let parents = ["z-parent", "a-parent"];
        let mut tx = store.begin().await.unwrap();
        for i in 0..6 {
            let id = format!("{kind}-{i}");
            tx.insert(&Record {
                kind: kind.clone(),
                id: id.clone(),
                project_id: format!("p{}", 5 - i),
                parent_id: Some(parents[i % 2].to_string()),
                body: json!({"id": id}),
            })
            .await
            .unwrap();
        }
        tx.commit().await.unwrap();
        let mut tx = store.read().await.unwrap();
        let want: Vec<String> = (0..6).map(|i| format!("{kind}-{i}")).collect();
        let ids = |records: Vec<Record>| records.into_iter().map(|r| r.id).collect::<Vec<_>>();
        let all = tx.list(&kind, &Selector::default()).await.unwrap();
        assert_eq!(ids(all), want);
        let sel = Selector {
            parent_ids: Some(parents.iter().map(|p| p.to_string()).collect()),
            ..Default::default()
        };
        assert_eq!(ids(tx.list(&kind, &sel).await.unwrap()), want);
        let sel = Selector {
            project_ids: Some((0..6).map(|i| format!("p{i}")).collect()),
            ..Default::default()
        };
        assert_eq!(ids(tx.list(&kind, &sel).await.unwrap()), want);
    }
}

#[tokio::test]
async fn ports_are_selected_by_role_under_their_network() {
    for (store, _dir) in stores().await {
        let net = unique("rolenet");
        let port = |id: &str, owner: Option<&str>| Record {
            kind: "port".into(),
            id: id.into(),
            project_id: "p".into(),
            parent_id: Some(net.clone()),
            body: match owner {
                Some(o) => json!({"id": id, "device_owner": o}),
                None => json!({"id": id}),
            },
        };
        let (gw, vm, bare) = (format!("{net}-gw"), format!("{net}-vm"), format!("{net}-x"));
        let mut tx = store.begin().await.unwrap();
        tx.insert(&port(&gw, Some("network:router_gateway")))
            .await
            .unwrap();
        tx.insert(&port(&vm, Some("compute:nova"))).await.unwrap();
        tx.insert(&port(&bare, None)).await.unwrap();
        tx.commit().await.unwrap();
        let by_role = |roles: &[&str]| Selector {
            parent_ids: Some(vec![net.clone()]),
            roles: Some(roles.iter().map(|r| r.to_string()).collect()),
            ..Default::default()
        };
        let ids = |recs: Vec<Record>| recs.into_iter().map(|r| r.id).collect::<Vec<_>>();
        let mut tx = store.read().await.unwrap();
        let found = tx.list("port", &by_role(&["network:router_gateway"])).await;
        assert_eq!(ids(found.unwrap()), vec![gw.clone()]);
        drop(tx);
        // An update that changes the owner moves the port to its new role.
        let mut tx = store.begin().await.unwrap();
        tx.update(
            "port",
            &vm,
            &json!({"id": vm, "device_owner": "network:router_gateway"}),
        )
        .await
        .unwrap();
        tx.commit().await.unwrap();
        let mut tx = store.read().await.unwrap();
        let found = tx
            .list("port", &by_role(&["network:router_gateway", "x"]))
            .await;
        assert_eq!(ids(found.unwrap()), vec![gw, vm]);
        assert!(tx
            .list("port", &by_role(&["compute:nova"]))
            .await
            .unwrap()
            .is_empty());
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
async fn claims_in_several_ranges_in_one_query() {
    for (store, _dir) in stores().await {
        let scope = unique("idx");
        let mut tx = store.begin().await.unwrap();
        for (key, owner) in [
            ("*/a", "o1"),
            ("0a/08/b", "o2"),
            ("0b/16/c", "o3"),
            ("0c/08/d", "o4"),
        ] {
            assert!(tx.claim(&scope, key, owner).await.unwrap());
        }
        let ranges = [
            ("*/".to_string(), "*0".to_string()),
            ("0b".to_string(), "0b/~".to_string()),
        ];
        let got = tx.claims_in_ranges(&scope, &ranges).await.unwrap();
        let want = [("*/a", "o1"), ("0b/16/c", "o3")];
        assert_eq!(
            got,
            want.map(|(k, o)| (k.to_string(), o.to_string())).to_vec()
        );
        assert!(tx.claims_in_ranges(&scope, &[]).await.unwrap().is_empty());
    }
}

#[tokio::test]
async fn lowest_free_number_finds_the_first_gap() {
    for (store, _dir) in stores().await {
        let scope = unique("num");
        let mut tx = store.begin().await.unwrap();
        assert_eq!(tx.lowest_free_number(&scope).await.unwrap(), 1);
        for n in [1, 2, 3, 5, 6, 9] {
            assert!(tx.claim(&scope, &format!("{n:05}"), "o").await.unwrap());
        }
        assert_eq!(tx.lowest_free_number(&scope).await.unwrap(), 4);
        tx.claim(&scope, "00004", "o").await.unwrap();
        assert_eq!(tx.lowest_free_number(&scope).await.unwrap(), 7);
        tx.release(&scope, "00001").await.unwrap();
        assert_eq!(tx.lowest_free_number(&scope).await.unwrap(), 1);
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
async fn applied_revisions_and_port_barriers_are_kept_outside_the_feed() {
    for (store, dir) in stores().await {
        let (h1, h2, port) = (unique("h1"), unique("h2"), unique("port"));
        let mut tx = store.begin().await.unwrap();
        tx.set_applied(&h1, 7, 100).await.unwrap();
        tx.set_applied(&h2, 3, 100).await.unwrap();
        // An agent whose database was replaced reports a lower revision: it is believed.
        tx.set_applied(&h1, 5, 101).await.unwrap();
        tx.put_port_barrier(&port, &h1, 4).await.unwrap();
        tx.put_port_barrier(&port, &h2, 6).await.unwrap();
        assert_eq!(tx.commit_revision().await.unwrap(), None, "not in the feed");
        // Kept across a restart (the SQLite file opened again).
        let store = match &dir {
            Some(d) => Store::open(&format!("sqlite://{}", d.path().join("t.db").display()))
                .await
                .unwrap(),
            None => store,
        };
        let mut tx = store.read().await.unwrap();
        let applied = tx.applied_revisions().await.unwrap();
        assert!(applied.contains(&(h1.clone(), 5)), "{applied:?}");
        assert!(applied.contains(&(h2.clone(), 3)), "{applied:?}");
        let waits = tx.port_barriers().await.unwrap();
        assert!(waits.contains(&(port.clone(), h2.clone(), 6)), "{waits:?}");
        assert_eq!(waits.iter().filter(|w| w.0 == port).count(), 1);
        drop(tx);
        let mut tx = store.begin().await.unwrap();
        tx.delete_port_barrier(&port).await.unwrap();
        tx.commit().await.unwrap();
        let mut tx = store.read().await.unwrap();
        assert!(!tx
            .port_barriers()
            .await
            .unwrap()
            .iter()
            .any(|w| w.0 == port));
    }
}

#[tokio::test]
async fn chain_counters_keep_the_latest_report_per_host_outside_the_feed() {
    for (store, _dir) in stores().await {
        let chain = unique("chain");
        let revision = store.snapshot(&["port_chain"]).await.unwrap().revision;
        let mut tx = store.begin().await.unwrap();
        tx.put_chain_counters(&chain, "h1", 100, "{\"a\":1}")
            .await
            .unwrap();
        tx.put_chain_counters(&chain, "h2", 50, "{}").await.unwrap();
        tx.put_chain_counters(&chain, "h1", 200, "{\"a\":2}")
            .await
            .unwrap();
        assert_eq!(tx.commit_revision().await.unwrap(), None);
        let mut tx = store.read().await.unwrap();
        assert_eq!(
            tx.chain_counters(&chain, 0).await.unwrap(),
            vec![
                ("h1".to_string(), 200, "{\"a\":2}".to_string()),
                ("h2".to_string(), 50, "{}".to_string())
            ]
        );
        assert_eq!(tx.chain_counters(&chain, 51).await.unwrap().len(), 1);
        drop(tx);
        let mut tx = store.begin().await.unwrap();
        tx.delete_chain_counters(&chain).await.unwrap();
        tx.commit().await.unwrap();
        let mut tx = store.read().await.unwrap();
        assert!(tx.chain_counters(&chain, 0).await.unwrap().is_empty());
        assert_eq!(
            store.snapshot(&["port_chain"]).await.unwrap().revision,
            revision
        );
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

fn rec(kind: &str, id: &str, n: i64) -> Record {
    Record {
        kind: kind.into(),
        id: id.into(),
        project_id: "p".into(),
        parent_id: None,
        body: json!({"id": id, "n": n}),
    }
}

/// Every change after `since`, following pages until the end.
async fn follow(store: &Store, mut since: i64, kinds: &[&str]) -> (i64, Vec<Change>) {
    let mut all = Vec::new();
    loop {
        let page = store.changes_since(since, kinds, 7).await.unwrap().unwrap();
        since = page.revision;
        all.extend(page.changes);
        if !page.more {
            return (since, all);
        }
    }
}

#[tokio::test]
async fn feed_records_commits_in_order_with_current_documents() {
    for (store, _dir) in stores().await {
        let a = unique("feed-a");
        let b = unique("feed-b");
        let start = store.current_revision().await.unwrap();
        let mut wake = store.feed().subscribe();

        let mut tx = store.begin().await.unwrap();
        tx.insert(&rec("network", &a, 1)).await.unwrap();
        tx.update("network", &a, &json!({"id": a, "n": 2}))
            .await
            .unwrap();
        tx.insert(&rec("port", &b, 1)).await.unwrap();
        let first = tx.commit_revision().await.unwrap().unwrap();
        assert!(wake.has_changed().unwrap(), "a commit wakes subscribers");
        assert!(*wake.borrow_and_update() >= first);
        assert!(first > start);

        // Reads, claims and rolled-back writes add nothing.
        let mut tx = store.begin().await.unwrap();
        tx.claim("s", &a, "o").await.unwrap();
        assert_eq!(tx.commit_revision().await.unwrap(), None);
        let mut tx = store.begin().await.unwrap();
        tx.delete("port", &b).await.unwrap();
        drop(tx);
        if store.backend() == Backend::Sqlite {
            // (A shared PostgreSQL sees other tests' commits meanwhile.)
            assert_eq!(store.current_revision().await.unwrap(), first);
        }

        let mut tx = store.begin().await.unwrap();
        tx.delete("port", &b).await.unwrap();
        tx.commit().await.unwrap();

        let (end, changes) = follow(&store, start, &[]).await;
        let mine: Vec<_> = changes
            .iter()
            .filter(|c| c.id == a || c.id == b)
            .map(|c| (c.revision, c.kind.as_str(), c.record.is_some()))
            .collect();
        // One entry per resource per commit; documents are current (the port is gone now).
        // (Other tests may commit in between on a shared PostgreSQL.)
        assert_eq!(mine.len(), 3, "{mine:?}");
        assert_eq!(mine[0], (first, "network", true));
        assert_eq!(mine[1], (first, "port", false));
        assert!(mine[2].0 > first && mine[2].1 == "port" && !mine[2].2);
        let net = changes.iter().find(|c| c.id == a).unwrap();
        assert_eq!(net.record.as_ref().unwrap().body["n"], 2);
        assert!(end >= mine[2].0);

        let (_, ports) = follow(&store, start, &["port"]).await;
        assert!(ports.iter().all(|c| c.kind == "port"));
        assert_eq!(ports.iter().filter(|c| c.id == b).count(), 2);

        if store.backend() == Backend::Sqlite {
            // A caught-up reader stays where it is.
            let page = store.changes_since(end, &[], 10).await.unwrap().unwrap();
            assert_eq!(
                (page.revision, page.changes.len(), page.more),
                (end, 0, false)
            );
        }
        // A revision from the future means the database was replaced.
        assert!(store
            .changes_since(end + 1000, &[], 10)
            .await
            .unwrap()
            .is_err());
    }
}

#[tokio::test]
async fn feed_snapshot_then_follow_and_compaction() {
    for (store, _dir) in stores().await {
        let a = unique("snap");
        let mut tx = store.begin().await.unwrap();
        tx.insert(&rec("router", &a, 1)).await.unwrap();
        tx.commit().await.unwrap();
        let snap = store.snapshot(&["router"]).await.unwrap();
        assert!(snap.records["router"].iter().any(|r| r.id == a));
        let mut tx = store.begin().await.unwrap();
        tx.update("router", &a, &json!({"n": 5})).await.unwrap();
        tx.commit().await.unwrap();
        let (_, changes) = follow(&store, snap.revision, &["router"]).await;
        let changes: Vec<_> = changes.into_iter().filter(|c| c.id == a).collect();
        assert_eq!(changes.len(), 1);
        assert_eq!(changes[0].record.as_ref().unwrap().body["n"], 5);

        // Compaction would break the other tests following a shared PostgreSQL's feed.
        if store.backend() != Backend::Sqlite {
            continue;
        }
        let newest = store.current_revision().await.unwrap();
        let point = store.compact_feed(1).await.unwrap();
        assert_eq!(point, newest - 1);
        let err = store
            .changes_since(snap.revision - 1, &[], 10)
            .await
            .unwrap();
        assert!(err.is_err(), "behind the compaction point");
        let page = store.changes_since(point, &[], 10).await.unwrap().unwrap();
        assert_eq!(page.revision, newest);
        // New commits still get fresh revisions after compaction.
        let mut tx = store.begin().await.unwrap();
        tx.delete("router", &a).await.unwrap();
        tx.commit().await.unwrap();
        assert_eq!(store.current_revision().await.unwrap(), newest + 1);
    }
}

/// Concurrent writers (real parallelism on PostgreSQL): revisions are unique, and a reader
/// following the feed while they commit sees every write.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn feed_misses_nothing_under_concurrent_writers() {
    for (store, _dir) in stores().await {
        let tag = unique("conc");
        let start = store.current_revision().await.unwrap();
        let mut writers = Vec::new();
        for w in 0..6 {
            let store = store.clone();
            let tag = tag.clone();
            writers.push(tokio::spawn(async move {
                for i in 0..40 {
                    let mut tx = store.begin().await.unwrap();
                    tx.insert(&rec("port", &format!("{tag}-{w}-{i}"), i))
                        .await
                        .unwrap();
                    tx.commit().await.unwrap();
                }
            }));
        }
        let reader = {
            let store = store.clone();
            let tag = tag.clone();
            tokio::spawn(async move {
                let mut since = start;
                let mut seen = std::collections::BTreeSet::new();
                let mut revisions = std::collections::BTreeSet::new();
                while seen.len() < 240 {
                    let page = store
                        .changes_since(since, &["port"], 50)
                        .await
                        .unwrap()
                        .unwrap();
                    assert!(page.revision >= since);
                    since = page.revision;
                    for c in page.changes {
                        if c.id.starts_with(&tag) {
                            assert!(revisions.insert(c.revision), "one write per revision");
                            seen.insert(c.id);
                        }
                    }
                    tokio::task::yield_now().await;
                }
                seen.len()
            })
        };
        for w in writers {
            w.await.unwrap();
        }
        let seen = tokio::time::timeout(std::time::Duration::from_secs(60), reader)
            .await
            .expect("the reader saw every write")
            .unwrap();
        assert_eq!(seen, 240);
    }
}

async fn sqlite_store() -> (Store, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("t.db").display());
    (Store::open(&url).await.unwrap(), dir)
}

/// Lets the other tasks of a current-thread runtime run until `done` holds.
async fn until(mut done: impl FnMut() -> bool) {
    while !done() {
        tokio::task::yield_now().await;
    }
}

/// Group commit on SQLite: three transactions share one batch; the one that fails rolls back
/// alone (its resource, claim and feed entry vanish), the other two commit with consecutive
/// revisions, and each commit returns only once the batch is committed.
#[tokio::test]
async fn a_failing_member_rolls_back_alone_while_its_batch_commits() {
    let (store, _dir) = sqlite_store().await;
    let writer = store.writer.clone().unwrap();
    let before = writer.commits();

    let mut a = store.begin().await.unwrap();
    a.insert(&rec("port", "a", 1)).await.unwrap();
    a.claim("ip:s", "a", "a").await.unwrap();
    // b and c queue for the writer while a holds it.
    let spawn_member = |id: &'static str, keep: bool| {
        let store = store.clone();
        tokio::spawn(async move {
            let mut tx = store.begin().await.unwrap();
            tx.insert(&rec("port", id, 1)).await.unwrap();
            tx.claim("ip:s", id, id).await.unwrap();
            if keep {
                tx.commit_revision().await.unwrap()
            } else {
                drop(tx); // fails: rolls back to its savepoint
                None
            }
        })
    };
    let b = spawn_member("b", false);
    let c = spawn_member("c", true);
    until(|| writer.queued() == 2).await;
    // a finds b and c waiting: it leaves the batch open for them and waits for the commit.
    let a = tokio::spawn(async move { a.commit_revision().await.unwrap() });
    let (a, b, c) = (a.await.unwrap(), b.await.unwrap(), c.await.unwrap());

    assert_eq!(writer.commits(), before + 1, "a, b and c shared one commit");
    let (a, c) = (a.unwrap(), c.unwrap());
    assert_eq!((b, c), (None, a + 1), "b's feed entry rolled back with it");
    let mut tx = store.read().await.unwrap();
    assert!(tx.get("port", "a").await.unwrap().is_some());
    assert!(tx.get("port", "b").await.unwrap().is_none());
    assert!(tx.get("port", "c").await.unwrap().is_some());
    assert_eq!(
        tx.claimed_keys("ip:s", "", None, 10).await.unwrap(),
        ["a", "c"]
    );
    drop(tx);
    let (_, changes) = follow(&store, 0, &["port"]).await;
    let ids: Vec<_> = changes
        .iter()
        .map(|c| (c.revision, c.id.as_str()))
        .collect();
    assert_eq!(ids, [(a, "a"), (c, "c")]);
}

/// A batch left open for a queued transaction that then goes away (its request was
/// cancelled) is still committed, by the background committer.
#[tokio::test]
async fn a_batch_commits_when_the_queued_member_goes_away() {
    let (store, _dir) = sqlite_store().await;
    let writer = store.writer.clone().unwrap();
    let mut a = store.begin().await.unwrap();
    a.insert(&rec("port", "a", 1)).await.unwrap();
    // Another transaction queues for the writer (polled once, then left waiting).
    let mut queued = Box::pin(store.begin());
    tokio::select! {
        biased;
        _ = &mut queued => panic!("the writer is held by a"),
        _ = std::future::ready(()) => {}
    }
    assert_eq!(writer.queued(), 1);
    // a sees it waiting, leaves the batch open for it and waits for the commit...
    let a = tokio::spawn(async move { a.commit().await });
    for _ in 0..3 {
        tokio::task::yield_now().await;
    }
    assert!(!a.is_finished());
    // ... but it goes away without ever running.
    drop(queued);
    tokio::time::timeout(std::time::Duration::from_secs(60), a)
        .await
        .expect("the committer commits the batch")
        .unwrap()
        .unwrap();
    assert_eq!(writer.queued(), 0);
    let mut tx = store.read().await.unwrap();
    assert!(tx.get("port", "a").await.unwrap().is_some());
}

/// Many concurrent transactions claiming from one scope (batched on SQLite, parallel on
/// PostgreSQL): every key is claimed exactly once, failed claims leave nothing behind, and
/// every committed insert is in the feed once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_claims_under_group_commit_never_duplicate() {
    for (store, _dir) in stores().await {
        let scope = unique("gc");
        let start = store.current_revision().await.unwrap();
        let mut tasks = Vec::new();
        for t in 0..8 {
            let store = store.clone();
            let scope = scope.clone();
            tasks.push(tokio::spawn(async move {
                let mut won = Vec::new();
                for i in 0..30 {
                    // 16 keys for 240 attempts: most attempts find their key taken.
                    let key = format!("{:02}", (t * 7 + i) % 16);
                    let id = format!("{scope}-{t}-{i}");
                    let mut tx = store.begin().await.unwrap();
                    tx.insert(&rec("port", &id, i)).await.unwrap();
                    if tx.claim(&scope, &key, &id).await.unwrap() {
                        tx.commit().await.unwrap();
                        won.push((key, id));
                    }
                }
                won
            }));
        }
        let mut won = Vec::new();
        for t in tasks {
            won.extend(t.await.unwrap());
        }
        let mut keys: Vec<_> = won.iter().map(|(k, _)| k.clone()).collect();
        keys.sort();
        keys.dedup();
        assert_eq!((won.len(), keys.len()), (16, 16), "{won:?}");
        let mut tx = store.read().await.unwrap();
        for (key, id) in &won {
            assert_eq!(
                tx.claim_owner(&scope, key).await.unwrap().as_ref(),
                Some(id)
            );
        }
        let sel = Selector {
            project_ids: Some(vec!["p".into()]),
            ..Default::default()
        };
        let ports = tx.list("port", &sel).await.unwrap();
        let mine = ports.iter().filter(|p| p.id.starts_with(&scope)).count();
        assert_eq!(mine, 16, "losers left no resource behind");
        drop(tx);
        let (_, changes) = follow(&store, start, &["port"]).await;
        let fed = changes.iter().filter(|c| c.id.starts_with(&scope)).count();
        assert_eq!(fed, 16, "every committed insert is in the feed once");
    }
}

/// One commit as [`LocalCommits`] is told of it.
type Commit = (i64, Vec<(String, String)>);

/// Records what [`LocalCommits`] is told.
#[derive(Default)]
struct Told(std::sync::Mutex<Vec<Commit>>);

impl LocalCommits for Told {
    fn committed(&self, revision: i64, touched: &[(String, String)]) {
        self.0.lock().unwrap().push((revision, touched.to_vec()));
    }
}

#[tokio::test]
async fn local_commits_are_told_before_their_revision_is_announced() {
    for (store, _dir) in stores().await {
        let a = unique("local-a");
        let b = unique("local-b");
        let told = Arc::new(Told::default());
        let observer: Arc<dyn LocalCommits> = told.clone();
        store
            .feed()
            .observe_local_commits(Arc::downgrade(&observer));

        let mut tx = store.begin().await.unwrap();
        tx.insert(&rec("network", &a, 1)).await.unwrap();
        tx.insert(&rec("port", &b, 1)).await.unwrap();
        let revision = tx.commit_revision().await.unwrap().unwrap();
        assert!(store.feed().latest() >= revision);
        let expected = vec![
            ("network".to_string(), a.clone()),
            ("port".to_string(), b.clone()),
        ];
        assert_eq!(*told.0.lock().unwrap(), vec![(revision, expected)]);

        // No revision, nothing told: a commit that wrote no resource, a rollback.
        let tx = store.begin().await.unwrap();
        assert_eq!(tx.commit_revision().await.unwrap(), None);
        let mut tx = store.begin().await.unwrap();
        tx.delete("port", &b).await.unwrap();
        drop(tx);
        assert_eq!(told.0.lock().unwrap().len(), 1);

        // A dropped observer is forgotten.
        drop(observer);
        drop(told);
        let mut tx = store.begin().await.unwrap();
        tx.delete("port", &b).await.unwrap();
        tx.commit().await.unwrap();
        assert!(store.feed().local.lock().unwrap().is_empty());
    }
}

#[tokio::test]
async fn watchers_count_the_feed_clients_not_this_process_followers() {
    let feed = crate::Feed::default();
    assert_eq!(feed.watchers(), 0);
    let internal = feed.follow_internally();
    assert_eq!(feed.watchers(), 0);
    let client = feed.subscribe();
    assert_eq!(feed.watchers(), 1);
    drop(internal);
    assert_eq!(feed.watchers(), 1);
    drop(client);
    assert_eq!(feed.watchers(), 0);
}
