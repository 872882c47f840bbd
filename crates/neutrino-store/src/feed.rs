//! The change feed: a revision for every committed write, so host agents can fetch the state
//! once and then follow only what changed, resuming after any disconnect from the revision
//! they last saw.
//!
//! A write transaction that touched resources appends, right before it commits, one `changes`
//! row: the next revision and the `(kind, id)` pairs it wrote. Revisions follow commit order:
//! on SQLite there is one writer at a time; on PostgreSQL the revision comes from a counter
//! row that stays locked until the commit, so a later revision can never become visible
//! before an earlier one. Readers get the current documents of the touched resources (the
//! feed is level-triggered: a consumer that applies every change it is given ends with the
//! current state). Old rows are compacted away; a reader that fell behind the compaction point
//! must fetch a fresh snapshot.
//!
//! Each process learns about new revisions through a `tokio::sync::watch` channel: its own
//! commits announce themselves, and on PostgreSQL a `LISTEN` connection plus a slow poll
//! bring in the commits of other servers.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use serde_json::Value;
use sqlx::Row;
use tokio::sync::watch;

use crate::{Backend, Record, Selector, Store, StoreError, Tx};

/// PostgreSQL notification channel that carries new revisions between servers.
const CHANNEL: &str = "neutrino_feed";
/// Setting holding the highest compacted revision.
const COMPACTED: &str = "feed_compacted";

/// One resource that changed, with its document now (`None`: it no longer exists).
#[derive(Clone, Debug)]
pub struct Change {
    /// Revision of the commit that changed it.
    pub revision: i64,
    /// Resource kind.
    pub kind: String,
    /// Resource id.
    pub id: String,
    /// The resource as it is now; `None` when it was deleted.
    pub record: Option<Record>,
}

/// Changes after a revision, oldest first.
#[derive(Clone, Debug)]
pub struct ChangePage {
    /// The reader's new position: the revision of the last change returned, or the current
    /// revision when there were none.
    pub revision: i64,
    /// The changes, oldest first; several may share a revision.
    pub changes: Vec<Change>,
    /// True when more changes follow (the page hit its limit).
    pub more: bool,
}

/// Every resource of some kinds at (or after) one revision.
#[derive(Clone, Debug)]
pub struct Snapshot {
    /// Follow the feed from this revision to stay current.
    pub revision: i64,
    /// The resources by kind.
    pub records: BTreeMap<String, Vec<Record>>,
}

/// Told of every commit of this process that got a revision, with the `(kind, id)` pairs it
/// wrote, right after it reached the database and before the revision is announced: a
/// follower of the feed can so account for its own process's commits without reading them
/// back. Commits of other processes (servers sharing PostgreSQL) are not reported.
pub trait LocalCommits: Send + Sync {
    /// `revision` committed, writing `touched` (sorted, no duplicates).
    fn committed(&self, revision: i64, touched: &[(String, String)]);
}

/// The per-process view of the newest committed revision; cheap to clone.
#[derive(Clone)]
pub struct Feed {
    latest: Arc<watch::Sender<i64>>,
    /// Told of this process's commits; dropped observers are forgotten.
    pub(crate) local: Arc<Mutex<Vec<Weak<dyn LocalCommits>>>>,
    /// Receivers held by this process's own followers (see [`Feed::follow_internally`]).
    internal: Arc<AtomicUsize>,
}

/// A wake-up on each new revision for a follower inside this process (such as the token
/// revocation cache), which [`Feed::watchers`] does not count.
pub struct InternalFollower {
    pub wake: watch::Receiver<i64>,
    internal: Arc<AtomicUsize>,
}

impl Drop for InternalFollower {
    fn drop(&mut self) {
        self.internal.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Default for Feed {
    fn default() -> Self {
        Feed::new()
    }
}

impl Feed {
    pub(crate) fn new() -> Feed {
        Feed {
            latest: Arc::new(watch::channel(0).0),
            local: Arc::default(),
            internal: Arc::default(),
        }
    }

    /// Loads the current revision and, on PostgreSQL, starts following other servers.
    pub(crate) async fn start(&self, store: &Store, url: &str) -> Result<(), StoreError> {
        self.announce(store.current_revision().await?);
        if store.backend == Backend::Postgres {
            let mut listener = sqlx::postgres::PgListener::connect(url).await?;
            listener.listen(CHANNEL).await?;
            let feed = self.clone();
            tokio::spawn(async move {
                loop {
                    match listener.try_recv().await {
                        Ok(Some(note)) => {
                            if let Ok(revision) = note.payload().parse() {
                                feed.announce(revision);
                            }
                        }
                        // The connection dropped and was re-established: the poll below
                        // covers anything announced meanwhile.
                        Ok(None) => {}
                        Err(err) => {
                            tracing::warn!(error = %err, "change feed listener failed");
                            tokio::time::sleep(Duration::from_secs(1)).await;
                        }
                    }
                }
            });
            let feed = self.clone();
            let store = store.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_secs(2));
                loop {
                    tick.tick().await;
                    if feed.latest.receiver_count() == 0 {
                        continue;
                    }
                    match store.current_revision().await {
                        Ok(revision) => feed.announce(revision),
                        Err(err) => tracing::warn!(error = %err, "change feed poll failed"),
                    }
                }
            });
        }
        Ok(())
    }

    /// Records that `revision` is committed (never moves backwards).
    pub(crate) fn announce(&self, revision: i64) {
        self.latest.send_if_modified(|latest| {
            let newer = revision > *latest;
            if newer {
                *latest = revision;
            }
            newer
        });
    }

    /// The newest revision this process knows to be committed (its own commits at once,
    /// other servers' on PostgreSQL as their notification or the 2 s poll brings them in).
    pub fn latest(&self) -> i64 {
        *self.latest.borrow()
    }

    /// Tells `observer` of every later commit of this process, until it is dropped.
    pub fn observe_local_commits(&self, observer: Weak<dyn LocalCommits>) {
        self.local
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(observer);
    }

    /// Tells the local observers that this process committed `revision`.
    pub(crate) fn committed_here(&self, revision: i64, touched: &[(String, String)]) {
        let mut observers = self.local.lock().unwrap_or_else(|e| e.into_inner());
        observers.retain(|o| match o.upgrade() {
            Some(o) => {
                o.committed(revision, touched);
                true
            }
            None => false,
        });
    }

    /// A receiver that wakes whenever a newer revision is committed.
    pub fn subscribe(&self) -> watch::Receiver<i64> {
        self.latest.subscribe()
    }

    /// Like [`Feed::subscribe`], for a follower inside this process.
    pub fn follow_internally(&self) -> InternalFollower {
        self.internal.fetch_add(1, Ordering::SeqCst);
        InternalFollower {
            wake: self.latest.subscribe(),
            internal: self.internal.clone(),
        }
    }

    /// How many receivers are following the feed now, this process's own followers aside.
    pub fn watchers(&self) -> usize {
        self.latest
            .receiver_count()
            .saturating_sub(self.internal.load(Ordering::SeqCst))
    }
}

/// Appends the transaction's touched resources under the next revision; returns it.
pub(crate) async fn append(tx: &mut Tx) -> Result<i64, StoreError> {
    tx.touched.sort_unstable();
    tx.touched.dedup();
    let items = Value::from(
        tx.touched
            .iter()
            .map(|(kind, id)| Value::from(vec![kind.as_str(), id.as_str()]))
            .collect::<Vec<_>>(),
    )
    .to_string();
    let text = match tx.backend {
        // One writer at a time: the next revision is simply one past the newest row
        // (compaction always keeps the newest row).
        Backend::Sqlite => {
            "INSERT INTO changes (revision, items) \
             VALUES ((SELECT coalesce(max(revision), 0) + 1 FROM changes), ?) \
             RETURNING revision"
        }
        // The counter row stays locked until COMMIT: revisions become visible in order.
        Backend::Postgres => {
            "WITH next AS (UPDATE feed_counter SET revision = revision + 1 RETURNING revision), \
             added AS (INSERT INTO changes (revision, items) SELECT revision, ? FROM next \
             RETURNING revision) \
             SELECT revision, pg_notify('neutrino_feed', revision::text) AS notified FROM added"
        }
    };
    let (revision,): (i64,) = tx.fetch_one(text, &[(&items).into()]).await?;
    Ok(revision)
}

/// A reader fell behind the compaction point and must start over from a snapshot.
#[derive(Debug, thiserror::Error)]
#[error("revision {since} is compacted (the feed starts after {compacted})")]
pub struct Compacted {
    /// What the reader asked for.
    pub since: i64,
    /// Changes up to this revision are gone.
    pub compacted: i64,
}

impl Store {
    /// The process-local view of new revisions.
    pub fn feed(&self) -> &Feed {
        &self.feed
    }

    /// The newest committed revision.
    pub async fn current_revision(&self) -> Result<i64, StoreError> {
        let text = match self.backend {
            Backend::Sqlite => "SELECT coalesce(max(revision), 0) AS revision FROM changes",
            Backend::Postgres => "SELECT revision FROM feed_counter",
        };
        let row = sqlx::query(text).fetch_one(&self.pool).await?;
        Ok(row.try_get("revision")?)
    }

    /// Every resource of `kinds`, and the revision to follow the feed from.
    ///
    /// The revision is read before the resources, so the resources are at least as new as
    /// it: replaying changes after it can repeat a change, never miss one.
    pub async fn snapshot(&self, kinds: &[&str]) -> Result<Snapshot, StoreError> {
        let revision = self.current_revision().await?;
        let mut tx = self.read().await?;
        let mut records = BTreeMap::new();
        for kind in kinds {
            records.insert(kind.to_string(), tx.list(kind, &Selector::default()).await?);
        }
        Ok(Snapshot { revision, records })
    }

    /// Up to `limit` commits after `since`, with the current documents of what they touched,
    /// limited to `kinds` (all kinds when empty). `Ok(Err(..))` when `since` is compacted.
    pub async fn changes_since(
        &self,
        since: i64,
        kinds: &[&str],
        limit: i64,
    ) -> Result<Result<ChangePage, Compacted>, StoreError> {
        let mut tx = self.read().await?;
        let compacted: i64 = tx
            .setting(COMPACTED)
            .await?
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        if since < compacted {
            return Ok(Err(Compacted { since, compacted }));
        }
        let rows: Vec<(i64, String)> = tx
            .fetch_all(
                "SELECT revision, items FROM changes WHERE revision > ? ORDER BY revision LIMIT ?",
                &[since.into(), (limit + 1).into()],
            )
            .await?;
        let more = rows.len() as i64 > limit;
        let mut wanted: Vec<(i64, String, String)> = Vec::new();
        let mut revision = since;
        for (rev, items) in rows.iter().take(limit as usize) {
            revision = *rev;
            let items: Vec<(String, String)> =
                serde_json::from_str(items).map_err(|source| StoreError::Corrupt {
                    id: format!("change {revision}"),
                    source,
                })?;
            wanted.extend(
                items
                    .into_iter()
                    .filter(|(kind, _)| kinds.is_empty() || kinds.contains(&kind.as_str()))
                    .map(|(kind, id)| (revision, kind, id)),
            );
        }
        drop(tx);
        if rows.is_empty() {
            let current = self.current_revision().await?;
            if since > current {
                // A revision from the future: the database was replaced; start over.
                return Ok(Err(Compacted {
                    since,
                    compacted: current,
                }));
            }
        }
        let mut by_kind: BTreeMap<&str, Vec<String>> = BTreeMap::new();
        for (_, kind, id) in &wanted {
            by_kind.entry(kind).or_default().push(id.clone());
        }
        let mut current: BTreeMap<(String, String), Record> = BTreeMap::new();
        if !by_kind.is_empty() {
            let mut tx = self.read().await?;
            for (kind, ids) in by_kind {
                for chunk in ids.chunks(500) {
                    let sel = Selector {
                        ids: Some(chunk.to_vec()),
                        ..Default::default()
                    };
                    for rec in tx.list(kind, &sel).await? {
                        current.insert((rec.kind.clone(), rec.id.clone()), rec);
                    }
                }
            }
        }
        let changes = wanted
            .into_iter()
            .map(|(revision, kind, id)| {
                let record = current.get(&(kind.clone(), id.clone())).cloned();
                Change {
                    revision,
                    kind,
                    id,
                    record,
                }
            })
            .collect();
        Ok(Ok(ChangePage {
            revision,
            changes,
            more,
        }))
    }

    /// Drops feed rows so that at most `keep` remain (the newest row always stays).
    /// Returns the new compaction point.
    pub async fn compact_feed(&self, keep: i64) -> Result<i64, StoreError> {
        let mut tx = self.begin().await?;
        let text = match self.backend {
            Backend::Sqlite => "SELECT coalesce(max(revision), 0) AS r FROM changes",
            Backend::Postgres => "SELECT revision AS r FROM feed_counter",
        };
        let (newest,): (i64,) = tx.fetch_one(text, &[]).await?;
        let upto = (newest - keep.max(1)).max(0);
        let old: i64 = tx
            .setting(COMPACTED)
            .await?
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        if upto <= old {
            return Ok(old);
        }
        tx.execute("DELETE FROM changes WHERE revision <= ?", &[upto.into()])
            .await?;
        let upto_text = upto.to_string();
        tx.execute(
            "INSERT INTO settings (name, value) VALUES (?, ?) \
             ON CONFLICT (name) DO UPDATE SET value = excluded.value",
            &[COMPACTED.into(), (&upto_text).into()],
        )
        .await?;
        tx.commit().await?;
        Ok(upto)
    }

    /// Records that `host` reported in at `at` (seconds since the epoch).
    pub async fn heartbeat(&self, host: &str, at: i64) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        tx.execute(
            "INSERT INTO heartbeats (host, at) VALUES (?, ?) \
             ON CONFLICT (host) DO UPDATE SET at = excluded.at",
            &[host.into(), at.into()],
        )
        .await?;
        tx.commit().await
    }

    /// The last report of every host, `(host, seconds since the epoch)`.
    pub async fn heartbeats(&self) -> Result<Vec<(String, i64)>, StoreError> {
        let rows = sqlx::query("SELECT host, at FROM heartbeats ORDER BY host")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("host")?, r.try_get("at")?)))
            .collect()
    }
}
