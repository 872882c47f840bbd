//! Property test of subnet allocation from pools through the application layer: random
//! sequences of allocations (by prefix length and by CIDR), frees, prefix additions and
//! address-scope moves never produce overlapping subnets inside a scope or a pool, never put a
//! subnet outside its pool, never exceed a pool quota, never answer 5xx, and freeing
//! everything restores the whole capacity.

use std::net::Ipv4Addr;

use ipnet::{IpNet, Ipv4Net};
use neutrino_app::{App, Collection, Config, Context};
use neutrino_store::Store;
use proptest::prelude::*;
use serde_json::{json, Map, Value};

#[derive(Clone, Debug)]
enum Op {
    AllocLen { pool: usize, len: u8 },
    AllocCidr { pool: usize, block: u16, len: u8 },
    Free { pick: usize },
    AddPrefix { pool: usize, third_octet: u8 },
    MoveScope { pool: usize, into_scope: bool },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..3usize, 25u8..=29).prop_map(|(pool, len)| Op::AllocLen { pool, len }),
        2 => (0..3usize, 0u16..64, 24u8..=28).prop_map(|(pool, block, len)| Op::AllocCidr { pool, block, len }),
        3 => any::<usize>().prop_map(|pick| Op::Free { pick }),
        1 => (0..3usize, 0u8..8).prop_map(|(pool, third_octet)| Op::AddPrefix { pool, third_octet }),
        1 => (0..3usize, any::<bool>()).prop_map(|(pool, into_scope)| Op::MoveScope { pool, into_scope }),
    ]
}

fn doc(v: Value) -> Map<String, Value> {
    v.as_object().unwrap().clone()
}

fn coll(p: &str) -> &'static Collection {
    Collection::by_path(p).unwrap()
}

struct World {
    app: App,
    ctx: Context,
    scope: String,
    pools: Vec<String>,
    networks: Vec<String>,
    quota: u64,
}

impl World {
    async fn new(dir: &std::path::Path) -> World {
        let store = Store::open(&format!("sqlite://{}/t.db", dir.display()))
            .await
            .unwrap();
        let app = App::new(store, Config::default()).await.unwrap();
        let ctx = Context::new("admin", "p1", &["admin".into()]);
        let scope = app
            .create(
                &ctx,
                coll("address-scopes"),
                vec![doc(json!({"name": "s", "ip_version": 4}))],
            )
            .await
            .unwrap()[0]["id"]
            .as_str()
            .unwrap()
            .to_string();
        let quota = 2048;
        let mut pools = Vec::new();
        let mut networks = Vec::new();
        // Two pools in the scope (disjoint), one outside it overlapping the first.
        for (i, (prefix, in_scope)) in [
            ("10.0.0.0/22", true),
            ("10.0.8.0/22", true),
            ("10.0.0.0/21", false),
        ]
        .into_iter()
        .enumerate()
        {
            let mut body = json!({"name": format!("p{i}"), "prefixes": [prefix], "default_prefixlen": 28,
                                  "default_quota": quota});
            if in_scope {
                body["address_scope_id"] = json!(scope);
            }
            let p = app
                .create(&ctx, coll("subnetpools"), vec![doc(body)])
                .await
                .unwrap();
            pools.push(p[0]["id"].as_str().unwrap().to_string());
            let n = app
                .create(
                    &ctx,
                    coll("networks"),
                    vec![doc(json!({"name": format!("n{i}")}))],
                )
                .await
                .unwrap();
            networks.push(n[0]["id"].as_str().unwrap().to_string());
        }
        World {
            app,
            ctx,
            scope,
            pools,
            networks,
            quota,
        }
    }

    async fn list(&self, path: &str) -> Vec<Map<String, Value>> {
        self.app
            .list(&self.ctx, coll(path), &[])
            .await
            .unwrap()
            .items
    }

    fn ok_or_4xx<T>(r: Result<T, neutrino_types::ApiError>) -> Option<T> {
        match r {
            Ok(v) => Some(v),
            Err(e) => {
                assert!((400..500).contains(&e.status), "server error: {e}");
                None
            }
        }
    }

    async fn apply(&self, op: &Op) {
        let create = |pool: usize, extra: Value| {
            let mut body = json!({"network_id": self.networks[pool], "ip_version": 4,
                                  "subnetpool_id": self.pools[pool]});
            for (k, v) in extra.as_object().unwrap() {
                body[k] = v.clone();
            }
            body
        };
        match *op {
            Op::AllocLen { pool, len } => {
                let body = create(pool, json!({"prefixlen": len}));
                Self::ok_or_4xx(
                    self.app
                        .create(&self.ctx, coll("subnets"), vec![doc(body)])
                        .await,
                );
            }
            Op::AllocCidr { pool, block, len } => {
                let base = u32::from(Ipv4Addr::new(10, 0, 0, 0)) + u32::from(block) * 256;
                let net = Ipv4Net::new(Ipv4Addr::from(base), len).unwrap().trunc();
                let body = create(pool, json!({"cidr": net.to_string()}));
                Self::ok_or_4xx(
                    self.app
                        .create(&self.ctx, coll("subnets"), vec![doc(body)])
                        .await,
                );
            }
            Op::Free { pick } => {
                let subnets = self.list("subnets").await;
                if !subnets.is_empty() {
                    let id = subnets[pick % subnets.len()]["id"]
                        .as_str()
                        .unwrap()
                        .to_string();
                    self.app
                        .delete(&self.ctx, coll("subnets"), &id, None)
                        .await
                        .unwrap();
                }
            }
            Op::AddPrefix { pool, third_octet } => {
                let prefix = format!("10.0.{}.0/24", 16 + third_octet);
                Self::ok_or_4xx(
                    self.app
                        .action(
                            &self.ctx,
                            coll("subnetpools"),
                            &self.pools[pool],
                            "add_prefixes",
                            json!({"prefixes": [prefix]}),
                        )
                        .await,
                );
            }
            Op::MoveScope { pool, into_scope } => {
                let scope = if into_scope {
                    json!(self.scope)
                } else {
                    Value::Null
                };
                let body = doc(json!({"address_scope_id": scope}));
                Self::ok_or_4xx(
                    self.app
                        .update(
                            &self.ctx,
                            coll("subnetpools"),
                            &self.pools[pool],
                            body,
                            None,
                        )
                        .await,
                );
            }
        }
    }

    async fn check(&self) {
        let pools = self.list("subnetpools").await;
        let subnets = self.list("subnets").await;
        let pool_of = |id: &str| pools.iter().find(|p| p["id"] == id).unwrap().clone();
        let mut live: Vec<(IpNet, String, Value)> = Vec::new();
        for sn in &subnets {
            let cidr: IpNet = sn["cidr"].as_str().unwrap().parse().unwrap();
            let pool = pool_of(sn["subnetpool_id"].as_str().unwrap());
            let prefixes: Vec<IpNet> = pool["prefixes"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p.as_str().unwrap().parse().unwrap())
                .collect();
            assert!(
                prefixes.iter().any(|p| p.contains(&cidr)),
                "{cidr} outside its pool {prefixes:?}"
            );
            live.push((
                cidr,
                pool["id"].as_str().unwrap().to_string(),
                pool["address_scope_id"].clone(),
            ));
        }
        for (i, (a, pa, sa)) in live.iter().enumerate() {
            for (b, pb, sb) in &live[i + 1..] {
                let same_scope = !sa.is_null() && sa == sb;
                if pa == pb || same_scope {
                    assert!(
                        !neutrino_ipam::overlaps(*a, *b),
                        "{a} and {b} overlap (pools {pa}/{pb})"
                    );
                }
            }
        }
        for p in &pools {
            let used: u64 = live
                .iter()
                .filter(|(_, pool, _)| p["id"] == pool.as_str())
                .map(|(c, _, _)| neutrino_ipam::prefix_quota_units(*c) as u64)
                .sum();
            assert!(
                used <= self.quota,
                "pool quota exceeded: {used} > {}",
                self.quota
            );
        }
    }

    /// After freeing everything, the first pool yields exactly its capacity in /28s.
    async fn check_capacity_restored(&self) {
        for sn in self.list("subnets").await {
            let id = sn["id"].as_str().unwrap().to_string();
            self.app
                .delete(&self.ctx, coll("subnets"), &id, None)
                .await
                .unwrap();
        }
        let pool = self
            .app
            .show(&self.ctx, coll("subnetpools"), &self.pools[1], &[])
            .await
            .unwrap();
        let capacity: u64 = pool["prefixes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| 1u64 << (32 - p.as_str().unwrap().parse::<IpNet>().unwrap().prefix_len()))
            .sum();
        let mut made = 0;
        loop {
            let req = json!({"network_id": self.networks[1], "ip_version": 4, "subnetpool_id": self.pools[1], "prefixlen": 24});
            match self
                .app
                .create(&self.ctx, coll("subnets"), vec![doc(req)])
                .await
            {
                Ok(_) => made += 1,
                Err(e) => {
                    assert_eq!(e.status, 409, "{e}");
                    break;
                }
            }
        }
        let quota_blocks = self.quota / 256;
        assert_eq!(
            made,
            (capacity / 256).min(quota_blocks),
            "capacity {capacity}, quota {}",
            self.quota
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, .. ProptestConfig::default() })]

    #[test]
    fn pools_never_overlap_or_overflow(ops in proptest::collection::vec(op(), 1..40)) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let dir = tempfile::tempdir().unwrap();
            let world = World::new(dir.path()).await;
            for op in &ops {
                world.apply(op).await;
                world.check().await;
            }
            world.check_capacity_restored().await;
        });
    }
}
