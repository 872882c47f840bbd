//! Start-up storms: when a site's hosts come back together, every agent asks for the snapshot
//! and opens a watch within the same second. The snapshot is built once per revision and
//! shared, serialised, by every agent that asks at that revision; new watches are admitted at
//! a bounded rate, and the ones turned away are told when to come back, spread so that they
//! do not all return in the same second.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A snapshot of the mirrored kinds, serialised once.
#[derive(Clone, Debug)]
pub struct SharedSnapshot {
    /// The feed revision the snapshot holds.
    pub revision: i64,
    /// The JSON document `{"revision", "resources"}`.
    pub body: Arc<Vec<u8>>,
}

/// The last snapshot built; its lock is held while one is built, so that a crowd asking at
/// once waits for one build instead of starting one each.
#[derive(Default)]
pub(crate) struct SnapshotCache(tokio::sync::Mutex<Option<SharedSnapshot>>);

impl SnapshotCache {
    /// The cached snapshot if it holds at least revision `newest`, else the one `build` makes
    /// (which is then cached).
    pub(crate) async fn get_or_build<E, F, Fut>(
        &self,
        newest: i64,
        build: F,
    ) -> Result<SharedSnapshot, E>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<SharedSnapshot, E>>,
    {
        let mut cached = self.0.lock().await;
        if let Some(snap) = cached.as_ref().filter(|s| s.revision >= newest) {
            return Ok(snap.clone());
        }
        let snap = build().await?;
        *cached = Some(snap.clone());
        Ok(snap)
    }
}

/// The last few pages of the change feed read, by the revision they follow: the watchers a
/// commit wakes ask for the same page at once, and one of them reads it.
#[derive(Default)]
pub(crate) struct FeedPageCache(tokio::sync::Mutex<std::collections::VecDeque<CachedPage>>);

struct CachedPage {
    since: i64,
    limit: i64,
    /// The newest revision committed before the page was read: it holds everything up to it.
    newest: i64,
    page: crate::agents::FeedPage,
}

/// Pages kept (watchers are at a handful of revisions at most).
const PAGES_KEPT: usize = 8;

impl FeedPageCache {
    /// The page after `since` (at most `limit` changes) as read when `newest` or a later
    /// revision was the newest, else the one `read` returns (cached unless it says resync).
    pub(crate) async fn get_or_read<E, F, Fut>(
        &self,
        since: i64,
        limit: i64,
        newest: i64,
        read: F,
    ) -> Result<crate::agents::FeedPage, E>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<crate::agents::FeedPage, E>>,
    {
        let mut pages = self.0.lock().await;
        if let Some(hit) = pages
            .iter()
            .find(|p| p.since == since && p.limit == limit && p.newest >= newest)
        {
            return Ok(hit.page.clone());
        }
        let page = read().await?;
        if matches!(page, crate::agents::FeedPage::Changes(_)) {
            pages.retain(|p| !(p.since == since && p.limit == limit));
            if pages.len() == PAGES_KEPT {
                pages.pop_front();
            }
            pages.push_back(CachedPage {
                since,
                limit,
                newest,
                page: page.clone(),
            });
        }
        Ok(page)
    }
}

/// Admits new watches at `rate` per second (bursts of `rate`); the rest get the number of
/// seconds after which to come back, growing with the crowd already sent away.
pub struct WatchAdmission {
    rate: f64,
    state: Mutex<Bucket>,
}

struct Bucket {
    tokens: f64,
    /// Watches turned away and not yet due back (drains at `rate` per second).
    backlog: f64,
    at: Instant,
}

impl WatchAdmission {
    /// Admission at `rate` new watches per second (at least one).
    pub fn new(rate: u32) -> WatchAdmission {
        let rate = f64::from(rate.max(1));
        WatchAdmission {
            rate,
            state: Mutex::new(Bucket {
                tokens: rate,
                backlog: 0.0,
                at: Instant::now(),
            }),
        }
    }

    /// `Ok` admits a watch now; `Err(after)`: come back after `after`.
    pub fn admit(&self) -> Result<(), Duration> {
        self.admit_at(Instant::now())
    }

    fn admit_at(&self, now: Instant) -> Result<(), Duration> {
        let mut b = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let elapsed = now.saturating_duration_since(b.at).as_secs_f64();
        b.at = now;
        b.tokens = (b.tokens + elapsed * self.rate).min(self.rate);
        b.backlog = (b.backlog - elapsed * self.rate).max(0.0);
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            return Ok(());
        }
        b.backlog += 1.0;
        Err(Duration::from_secs(
            (b.backlog / self.rate).ceil().max(1.0) as u64
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admits_a_burst_of_rate_then_spreads_the_rest_over_the_next_seconds() {
        let adm = WatchAdmission::new(100);
        let now = Instant::now();
        let outcomes: Vec<_> = (0..350).map(|_| adm.admit_at(now)).collect();
        assert_eq!(outcomes.iter().filter(|o| o.is_ok()).count(), 100);
        let waits: Vec<u64> = outcomes
            .iter()
            .filter_map(|o| o.err())
            .map(|d| d.as_secs())
            .collect();
        assert_eq!(waits.iter().filter(|w| **w == 1).count(), 100);
        assert_eq!(waits.iter().filter(|w| **w == 2).count(), 100);
        assert_eq!(waits.iter().filter(|w| **w == 3).count(), 50);
    }

    #[test]
    fn the_bucket_refills_with_time() {
        let adm = WatchAdmission::new(10);
        let now = Instant::now();
        assert_eq!((0..20).filter(|_| adm.admit_at(now).is_ok()).count(), 10);
        let later = now + Duration::from_millis(500);
        assert_eq!((0..20).filter(|_| adm.admit_at(later).is_ok()).count(), 5);
        let much_later = now + Duration::from_secs(60);
        assert_eq!(
            (0..20).filter(|_| adm.admit_at(much_later).is_ok()).count(),
            10
        );
    }

    #[tokio::test]
    async fn one_build_serves_a_crowd_asking_at_the_same_revision() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let cache = Arc::new(SnapshotCache::default());
        let builds = Arc::new(AtomicUsize::new(0));
        let ask = |revision: i64| {
            let (cache, builds) = (cache.clone(), builds.clone());
            async move {
                cache
                    .get_or_build(revision, || async move {
                        builds.fetch_add(1, Ordering::SeqCst);
                        tokio::task::yield_now().await;
                        Ok::<_, ()>(SharedSnapshot {
                            revision,
                            body: Arc::new(vec![]),
                        })
                    })
                    .await
            }
        };
        let mut crowd = tokio::task::JoinSet::new();
        for _ in 0..50 {
            crowd.spawn(ask(7));
        }
        while let Some(got) = crowd.join_next().await {
            assert_eq!(got.unwrap().unwrap().revision, 7);
        }
        assert_eq!(builds.load(Ordering::SeqCst), 1);
        // A newer revision committed: the next one asking gets a fresh build.
        assert_eq!(ask(8).await.unwrap().revision, 8);
        assert_eq!(builds.load(Ordering::SeqCst), 2);
    }
}
