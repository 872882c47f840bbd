//! Storage for Neutrino: one transactional API over embedded SQLite (the default) and
//! PostgreSQL (several servers sharing one database).
//!
//! The model is deliberately small:
//! - `resources`: every API object as a JSON document, with the columns the server queries by
//!   (`kind`, `id`, `project_id`, `parent_id`) broken out and indexed;
//! - `claims`: unique keys inside a scope (an IP address in a subnet, a MAC on a network, a
//!   VXLAN id, a default security group per project, a user name in a domain). The primary key
//!   is what makes two servers on one PostgreSQL unable to hand out the same address;
//! - `quotas` and `settings`: per-project limits and server-wide values (the token key).
//!
//! - `changes`: the change feed. Every commit that wrote resources appends one row with the
//!   next revision and the `(kind, id)` pairs it touched; host agents follow it (see [`Feed`]).
//!
//! Every API request runs in one [`Tx`]; dropping it without [`Tx::commit`] rolls back.
//! SQLite allows one writer at a time: write transactions on SQLite queue for the process's
//! writer connection, which runs their statements inline and commits concurrent ones together
//! (group commit, one savepoint per transaction: see `writer.rs`). Readers and PostgreSQL go
//! through sqlx.

mod conn;
mod feed;
mod schema;
mod writer;

pub use feed::{Change, ChangePage, Feed, InternalFollower, LocalCommits, Snapshot};

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use sqlx::any::AnyPoolOptions;
use sqlx::AnyPool;

use conn::{Arg, Conn};
use writer::Writer;

/// Per-connection SQLite settings: write-ahead log (readers never block the writer), fsync at
/// checkpoints only, and a wait instead of an error when the file is locked.
const SQLITE_PRAGMAS: [&str; 4] = [
    "PRAGMA busy_timeout=10000",
    "PRAGMA journal_mode=WAL",
    "PRAGMA synchronous=NORMAL",
    "PRAGMA foreign_keys=ON",
];

/// Errors of the storage layer.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database driver failed (connection lost, SQL error, ...).
    #[error("database error")]
    Database(#[from] sqlx::Error),
    /// A stored document is not valid JSON (corruption or a foreign writer).
    #[error("stored document {id} is not valid JSON")]
    Corrupt {
        /// The resource id.
        id: String,
        /// The parse error.
        #[source]
        source: serde_json::Error,
    },
    /// The SQLite writer connection failed.
    #[error("database error")]
    Sqlite(#[from] rusqlite::Error),
    /// The batch this transaction's commit was grouped into did not commit.
    #[error("the grouped commit failed: {0}")]
    Batch(String),
    /// The database URL names no supported backend.
    #[error("unsupported database URL {0:?}: use sqlite://PATH or postgres://...")]
    UnsupportedUrl(String),
}

/// Which database engine backs the store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// Embedded SQLite file.
    Sqlite,
    /// PostgreSQL server.
    Postgres,
}

/// A stored resource.
#[derive(Clone, Debug)]
pub struct Record {
    /// Resource kind, e.g. `network`.
    pub kind: String,
    /// Resource id.
    pub id: String,
    /// Owning project.
    pub project_id: String,
    /// Parent resource id (a subnet's or port's network, a rule's security group), if any.
    pub parent_id: Option<String>,
    /// The full resource document.
    pub body: Value,
}

/// Which records a listing returns; every `Some` narrows the result (AND), lists inside a
/// field are alternatives (OR).
#[derive(Clone, Debug, Default)]
pub struct Selector {
    /// Only these ids.
    pub ids: Option<Vec<String>>,
    /// Only these owning projects.
    pub project_ids: Option<Vec<String>>,
    /// Only children of these parents.
    pub parent_ids: Option<Vec<String>>,
    /// Only these roles (a port's `device_owner`, see [`role_of`]).
    pub roles: Option<Vec<String>>,
}

/// The `role` column of a document: its `device_owner` (ports), else none.
fn role_of(body: &Value) -> Option<&str> {
    body.get("device_owner").and_then(Value::as_str)
}

/// Told of every commit that reached the database, for metrics.
pub trait CommitObserver: Send + Sync {
    /// `transactions` committed together in `took` (SQLite groups concurrent write
    /// transactions into one commit; PostgreSQL commits each alone).
    fn committed(&self, transactions: usize, took: Duration);
}

/// Where commits are reported, once someone asks (shared by every clone of a store).
pub(crate) type Observer = Arc<std::sync::OnceLock<Arc<dyn CommitObserver>>>;

/// Handle to the database; cheap to clone.
#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    /// SQLite: the one connection that writes.
    writer: Option<Arc<Writer>>,
    feed: Feed,
    observer: Observer,
}

impl Store {
    /// Opens (creating if needed) the database at `url` and brings its schema up to date.
    ///
    /// `sqlite://PATH` for an embedded file, `postgres://...` for PostgreSQL.
    pub async fn open(url: &str) -> Result<Store, StoreError> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Backend::Postgres
        } else {
            return Err(StoreError::UnsupportedUrl(url.to_string()));
        };
        let url = match backend {
            Backend::Sqlite if !url.contains('?') => format!("{url}?mode=rwc"),
            _ => url.to_string(),
        };
        let options = AnyPoolOptions::new().acquire_timeout(Duration::from_secs(30));
        let pool = match backend {
            Backend::Sqlite => {
                options
                    .max_connections(4)
                    .after_connect(|conn, _| {
                        Box::pin(async move {
                            for pragma in SQLITE_PRAGMAS {
                                sqlx::query(pragma).execute(&mut *conn).await?;
                            }
                            Ok(())
                        })
                    })
                    .connect(&url)
                    .await?
            }
            Backend::Postgres => options.max_connections(16).connect(&url).await?,
        };
        let mut store = Store {
            pool,
            backend,
            writer: None,
            feed: Feed::new(),
            observer: Observer::default(),
        };
        schema::migrate(&store).await?;
        if backend == Backend::Sqlite {
            store.writer = Some(Writer::open(
                sqlite_path(&url),
                &SQLITE_PRAGMAS,
                store.observer.clone(),
            )?);
        }
        store.feed.start(&store, &url).await?;
        Ok(store)
    }

    /// The engine behind this store.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Reports every later commit to `observer` (the first call wins).
    pub fn observe_commits(&self, observer: Arc<dyn CommitObserver>) {
        let _ = self.observer.set(observer);
    }

    /// Starts a transaction that may write.
    pub async fn begin(&self) -> Result<Tx, StoreError> {
        let conn = match &self.writer {
            Some(writer) => Conn::Writer(writer.begin().await?),
            None => Conn::Sqlx(self.pool.begin().await?),
        };
        Ok(Tx {
            conn,
            backend: self.backend,
            touched: Vec::new(),
            feed: Some(self.feed.clone()),
            observer: Some(self.observer.clone()),
        })
    }

    /// Starts a transaction for reading only (never blocks writers on SQLite).
    pub async fn read(&self) -> Result<Tx, StoreError> {
        Ok(Tx {
            conn: Conn::Sqlx(self.pool.begin().await?),
            backend: self.backend,
            touched: Vec::new(),
            feed: None,
            observer: None,
        })
    }

    /// Closes every connection.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// One database transaction; rolled back on drop unless committed.
pub struct Tx {
    conn: Conn,
    backend: Backend,
    /// `(kind, id)` of every resource written so far, for the change feed.
    touched: Vec<(String, String)>,
    /// Where to announce the revision of this transaction's commit (writers only).
    feed: Option<Feed>,
    /// Where to report the commit (writers only).
    observer: Option<Observer>,
}

/// The file path of a `sqlite://PATH?options` (or `sqlite:PATH`) URL.
fn sqlite_path(url: &str) -> &str {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .unwrap_or(url);
    rest.split('?').next().unwrap_or(rest)
}

/// Rewrites `?` placeholders to `$n` for PostgreSQL.
fn sql(backend: Backend, text: &str) -> String {
    if backend == Backend::Sqlite {
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len() + 8);
    let mut n = 0;
    for c in text.chars() {
        if c == '?' {
            n += 1;
            out.push('$');
            out.push_str(&n.to_string());
        } else {
            out.push(c);
        }
    }
    out
}

fn placeholders(n: usize) -> String {
    vec!["?"; n].join(",")
}

/// `kind, id, project_id, parent_id, body` as selected.
type RecordRow = (String, String, String, Option<String>, String);

fn record((kind, id, project_id, parent_id, body): RecordRow) -> Result<Record, StoreError> {
    let body = Value::from_str(&body).map_err(|source| StoreError::Corrupt {
        id: id.clone(),
        source,
    })?;
    Ok(Record {
        kind,
        id,
        project_id,
        parent_id,
        body,
    })
}

impl Tx {
    /// Which engine runs this transaction.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Commits the transaction; if it wrote resources, appends them to the change feed under
    /// the next revision first.
    pub async fn commit(self) -> Result<(), StoreError> {
        self.commit_revision().await.map(drop)
    }

    /// Like [`Tx::commit`]; returns the feed revision of the commit (`None` when it wrote no
    /// resources).
    pub async fn commit_revision(mut self) -> Result<Option<i64>, StoreError> {
        let revision = if self.touched.is_empty() {
            None
        } else {
            Some(feed::append(&mut self).await?)
        };
        match self.conn {
            Conn::Sqlx(tx) => {
                let started = std::time::Instant::now();
                tx.commit().await?;
                if let Some(observer) = self.observer.as_ref().and_then(|o| o.get()) {
                    observer.committed(1, started.elapsed());
                }
            }
            // The writer reports the batch this member commits in.
            Conn::Writer(member) => member.commit().await?,
        }
        if let (Some(revision), Some(feed)) = (revision, &self.feed) {
            feed.committed_here(revision, &self.touched);
            feed.announce(revision);
        }
        Ok(revision)
    }

    fn touch(&mut self, kind: &str, id: &str) {
        self.touched.push((kind.to_string(), id.to_string()));
    }

    /// Inserts a new resource.
    pub async fn insert(&mut self, rec: &Record) -> Result<(), StoreError> {
        let body = rec.body.to_string();
        self.execute(
            "INSERT INTO resources (kind, id, project_id, parent_id, role, body) \
             VALUES (?, ?, ?, ?, ?, ?)",
            &[
                (&rec.kind).into(),
                (&rec.id).into(),
                (&rec.project_id).into(),
                rec.parent_id.as_deref().into(),
                role_of(&rec.body).into(),
                (&body).into(),
            ],
        )
        .await?;
        self.touch(&rec.kind, &rec.id);
        Ok(())
    }

    /// Replaces the document of an existing resource; false when it does not exist.
    pub async fn update(&mut self, kind: &str, id: &str, body: &Value) -> Result<bool, StoreError> {
        let role = role_of(body);
        let body = body.to_string();
        let n = self
            .execute(
                "UPDATE resources SET body = ?, role = ? WHERE kind = ? AND id = ?",
                &[(&body).into(), role.into(), kind.into(), id.into()],
            )
            .await?;
        if n > 0 {
            self.touch(kind, id);
        }
        Ok(n > 0)
    }

    /// Locks a resource row until the end of the transaction (a no-op write: PostgreSQL takes
    /// the row lock, SQLite already runs one writer at a time). Later reads in the
    /// transaction see everything committed by whoever held the lock before.
    pub async fn lock(&mut self, kind: &str, id: &str) -> Result<bool, StoreError> {
        let n = self
            .execute(
                "UPDATE resources SET seq = seq WHERE kind = ? AND id = ?",
                &[kind.into(), id.into()],
            )
            .await?;
        Ok(n > 0)
    }

    /// Deletes a resource; false when it did not exist.
    pub async fn delete(&mut self, kind: &str, id: &str) -> Result<bool, StoreError> {
        let n = self
            .execute(
                "DELETE FROM resources WHERE kind = ? AND id = ?",
                &[kind.into(), id.into()],
            )
            .await?;
        if n > 0 {
            self.touch(kind, id);
        }
        Ok(n > 0)
    }

    /// Fetches one resource by kind and id.
    pub async fn get(&mut self, kind: &str, id: &str) -> Result<Option<Record>, StoreError> {
        let row: Option<RecordRow> = self
            .fetch_optional(
                "SELECT kind, id, project_id, parent_id, body FROM resources \
                 WHERE kind = ? AND id = ?",
                &[kind.into(), id.into()],
            )
            .await?;
        row.map(record).transpose()
    }

    /// Lists resources of one kind in creation order.
    pub async fn list(&mut self, kind: &str, sel: &Selector) -> Result<Vec<Record>, StoreError> {
        let mut text = String::from(match self.backend {
            // One row holding a JSON array of [seq, id, project_id, parent_id, body] rows:
            // the SQLite driver of readers hands every result row over a channel from its
            // worker thread, so listing a thousand rows row by row costs a thousand thread
            // wake-ups. The rows are put in creation order here, not by an `ORDER BY` inside
            // the aggregate, which copies every body into a temporary b-tree first.
            Backend::Sqlite => {
                "SELECT '[' || coalesce(group_concat('[' || seq || ',' || json_quote(id) || \
                 ',' || json_quote(project_id) || ',' || json_quote(parent_id) || ',' || \
                 body || ']', ','), '') || ']' AS rows FROM resources WHERE kind = ?"
            }
            Backend::Postgres => {
                "SELECT kind, id, project_id, parent_id, body FROM resources WHERE kind = ?"
            }
        });
        let mut args: Vec<Arg<'_>> = vec![kind.into()];
        for (column, values) in [
            ("id", &sel.ids),
            ("project_id", &sel.project_ids),
            ("parent_id", &sel.parent_ids),
            ("role", &sel.roles),
        ] {
            if let Some(values) = values {
                if values.is_empty() {
                    return Ok(Vec::new());
                }
                text.push_str(&format!(
                    " AND {column} IN ({})",
                    placeholders(values.len())
                ));
                args.extend(values.iter().map(Arg::from));
            }
        }
        if self.backend == Backend::Postgres {
            text.push_str(" ORDER BY seq");
            let rows: Vec<RecordRow> = self.fetch_all(&text, &args).await?;
            return rows.into_iter().map(record).collect();
        }
        let (text,): (String,) = self.fetch_one(&text, &args).await?;
        let mut rows: Vec<(i64, String, String, Option<String>, Value)> =
            serde_json::from_str(&text).map_err(|source| StoreError::Corrupt {
                id: format!("{kind} listing"),
                source,
            })?;
        rows.sort_unstable_by_key(|row| row.0);
        Ok(rows
            .into_iter()
            .map(|(_, id, project_id, parent_id, body)| Record {
                kind: kind.to_string(),
                id,
                project_id,
                parent_id,
                body,
            })
            .collect())
    }

    /// Every resource (in creation order) and every claim `(scope, key, owner)`: the whole
    /// store, for consistency checks.
    pub async fn dump(
        &mut self,
    ) -> Result<(Vec<Record>, Vec<(String, String, String)>), StoreError> {
        let rows: Vec<RecordRow> = self
            .fetch_all(
                "SELECT kind, id, project_id, parent_id, body FROM resources ORDER BY seq",
                &[],
            )
            .await?;
        let records = rows
            .into_iter()
            .map(record)
            .collect::<Result<Vec<_>, _>>()?;
        let claims: Vec<(String, String, String)> = self
            .fetch_all(
                "SELECT scope, key, owner FROM claims ORDER BY scope, key",
                &[],
            )
            .await?;
        Ok((records, claims))
    }

    /// Runs a query that returns one integer.
    async fn scalar(&mut self, text: &str, args: &[Arg<'_>]) -> Result<i64, StoreError> {
        let (n,): (i64,) = self.fetch_one(text, args).await?;
        Ok(n)
    }

    /// Counts resources of one kind owned by a project.
    pub async fn count_owned(&mut self, kind: &str, project_id: &str) -> Result<i64, StoreError> {
        self.scalar(
            "SELECT COUNT(*) AS n FROM resources WHERE kind = ? AND project_id = ?",
            &[kind.into(), project_id.into()],
        )
        .await
    }

    /// Counts resources of one kind under a parent.
    pub async fn count_children(&mut self, kind: &str, parent_id: &str) -> Result<i64, StoreError> {
        self.scalar(
            "SELECT COUNT(*) AS n FROM resources WHERE kind = ? AND parent_id = ?",
            &[kind.into(), parent_id.into()],
        )
        .await
    }

    /// Claims `key` inside `scope` for `owner`; false when someone already holds it.
    ///
    /// Uniqueness is the database's primary key, so concurrent servers cannot both win.
    pub async fn claim(&mut self, scope: &str, key: &str, owner: &str) -> Result<bool, StoreError> {
        let n = self
            .execute(
                "INSERT INTO claims (scope, key, owner) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
                &[scope.into(), key.into(), owner.into()],
            )
            .await?;
        Ok(n == 1)
    }

    /// The owner of a claim, if the key is held.
    pub async fn claim_owner(
        &mut self,
        scope: &str,
        key: &str,
    ) -> Result<Option<String>, StoreError> {
        let row: Option<(String,)> = self
            .fetch_optional(
                "SELECT owner FROM claims WHERE scope = ? AND key = ?",
                &[scope.into(), key.into()],
            )
            .await?;
        Ok(row.map(|(owner,)| owner))
    }

    /// Releases one claim.
    pub async fn release(&mut self, scope: &str, key: &str) -> Result<(), StoreError> {
        self.execute(
            "DELETE FROM claims WHERE scope = ? AND key = ?",
            &[scope.into(), key.into()],
        )
        .await?;
        Ok(())
    }

    /// Releases every claim of a scope.
    pub async fn release_scope(&mut self, scope: &str) -> Result<(), StoreError> {
        self.execute("DELETE FROM claims WHERE scope = ?", &[scope.into()])
            .await?;
        Ok(())
    }

    /// Releases every claim of `owner` whose scope starts with `scope_prefix`.
    pub async fn release_owned(
        &mut self,
        scope_prefix: &str,
        owner: &str,
    ) -> Result<(), StoreError> {
        let pattern = format!("{scope_prefix}%");
        self.execute(
            "DELETE FROM claims WHERE owner = ? AND scope LIKE ?",
            &[owner.into(), (&pattern).into()],
        )
        .await?;
        Ok(())
    }

    /// Held keys of a scope that are `>= from` (and `< below`, when given), ascending, at most
    /// `limit` of them.
    pub async fn claimed_keys(
        &mut self,
        scope: &str,
        from: &str,
        below: Option<&str>,
        limit: i64,
    ) -> Result<Vec<String>, StoreError> {
        let rows: Vec<(String,)> = match below {
            Some(below) => {
                self.fetch_all(
                    "SELECT key FROM claims WHERE scope = ? AND key >= ? AND key < ? \
                     ORDER BY key LIMIT ?",
                    &[scope.into(), from.into(), below.into(), limit.into()],
                )
                .await?
            }
            None => {
                self.fetch_all(
                    "SELECT key FROM claims WHERE scope = ? AND key >= ? ORDER BY key LIMIT ?",
                    &[scope.into(), from.into(), limit.into()],
                )
                .await?
            }
        };
        Ok(rows.into_iter().map(|(key,)| key).collect())
    }

    /// The greatest held key of a scope that is `< below`, if any.
    pub async fn claimed_key_before(
        &mut self,
        scope: &str,
        below: &str,
    ) -> Result<Option<String>, StoreError> {
        let row: Option<(String,)> = self
            .fetch_optional(
                "SELECT key FROM claims WHERE scope = ? AND key < ? ORDER BY key DESC LIMIT 1",
                &[scope.into(), below.into()],
            )
            .await?;
        Ok(row.map(|(key,)| key))
    }

    /// `(parent_id, id)` of the resources of one kind under the given parents (all parents
    /// when `None`), in creation order; no documents are read.
    pub async fn child_ids(
        &mut self,
        kind: &str,
        parents: Option<&[String]>,
    ) -> Result<Vec<(String, String)>, StoreError> {
        let mut text = String::from(
            "SELECT parent_id, id FROM resources WHERE kind = ? AND parent_id IS NOT NULL",
        );
        if let Some(p) = parents {
            if p.is_empty() {
                return Ok(Vec::new());
            }
            text.push_str(&format!(" AND parent_id IN ({})", placeholders(p.len())));
        }
        text.push_str(" ORDER BY seq");
        let mut args: Vec<Arg<'_>> = vec![kind.into()];
        args.extend(parents.unwrap_or_default().iter().map(Arg::from));
        self.fetch_all(&text, &args).await
    }

    /// `(key, owner)` of the claims of a scope whose key lies in any of the half-open ranges
    /// `[from, below)`, in key order (one query, whatever the number of ranges).
    pub async fn claims_in_ranges(
        &mut self,
        scope: &str,
        ranges: &[(String, String)],
    ) -> Result<Vec<(String, String)>, StoreError> {
        if ranges.is_empty() {
            return Ok(Vec::new());
        }
        // The scope inside every alternative lets each be its own index range scan.
        let alternatives = vec!["(scope = ? AND key >= ? AND key < ?)"; ranges.len()].join(" OR ");
        let text = format!("SELECT key, owner FROM claims WHERE {alternatives} ORDER BY key");
        let mut args: Vec<Arg<'_>> = Vec::with_capacity(ranges.len() * 3);
        for (from, below) in ranges {
            args.extend([Arg::from(scope), Arg::from(from), Arg::from(below)]);
        }
        self.fetch_all(&text, &args).await
    }

    /// The lowest number ≥ 1 that nobody holds in `scope`, whose keys are decimal numbers
    /// zero-padded to the same width: one query, one ordered pass over the scope's keys
    /// inside the database (the first key that is not its own rank marks the gap).
    pub async fn lowest_free_number(&mut self, scope: &str) -> Result<i64, StoreError> {
        self.scalar(
            "SELECT COALESCE(\
               (SELECT MIN(rn) FROM (SELECT CAST(key AS BIGINT) AS n, \
                  ROW_NUMBER() OVER (ORDER BY key) AS rn FROM claims WHERE scope = ?) ranked \
                WHERE n <> rn), \
               (SELECT COUNT(*) FROM claims WHERE scope = ?) + 1) AS free",
            &[scope.into(), scope.into()],
        )
        .await
    }

    /// Number of keys held in a scope.
    pub async fn count_claims(&mut self, scope: &str) -> Result<i64, StoreError> {
        self.scalar(
            "SELECT COUNT(*) AS n FROM claims WHERE scope = ?",
            &[scope.into()],
        )
        .await
    }

    /// The explicit quota limits of a project, `(resource, limit)`.
    pub async fn quotas(&mut self, project_id: &str) -> Result<Vec<(String, i64)>, StoreError> {
        self.fetch_all(
            "SELECT resource, hard_limit FROM quotas WHERE project_id = ? ORDER BY resource",
            &[project_id.into()],
        )
        .await
    }

    /// Projects that have at least one explicit quota limit.
    pub async fn quota_projects(&mut self) -> Result<Vec<String>, StoreError> {
        let rows: Vec<(String,)> = self
            .fetch_all(
                "SELECT DISTINCT project_id FROM quotas ORDER BY project_id",
                &[],
            )
            .await?;
        Ok(rows.into_iter().map(|(p,)| p).collect())
    }

    /// Sets one explicit quota limit.
    pub async fn set_quota(
        &mut self,
        project_id: &str,
        resource: &str,
        limit: i64,
    ) -> Result<(), StoreError> {
        self.execute(
            "INSERT INTO quotas (project_id, resource, hard_limit) VALUES (?, ?, ?) \
             ON CONFLICT (project_id, resource) DO UPDATE SET hard_limit = excluded.hard_limit",
            &[project_id.into(), resource.into(), limit.into()],
        )
        .await?;
        Ok(())
    }

    /// Drops every explicit limit of a project.
    pub async fn delete_quotas(&mut self, project_id: &str) -> Result<(), StoreError> {
        self.execute(
            "DELETE FROM quotas WHERE project_id = ?",
            &[project_id.into()],
        )
        .await?;
        Ok(())
    }

    /// Records `host`'s latest counter report of port chain `chain_id` (replacing its
    /// previous one), received at `at` (milliseconds since the epoch). Not a resource: the
    /// change feed does not carry it.
    pub async fn put_chain_counters(
        &mut self,
        chain_id: &str,
        host: &str,
        at: i64,
        report: &str,
    ) -> Result<(), StoreError> {
        self.execute(
            "INSERT INTO sfc_chain_counters (chain_id, host, at, report) VALUES (?, ?, ?, ?) \
             ON CONFLICT (chain_id, host) DO UPDATE SET at = excluded.at, report = excluded.report",
            &[chain_id.into(), host.into(), at.into(), report.into()],
        )
        .await?;
        Ok(())
    }

    /// The latest counter report of every host for chain `chain_id` received at `since` or
    /// later, `(host, at, report)` by host.
    pub async fn chain_counters(
        &mut self,
        chain_id: &str,
        since: i64,
    ) -> Result<Vec<(String, i64, String)>, StoreError> {
        self.fetch_all(
            "SELECT host, at, report FROM sfc_chain_counters WHERE chain_id = ? AND at >= ? \
             ORDER BY host",
            &[chain_id.into(), since.into()],
        )
        .await
    }

    /// Forgets the counter reports of chain `chain_id` (it is deleted).
    pub async fn delete_chain_counters(&mut self, chain_id: &str) -> Result<(), StoreError> {
        self.execute(
            "DELETE FROM sfc_chain_counters WHERE chain_id = ?",
            &[chain_id.into()],
        )
        .await?;
        Ok(())
    }

    /// Records that `host`'s agent has applied (realised in its kernel) everything up to
    /// feed revision `revision`, reported at `at` (seconds since the epoch). Not a resource:
    /// the change feed does not carry it.
    pub async fn set_applied(
        &mut self,
        host: &str,
        revision: i64,
        at: i64,
    ) -> Result<(), StoreError> {
        self.execute(
            "INSERT INTO applied_revisions (host, revision, at) VALUES (?, ?, ?) \
             ON CONFLICT (host) DO UPDATE SET revision = excluded.revision, at = excluded.at",
            &[host.into(), revision.into(), at.into()],
        )
        .await?;
        Ok(())
    }

    /// The revision every host last said it applied, `(host, revision)` by host.
    pub async fn applied_revisions(&mut self) -> Result<Vec<(String, i64)>, StoreError> {
        self.fetch_all(
            "SELECT host, revision FROM applied_revisions ORDER BY host",
            &[],
        )
        .await
    }

    /// Port `port_id` is plugged on `host` as of revision `revision` and waits for the
    /// other hosts to apply that revision before it turns ACTIVE (replaces a previous wait).
    pub async fn put_port_barrier(
        &mut self,
        port_id: &str,
        host: &str,
        revision: i64,
    ) -> Result<(), StoreError> {
        self.execute(
            "INSERT INTO port_barriers (port_id, host, revision) VALUES (?, ?, ?) \
             ON CONFLICT (port_id) DO UPDATE SET host = excluded.host, revision = excluded.revision",
            &[port_id.into(), host.into(), revision.into()],
        )
        .await?;
        Ok(())
    }

    /// Every port waiting at the barrier, `(port, host, revision)` by port.
    pub async fn port_barriers(&mut self) -> Result<Vec<(String, String, i64)>, StoreError> {
        self.fetch_all(
            "SELECT port_id, host, revision FROM port_barriers ORDER BY port_id",
            &[],
        )
        .await
    }

    /// Port `port_id` no longer waits (it passed, went down, moved or is gone).
    pub async fn delete_port_barrier(&mut self, port_id: &str) -> Result<(), StoreError> {
        self.execute(
            "DELETE FROM port_barriers WHERE port_id = ?",
            &[port_id.into()],
        )
        .await?;
        Ok(())
    }

    /// Reads a server-wide setting.
    pub async fn setting(&mut self, name: &str) -> Result<Option<String>, StoreError> {
        let row: Option<(String,)> = self
            .fetch_optional("SELECT value FROM settings WHERE name = ?", &[name.into()])
            .await?;
        Ok(row.map(|(v,)| v))
    }

    /// Stores a setting unless it already exists; returns the value in force.
    pub async fn setting_or_insert(
        &mut self,
        name: &str,
        value: &str,
    ) -> Result<String, StoreError> {
        self.execute(
            "INSERT INTO settings (name, value) VALUES (?, ?) ON CONFLICT DO NOTHING",
            &[name.into(), value.into()],
        )
        .await?;
        Ok(self
            .setting(name)
            .await?
            .unwrap_or_else(|| value.to_string()))
    }
}

#[cfg(test)]
mod tests;
