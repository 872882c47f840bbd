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
//! SQLite allows one writer at a time, so write transactions on SQLite are serialised by an
//! in-process lock instead of failing with `SQLITE_BUSY`.

mod feed;
mod schema;

pub use feed::{Change, ChangePage, Feed, Snapshot};

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{Any, AnyPool, Row};
use tokio::sync::{Mutex, OwnedMutexGuard};

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
}

/// Handle to the database; cheap to clone.
#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    writer: Option<Arc<Mutex<()>>>,
    feed: Feed,
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
        let store = Store {
            pool,
            backend,
            writer: (backend == Backend::Sqlite).then(|| Arc::new(Mutex::new(()))),
            feed: Feed::new(),
        };
        schema::migrate(&store).await?;
        store.feed.start(&store, &url).await?;
        Ok(store)
    }

    /// The engine behind this store.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Starts a transaction that may write.
    pub async fn begin(&self) -> Result<Tx, StoreError> {
        let guard = match &self.writer {
            Some(lock) => Some(lock.clone().lock_owned().await),
            None => None,
        };
        // On SQLite take the write lock at BEGIN: a transaction that read first and then
        // wants to write could otherwise fail at once with SQLITE_BUSY while the rollback
        // of a previous (dropped) writer is still finishing on another connection.
        let tx = match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await?,
            Backend::Postgres => self.pool.begin().await?,
        };
        Ok(Tx {
            tx,
            backend: self.backend,
            _writer: guard,
            touched: Vec::new(),
            feed: Some(self.feed.clone()),
        })
    }

    /// Starts a transaction for reading only (never blocks writers on SQLite).
    pub async fn read(&self) -> Result<Tx, StoreError> {
        let tx = self.pool.begin().await?;
        Ok(Tx {
            tx,
            backend: self.backend,
            _writer: None,
            touched: Vec::new(),
            feed: None,
        })
    }

    /// Closes every connection.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// One database transaction; rolled back on drop unless committed.
pub struct Tx {
    tx: sqlx::Transaction<'static, Any>,
    backend: Backend,
    _writer: Option<OwnedMutexGuard<()>>,
    /// `(kind, id)` of every resource written so far, for the change feed.
    touched: Vec<(String, String)>,
    /// Where to announce the revision of this transaction's commit (writers only).
    feed: Option<Feed>,
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

fn record(row: &AnyRow) -> Result<Record, StoreError> {
    let id: String = row.try_get("id")?;
    let body: String = row.try_get("body")?;
    let body = Value::from_str(&body).map_err(|source| StoreError::Corrupt {
        id: id.clone(),
        source,
    })?;
    Ok(Record {
        kind: row.try_get("kind")?,
        id,
        project_id: row.try_get("project_id")?,
        parent_id: row.try_get("parent_id")?,
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
        self.tx.commit().await?;
        if let (Some(revision), Some(feed)) = (revision, &self.feed) {
            feed.announce(revision);
        }
        Ok(revision)
    }

    fn touch(&mut self, kind: &str, id: &str) {
        self.touched.push((kind.to_string(), id.to_string()));
    }

    /// Inserts a new resource.
    pub async fn insert(&mut self, rec: &Record) -> Result<(), StoreError> {
        let q = sql(
            self.backend,
            "INSERT INTO resources (kind, id, project_id, parent_id, body) VALUES (?, ?, ?, ?, ?)",
        );
        sqlx::query(&q)
            .bind(&rec.kind)
            .bind(&rec.id)
            .bind(&rec.project_id)
            .bind(rec.parent_id.as_deref())
            .bind(rec.body.to_string())
            .execute(&mut *self.tx)
            .await?;
        self.touch(&rec.kind, &rec.id);
        Ok(())
    }

    /// Replaces the document of an existing resource; false when it does not exist.
    pub async fn update(&mut self, kind: &str, id: &str, body: &Value) -> Result<bool, StoreError> {
        let q = sql(
            self.backend,
            "UPDATE resources SET body = ? WHERE kind = ? AND id = ?",
        );
        let done = sqlx::query(&q)
            .bind(body.to_string())
            .bind(kind)
            .bind(id)
            .execute(&mut *self.tx)
            .await?;
        if done.rows_affected() > 0 {
            self.touch(kind, id);
        }
        Ok(done.rows_affected() > 0)
    }

    /// Locks a resource row until the end of the transaction (a no-op write: PostgreSQL takes
    /// the row lock, SQLite already runs one writer at a time). Later reads in the
    /// transaction see everything committed by whoever held the lock before.
    pub async fn lock(&mut self, kind: &str, id: &str) -> Result<bool, StoreError> {
        let q = sql(
            self.backend,
            "UPDATE resources SET seq = seq WHERE kind = ? AND id = ?",
        );
        let done = sqlx::query(&q)
            .bind(kind)
            .bind(id)
            .execute(&mut *self.tx)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Deletes a resource; false when it did not exist.
    pub async fn delete(&mut self, kind: &str, id: &str) -> Result<bool, StoreError> {
        let q = sql(
            self.backend,
            "DELETE FROM resources WHERE kind = ? AND id = ?",
        );
        let done = sqlx::query(&q)
            .bind(kind)
            .bind(id)
            .execute(&mut *self.tx)
            .await?;
        if done.rows_affected() > 0 {
            self.touch(kind, id);
        }
        Ok(done.rows_affected() > 0)
    }

    /// Fetches one resource by kind and id.
    pub async fn get(&mut self, kind: &str, id: &str) -> Result<Option<Record>, StoreError> {
        let q = sql(
            self.backend,
            "SELECT kind, id, project_id, parent_id, body FROM resources WHERE kind = ? AND id = ?",
        );
        let row = sqlx::query(&q)
            .bind(kind)
            .bind(id)
            .fetch_optional(&mut *self.tx)
            .await?;
        row.as_ref().map(record).transpose()
    }

    /// Lists resources of one kind in creation order.
    pub async fn list(&mut self, kind: &str, sel: &Selector) -> Result<Vec<Record>, StoreError> {
        let mut text = String::from(match self.backend {
            // One row holding a JSON array of [id, project_id, parent_id, body] rows: the
            // SQLite driver hands every result row over a channel from its worker thread, so
            // listing a thousand rows row by row costs a thousand thread wake-ups.
            Backend::Sqlite => {
                "SELECT '[' || coalesce(group_concat('[' || json_quote(id) || ',' || \
                 json_quote(project_id) || ',' || json_quote(parent_id) || ',' || body || ']', \
                 ',' ORDER BY seq), '') || ']' AS rows FROM resources WHERE kind = ?"
            }
            Backend::Postgres => {
                "SELECT kind, id, project_id, parent_id, body FROM resources WHERE kind = ?"
            }
        });
        let mut binds: Vec<&str> = vec![kind];
        for (column, values) in [
            ("id", &sel.ids),
            ("project_id", &sel.project_ids),
            ("parent_id", &sel.parent_ids),
        ] {
            if let Some(values) = values {
                if values.is_empty() {
                    return Ok(Vec::new());
                }
                text.push_str(&format!(
                    " AND {column} IN ({})",
                    placeholders(values.len())
                ));
                binds.extend(values.iter().map(String::as_str));
            }
        }
        if self.backend == Backend::Postgres {
            text.push_str(" ORDER BY seq");
        }
        let q = sql(self.backend, &text);
        let mut query = sqlx::query(&q);
        for b in binds {
            query = query.bind(b);
        }
        if self.backend == Backend::Postgres {
            let rows = query.fetch_all(&mut *self.tx).await?;
            return rows.iter().map(record).collect();
        }
        let row = query.fetch_one(&mut *self.tx).await?;
        let text: String = row.try_get("rows")?;
        let rows: Vec<(String, String, Option<String>, Value)> = serde_json::from_str(&text)
            .map_err(|source| StoreError::Corrupt {
                id: format!("{kind} listing"),
                source,
            })?;
        Ok(rows
            .into_iter()
            .map(|(id, project_id, parent_id, body)| Record {
                kind: kind.to_string(),
                id,
                project_id,
                parent_id,
                body,
            })
            .collect())
    }

    /// Counts resources of one kind owned by a project.
    pub async fn count_owned(&mut self, kind: &str, project_id: &str) -> Result<i64, StoreError> {
        let q = sql(
            self.backend,
            "SELECT COUNT(*) AS n FROM resources WHERE kind = ? AND project_id = ?",
        );
        let row = sqlx::query(&q)
            .bind(kind)
            .bind(project_id)
            .fetch_one(&mut *self.tx)
            .await?;
        Ok(row.try_get("n")?)
    }

    /// Counts resources of one kind under a parent.
    pub async fn count_children(&mut self, kind: &str, parent_id: &str) -> Result<i64, StoreError> {
        let q = sql(
            self.backend,
            "SELECT COUNT(*) AS n FROM resources WHERE kind = ? AND parent_id = ?",
        );
        let row = sqlx::query(&q)
            .bind(kind)
            .bind(parent_id)
            .fetch_one(&mut *self.tx)
            .await?;
        Ok(row.try_get("n")?)
    }

    /// Claims `key` inside `scope` for `owner`; false when someone already holds it.
    ///
    /// Uniqueness is the database's primary key, so concurrent servers cannot both win.
    pub async fn claim(&mut self, scope: &str, key: &str, owner: &str) -> Result<bool, StoreError> {
        let q = sql(
            self.backend,
            "INSERT INTO claims (scope, key, owner) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
        );
        let done = sqlx::query(&q)
            .bind(scope)
            .bind(key)
            .bind(owner)
            .execute(&mut *self.tx)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// The owner of a claim, if the key is held.
    pub async fn claim_owner(
        &mut self,
        scope: &str,
        key: &str,
    ) -> Result<Option<String>, StoreError> {
        let q = sql(
            self.backend,
            "SELECT owner FROM claims WHERE scope = ? AND key = ?",
        );
        let row = sqlx::query(&q)
            .bind(scope)
            .bind(key)
            .fetch_optional(&mut *self.tx)
            .await?;
        Ok(row.map(|r| r.try_get("owner")).transpose()?)
    }

    /// Releases one claim.
    pub async fn release(&mut self, scope: &str, key: &str) -> Result<(), StoreError> {
        let q = sql(
            self.backend,
            "DELETE FROM claims WHERE scope = ? AND key = ?",
        );
        sqlx::query(&q)
            .bind(scope)
            .bind(key)
            .execute(&mut *self.tx)
            .await?;
        Ok(())
    }

    /// Releases every claim of a scope.
    pub async fn release_scope(&mut self, scope: &str) -> Result<(), StoreError> {
        let q = sql(self.backend, "DELETE FROM claims WHERE scope = ?");
        sqlx::query(&q).bind(scope).execute(&mut *self.tx).await?;
        Ok(())
    }

    /// Releases every claim of `owner` whose scope starts with `scope_prefix`.
    pub async fn release_owned(
        &mut self,
        scope_prefix: &str,
        owner: &str,
    ) -> Result<(), StoreError> {
        let q = sql(
            self.backend,
            "DELETE FROM claims WHERE owner = ? AND scope LIKE ?",
        );
        sqlx::query(&q)
            .bind(owner)
            .bind(format!("{scope_prefix}%"))
            .execute(&mut *self.tx)
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
        let text = match below {
            Some(_) => "SELECT key FROM claims WHERE scope = ? AND key >= ? AND key < ? ORDER BY key LIMIT ?",
            None => "SELECT key FROM claims WHERE scope = ? AND key >= ? ORDER BY key LIMIT ?",
        };
        let q = sql(self.backend, text);
        let mut query = sqlx::query(&q).bind(scope).bind(from);
        if let Some(below) = below {
            query = query.bind(below);
        }
        let rows = query.bind(limit).fetch_all(&mut *self.tx).await?;
        rows.iter()
            .map(|r| r.try_get("key").map_err(StoreError::from))
            .collect()
    }

    /// The greatest held key of a scope that is `< below`, if any.
    pub async fn claimed_key_before(
        &mut self,
        scope: &str,
        below: &str,
    ) -> Result<Option<String>, StoreError> {
        let q = sql(
            self.backend,
            "SELECT key FROM claims WHERE scope = ? AND key < ? ORDER BY key DESC LIMIT 1",
        );
        let row = sqlx::query(&q)
            .bind(scope)
            .bind(below)
            .fetch_optional(&mut *self.tx)
            .await?;
        Ok(row.map(|r| r.try_get("key")).transpose()?)
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
        let q = sql(self.backend, &text);
        let mut query = sqlx::query(&q).bind(kind);
        for id in parents.unwrap_or_default() {
            query = query.bind(id);
        }
        let rows = query.fetch_all(&mut *self.tx).await?;
        rows.iter()
            .map(|r| Ok((r.try_get("parent_id")?, r.try_get("id")?)))
            .collect()
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
        let q = sql(self.backend, &text);
        let mut query = sqlx::query(&q);
        for (from, below) in ranges {
            query = query.bind(scope).bind(from).bind(below);
        }
        let rows = query.fetch_all(&mut *self.tx).await?;
        rows.iter()
            .map(|r| Ok((r.try_get("key")?, r.try_get("owner")?)))
            .collect()
    }

    /// The lowest number ≥ 1 that nobody holds in `scope`, whose keys are decimal numbers
    /// zero-padded to the same width: one query, one ordered pass over the scope's keys
    /// inside the database (the first key that is not its own rank marks the gap).
    pub async fn lowest_free_number(&mut self, scope: &str) -> Result<i64, StoreError> {
        let q = sql(
            self.backend,
            "SELECT COALESCE(\
               (SELECT MIN(rn) FROM (SELECT CAST(key AS BIGINT) AS n, \
                  ROW_NUMBER() OVER (ORDER BY key) AS rn FROM claims WHERE scope = ?) ranked \
                WHERE n <> rn), \
               (SELECT COUNT(*) FROM claims WHERE scope = ?) + 1) AS free",
        );
        let row = sqlx::query(&q)
            .bind(scope)
            .bind(scope)
            .fetch_one(&mut *self.tx)
            .await?;
        Ok(row.try_get("free")?)
    }

    /// Number of keys held in a scope.
    pub async fn count_claims(&mut self, scope: &str) -> Result<i64, StoreError> {
        let q = sql(
            self.backend,
            "SELECT COUNT(*) AS n FROM claims WHERE scope = ?",
        );
        let row = sqlx::query(&q).bind(scope).fetch_one(&mut *self.tx).await?;
        Ok(row.try_get("n")?)
    }

    /// The explicit quota limits of a project, `(resource, limit)`.
    pub async fn quotas(&mut self, project_id: &str) -> Result<Vec<(String, i64)>, StoreError> {
        let q = sql(
            self.backend,
            "SELECT resource, hard_limit FROM quotas WHERE project_id = ? ORDER BY resource",
        );
        let rows = sqlx::query(&q)
            .bind(project_id)
            .fetch_all(&mut *self.tx)
            .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("resource")?, r.try_get("hard_limit")?)))
            .collect()
    }

    /// Projects that have at least one explicit quota limit.
    pub async fn quota_projects(&mut self) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query("SELECT DISTINCT project_id FROM quotas ORDER BY project_id")
            .fetch_all(&mut *self.tx)
            .await?;
        rows.iter()
            .map(|r| r.try_get("project_id").map_err(StoreError::from))
            .collect()
    }

    /// Sets one explicit quota limit.
    pub async fn set_quota(
        &mut self,
        project_id: &str,
        resource: &str,
        limit: i64,
    ) -> Result<(), StoreError> {
        let q = sql(
            self.backend,
            "INSERT INTO quotas (project_id, resource, hard_limit) VALUES (?, ?, ?) \
             ON CONFLICT (project_id, resource) DO UPDATE SET hard_limit = excluded.hard_limit",
        );
        sqlx::query(&q)
            .bind(project_id)
            .bind(resource)
            .bind(limit)
            .execute(&mut *self.tx)
            .await?;
        Ok(())
    }

    /// Drops every explicit limit of a project.
    pub async fn delete_quotas(&mut self, project_id: &str) -> Result<(), StoreError> {
        let q = sql(self.backend, "DELETE FROM quotas WHERE project_id = ?");
        sqlx::query(&q)
            .bind(project_id)
            .execute(&mut *self.tx)
            .await?;
        Ok(())
    }

    /// Reads a server-wide setting.
    pub async fn setting(&mut self, name: &str) -> Result<Option<String>, StoreError> {
        let q = sql(self.backend, "SELECT value FROM settings WHERE name = ?");
        let row = sqlx::query(&q)
            .bind(name)
            .fetch_optional(&mut *self.tx)
            .await?;
        Ok(row.map(|r| r.try_get("value")).transpose()?)
    }

    /// Stores a setting unless it already exists; returns the value in force.
    pub async fn setting_or_insert(
        &mut self,
        name: &str,
        value: &str,
    ) -> Result<String, StoreError> {
        let q = sql(
            self.backend,
            "INSERT INTO settings (name, value) VALUES (?, ?) ON CONFLICT DO NOTHING",
        );
        sqlx::query(&q)
            .bind(name)
            .bind(value)
            .execute(&mut *self.tx)
            .await?;
        Ok(self
            .setting(name)
            .await?
            .unwrap_or_else(|| value.to_string()))
    }
}

#[cfg(test)]
mod tests;
