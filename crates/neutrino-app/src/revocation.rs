//! Token revocation, as Keystone's revocation events: tokens are stateless and signed, so
//! taking one back stores an event "tokens of this subject issued until now are void" in
//! the database, which every server sharing it honours. Events name a user (deleted,
//! disabled, new password), a project (deleted or disabled), a user on a project (a role
//! taken away) or one token (`DELETE /v3/auth/tokens`). An event outlives every token it can
//! void by one token lifetime and is pruned after that.
//!
//! Every authenticated request checks its token, so the check reads no database: each
//! [`App`] keeps the live events in memory ([`Revocations`]), loaded at start and kept
//! current from the change feed (events are resources, so writing one is a feed revision).
//! The copy says up to which revision it is complete (`seen`). This process's own commits
//! that wrote no event advance it at once (the store tells of each commit before it
//! announces the revision); everything else (a revocation, here or on another server
//! sharing PostgreSQL) is read back from the feed by a follower task woken by the new
//! revision. While the process knows of a revision the copy does not cover yet, a request
//! looks the events up in the database as before: a revocation voids tokens on the server
//! that wrote it at once, and on another server as soon as that one learns of the revision
//! (PostgreSQL `NOTIFY`, at worst the feed's 2 s poll).

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, RwLock, Weak};
use std::time::Duration;

use neutrino_store::{Change, LocalCommits, Record, Selector, Store, StoreError, Tx};
use neutrino_types::ApiResult;
use serde_json::{json, Value};

use crate::token::Claims;
use crate::{db, App};

/// The store kind of revocation events; the id names the subject.
const KIND: &str = "token_revocation";

/// Feed changes read per page when catching up.
const PAGE: i64 = 1000;
/// How often the follower drops the expired events from memory.
const PRUNE_EVERY: Duration = Duration::from_secs(60);
/// Local commits above a gap remembered at most (past that the follower fills the gap).
const MAX_AHEAD: usize = 4096;

/// What a revocation event voids.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Revoked<'a> {
    /// Every token of a user.
    User(&'a str),
    /// Every token scoped to a project.
    Project(&'a str),
    /// A user's tokens scoped to one project.
    UserOnProject(&'a str, &'a str),
    /// One token, by its audit id.
    Token(&'a str),
}

impl Revoked<'_> {
    fn key(self) -> String {
        match self {
            Revoked::User(u) => format!("user:{u}"),
            Revoked::Project(p) => format!("project:{p}"),
            Revoked::UserOnProject(u, p) => format!("grant:{u}|{p}"),
            Revoked::Token(a) => format!("audit:{a}"),
        }
    }
}

/// The event ids that could void a token with these claims.
fn keys_of(claims: &Claims) -> Vec<String> {
    let mut keys = vec![
        Revoked::User(&claims.u).key(),
        Revoked::Token(&claims.a).key(),
    ];
    if !claims.p.is_empty() {
        keys.push(Revoked::Project(&claims.p).key());
        keys.push(Revoked::UserOnProject(&claims.u, &claims.p).key());
    }
    keys
}

/// Whether one of `events` voids a token with these claims.
fn voids(events: &[Record], claims: &Claims) -> bool {
    let issued = claims.issued_ms();
    events.iter().any(|e| {
        e.body["before_ms"]
            .as_i64()
            .is_some_and(|before| issued <= before)
    })
}

/// One event as the memory copy keeps it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Event {
    /// Tokens issued until then (Unix ms) are void.
    before_ms: i64,
    /// No token it can void outlives this (Unix ms).
    keep_until_ms: i64,
}

impl Event {
    fn of(body: &Value) -> Option<Event> {
        Some(Event {
            before_ms: body["before_ms"].as_i64()?,
            keep_until_ms: body["keep_until_ms"].as_i64().unwrap_or(i64::MAX),
        })
    }
}

/// The memory copy of the events and how far it is complete.
#[derive(Debug, Default)]
struct State {
    /// The events of every revision up to this one are in `events`.
    seen: i64,
    /// Revisions above `seen` that this process committed without writing an event: `seen`
    /// moves over them once the gap below them is filled.
    ahead: BTreeSet<i64>,
    /// The live events by id (`user:..`, `project:..`, `grant:..`, `audit:..`).
    events: HashMap<String, Event>,
}

impl State {
    /// Whether the events void a token with these claims; `None` when the copy does not
    /// cover revision `latest`.
    fn voids(&self, latest: i64, claims: &Claims) -> Option<bool> {
        if self.seen < latest {
            return None;
        }
        let issued = claims.issued_ms();
        Some(
            keys_of(claims)
                .iter()
                .any(|key| self.events.get(key).is_some_and(|e| issued <= e.before_ms)),
        )
    }

    /// This process committed `revision`, which wrote no event.
    fn clean(&mut self, revision: i64) {
        if revision <= self.seen {
            return;
        }
        if self.ahead.len() >= MAX_AHEAD {
            // A gap this old is the follower's to fill; forget, never guess.
            self.ahead.clear();
        }
        self.ahead.insert(revision);
        self.advance();
    }

    /// Moves `seen` over the clean revisions that follow it.
    fn advance(&mut self) {
        while self.ahead.first() == Some(&(self.seen + 1)) {
            self.seen += 1;
            self.ahead.pop_first();
        }
        while self.ahead.first().is_some_and(|&r| r <= self.seen) {
            self.ahead.pop_first();
        }
    }

    /// The feed's changes of events up to `revision`, read after `seen` was at most that.
    fn apply(&mut self, revision: i64, changes: Vec<Change>) {
        for change in changes {
            match change.record.as_ref().and_then(|r| Event::of(&r.body)) {
                Some(event) => self.events.insert(change.id, event),
                None => self.events.remove(&change.id),
            };
        }
        self.seen = self.seen.max(revision);
        self.advance();
    }

    /// Every event as of (at least) `revision`, replacing the copy.
    fn reload(&mut self, revision: i64, records: &[Record]) {
        self.events = records
            .iter()
            .filter_map(|r| Some((r.id.clone(), Event::of(&r.body)?)))
            .collect();
        self.seen = self.seen.max(revision);
        self.advance();
    }

    /// Drops the events no live token can be older than.
    fn prune(&mut self, now_ms: i64) {
        self.events.retain(|_, e| e.keep_until_ms >= now_ms);
    }
}

/// The revocation events in memory, kept current from the change feed (see the module
/// documentation). One per [`App`].
pub(crate) struct Revocations {
    state: RwLock<State>,
}

impl LocalCommits for Revocations {
    fn committed(&self, revision: i64, touched: &[(String, String)]) {
        // A commit that wrote events is read back from the feed by the follower.
        if touched.iter().all(|(kind, _)| kind != KIND) {
            self.write_state().clean(revision);
        }
    }
}

impl Revocations {
    /// Loads the events from `store` and starts following its feed.
    pub(crate) async fn start(store: &Store) -> Result<Arc<Revocations>, StoreError> {
        let snapshot = store.snapshot(&[KIND]).await?;
        let mut state = State::default();
        state.reload(
            snapshot.revision,
            snapshot.records.get(KIND).map_or(&[][..], Vec::as_slice),
        );
        let cache = Arc::new(Revocations {
            state: RwLock::new(state),
        });
        let observer: Arc<dyn LocalCommits> = cache.clone();
        store
            .feed()
            .observe_local_commits(Arc::downgrade(&observer));
        tokio::spawn(follow(Arc::downgrade(&cache), store.clone()));
        Ok(cache)
    }

    fn read_state(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write_state(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether the events void a token with these claims, from memory; `None` when the copy
    /// does not cover revision `latest` yet.
    fn voids(&self, latest: i64, claims: &Claims) -> Option<bool> {
        self.read_state().voids(latest, claims)
    }

    /// Reads the feed from where the copy is complete up to its end.
    async fn catch_up(&self, store: &Store) -> Result<(), StoreError> {
        loop {
            let since = self.read_state().seen;
            match store.changes_since(since, &[KIND], PAGE).await? {
                Ok(page) => {
                    let more = page.more;
                    self.write_state().apply(page.revision, page.changes);
                    if !more {
                        return Ok(());
                    }
                }
                // Fell behind the compaction point: start over from every event.
                Err(_) => {
                    let snapshot = store.snapshot(&[KIND]).await?;
                    let records = snapshot.records.get(KIND).map_or(&[][..], Vec::as_slice);
                    self.write_state().reload(snapshot.revision, records);
                    return Ok(());
                }
            }
        }
    }
}

/// Keeps `cache` current while it lives: woken by every new revision, it reads the feed when
/// the copy does not cover it; now and then it drops expired events.
async fn follow(cache: Weak<Revocations>, store: Store) {
    let mut follower = store.feed().follow_internally();
    let wake = &mut follower.wake;
    let mut tick = tokio::time::interval(PRUNE_EVERY);
    let mut failed = false;
    loop {
        let mut prune = false;
        if failed {
            tokio::time::sleep(Duration::from_secs(1)).await;
        } else {
            tokio::select! {
                changed = wake.changed() => if changed.is_err() { return },
                _ = tick.tick() => prune = true,
            }
        }
        let Some(cache) = cache.upgrade() else {
            return;
        };
        if prune {
            let now_ms = chrono::Utc::now().timestamp_millis();
            cache.write_state().prune(now_ms);
        }
        failed = false;
        if cache.read_state().seen < store.feed().latest() {
            if let Err(err) = cache.catch_up(&store).await {
                tracing::warn!(error = %err, "following token revocations failed");
                failed = true;
            }
        }
    }
}

impl App {
    /// Whether the memory copy of the revocation events covers every revision this process
    /// knows of (so checking a token reads no database). For tests and diagnostics.
    #[doc(hidden)]
    pub fn revocations_current(&self) -> bool {
        self.inner.revocations.read_state().seen >= self.inner.store.feed().latest()
    }

    /// Voids, in `tx`, the tokens of `subject` issued until now.
    pub(crate) async fn revoke_tokens(&self, tx: &mut Tx, subject: Revoked<'_>) -> ApiResult<()> {
        let now_ms = chrono::Utc::now().timestamp_millis();
        let keep_until_ms = now_ms + self.config().token_ttl_secs * 1000;
        let body = json!({"before_ms": now_ms, "keep_until_ms": keep_until_ms});
        let id = subject.key();
        if !tx.update(KIND, &id, &body).await.map_err(db)? {
            let rec = Record {
                kind: KIND.to_string(),
                id,
                project_id: String::new(),
                parent_id: None,
                body,
            };
            tx.insert(&rec).await.map_err(db)?;
        }
        // Events no live token can be older than are dropped here, so the table stays as
        // small as the number of recent events.
        for old in tx.list(KIND, &Selector::default()).await.map_err(db)? {
            if old.body["keep_until_ms"]
                .as_i64()
                .is_some_and(|t| t < now_ms)
            {
                tx.delete(KIND, &old.id).await.map_err(db)?;
            }
        }
        Ok(())
    }

    /// Whether a token with these (verified) claims has been revoked: from memory, or from
    /// the database while the memory copy is behind a revision this process knows of.
    pub(crate) async fn is_revoked(&self, claims: &Claims) -> ApiResult<bool> {
        let latest = self.inner.store.feed().latest();
        if let Some(voided) = self.inner.revocations.voids(latest, claims) {
            return Ok(voided);
        }
        let mut tx = self.read().await?;
        let selector = Selector {
            ids: Some(keys_of(claims)),
            ..Selector::default()
        };
        let events = tx.list(KIND, &selector).await.map_err(db)?;
        Ok(voids(&events, claims))
    }
}

/// Whether a stored identity document is switched off (`enabled: false`).
pub(crate) fn disabled(body: &Value) -> bool {
    body.get("enabled") == Some(&Value::Bool(false))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(user: &str, project: &str, issued_ms: i64) -> Claims {
        Claims {
            u: user.into(),
            p: project.into(),
            r: vec!["member".into()],
            e: issued_ms / 1000 + 3600,
            i: issued_ms / 1000,
            a: "audit1".into(),
            m: issued_ms,
            h: None,
        }
    }

    fn event(subject: Revoked<'_>, before_ms: i64) -> Record {
        Record {
            kind: KIND.into(),
            id: subject.key(),
            project_id: String::new(),
            parent_id: None,
            body: json!({"before_ms": before_ms, "keep_until_ms": before_ms + 3_600_000}),
        }
    }

    #[test]
    fn an_event_voids_the_tokens_issued_until_it() {
        let c = claims("u1", "p1", 5_000);
        assert!(voids(&[event(Revoked::User("u1"), 5_000)], &c));
        assert!(voids(&[event(Revoked::User("u1"), 9_000)], &c));
        assert!(
            !voids(&[event(Revoked::User("u1"), 4_999)], &c),
            "issued after it"
        );
        assert!(!voids(&[], &c));
    }

    #[test]
    fn a_token_is_looked_up_under_each_subject_that_can_void_it() {
        let keys = keys_of(&claims("u1", "p1", 1));
        for k in ["user:u1", "audit:audit1", "project:p1", "grant:u1|p1"] {
            assert!(keys.contains(&k.to_string()), "{k} in {keys:?}");
        }
        let unscoped = keys_of(&claims("u1", "", 1));
        assert_eq!(unscoped.len(), 2, "{unscoped:?}");
    }

    fn change(subject: Revoked<'_>, revision: i64, before_ms: Option<i64>) -> Change {
        Change {
            revision,
            kind: KIND.into(),
            id: subject.key(),
            record: before_ms.map(|b| event(subject, b)),
        }
    }

    fn cache(seen: i64) -> Revocations {
        Revocations {
            state: RwLock::new(State {
                seen,
                ..State::default()
            }),
        }
    }

    #[test]
    fn the_copy_answers_only_while_it_covers_the_newest_revision() {
        let c = claims("u1", "p1", 5_000);
        let r = cache(5);
        assert_eq!(r.voids(5, &c), Some(false));
        assert_eq!(r.voids(6, &c), None, "behind a known revision");
        r.committed(7, &[("network".into(), "n1".into())]);
        assert_eq!(r.voids(7, &c), None, "revision 6 is not accounted for");
        r.committed(6, &[("port".into(), "p1".into())]);
        assert_eq!(r.voids(7, &c), Some(false), "own clean commits 6 and 7");
        r.committed(8, &[(KIND.into(), "user:u1".into())]);
        assert_eq!(
            r.voids(8, &c),
            None,
            "a commit that wrote an event is read from the feed"
        );
        r.committed(9, &[("port".into(), "p2".into())]);
        assert_eq!(r.voids(9, &c), None);
        r.write_state()
            .apply(8, vec![change(Revoked::User("u1"), 8, Some(6_000))]);
        assert_eq!(r.voids(9, &c), Some(true), "the event, then clean 9");
        let later = claims("u1", "p1", 6_001);
        assert_eq!(r.voids(9, &later), Some(false), "issued after the event");
    }

    #[test]
    fn the_copy_follows_every_subject_and_deletion() {
        let r = cache(0);
        let c = claims("u1", "p1", 5_000);
        for subject in [
            Revoked::User("u1"),
            Revoked::Project("p1"),
            Revoked::UserOnProject("u1", "p1"),
            Revoked::Token("audit1"),
        ] {
            r.write_state()
                .apply(1, vec![change(subject, 1, Some(5_000))]);
            assert_eq!(r.voids(1, &c), Some(true), "{subject:?}");
            r.write_state().apply(2, vec![change(subject, 2, None)]);
            assert_eq!(r.voids(2, &c), Some(false), "{subject:?} deleted");
        }
        r.write_state().apply(
            3,
            vec![change(Revoked::UserOnProject("u1", "p2"), 3, Some(9_000))],
        );
        assert_eq!(r.voids(3, &c), Some(false), "another project");
    }

    #[test]
    fn expired_events_are_pruned_from_memory() {
        let mut s = State::default();
        s.apply(1, vec![change(Revoked::User("u1"), 1, Some(1_000))]);
        s.apply(2, vec![change(Revoked::User("u2"), 2, Some(9_000_000))]);
        s.prune(1_000 + 3_600_000 + 1);
        assert!(!s.events.contains_key("user:u1"));
        assert!(s.events.contains_key("user:u2"));
    }

    #[test]
    fn a_reload_replaces_the_events_and_keeps_the_furthest_revision() {
        let mut s = State::default();
        s.apply(4, vec![change(Revoked::User("u1"), 4, Some(1_000))]);
        s.reload(3, &[event(Revoked::User("u2"), 2_000)]);
        assert_eq!(s.seen, 4);
        assert_eq!(s.events.len(), 1);
        assert!(s.events.contains_key("user:u2"));
    }

    #[test]
    fn tokens_of_earlier_versions_count_from_the_start_of_their_second() {
        let mut c = claims("u1", "", 0);
        c.i = 7;
        c.m = 0;
        assert_eq!(c.issued_ms(), 7_000);
        assert!(voids(&[event(Revoked::User("u1"), 7_000)], &c));
    }
}
