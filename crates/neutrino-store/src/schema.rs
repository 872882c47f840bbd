//! Schema migrations, one ordered list per backend; `schema_version` records how far a
//! database has come. On PostgreSQL an advisory lock keeps two servers starting at once from
//! migrating concurrently.

use sqlx::{Acquire, Row};

use crate::{Backend, Store, StoreError};

/// The `sfc_chain_counters` migration, the same on both backends.
const SFC_CHAIN_COUNTERS: &str = r#"
CREATE TABLE sfc_chain_counters (
    chain_id TEXT NOT NULL,
    host TEXT NOT NULL,
    at BIGINT NOT NULL,
    report TEXT NOT NULL,
    PRIMARY KEY (chain_id, host)
);
"#;

/// The realisation barrier's migration (applied revisions, waiting ports), the same on both
/// backends.
const BARRIER_TABLES: &str = r#"
CREATE TABLE applied_revisions (
    host TEXT PRIMARY KEY,
    revision BIGINT NOT NULL,
    at BIGINT NOT NULL
);
CREATE TABLE port_barriers (
    port_id TEXT PRIMARY KEY,
    host TEXT NOT NULL,
    revision BIGINT NOT NULL
);
"#;

/// A resource's `role` column: a port's `device_owner`, indexed under its network, so a
/// network's router or DHCP ports are found without reading every port of it. And the
/// claims `fip:port:<port>` that index the floating IPs associated with a port.
const ROLE_SQLITE: &str = r#"
ALTER TABLE resources ADD COLUMN role TEXT;
UPDATE resources SET role = json_extract(body, '$.device_owner') WHERE kind = 'port';
CREATE INDEX resources_kind_parent_role ON resources (kind, parent_id, role);
INSERT INTO claims (scope, key, owner)
    SELECT 'fip:port:' || json_extract(body, '$.port_id'), id, id FROM resources
    WHERE kind = 'floatingip' AND json_extract(body, '$.port_id') IS NOT NULL;
"#;

/// [`ROLE_SQLITE`] for PostgreSQL.
const ROLE_POSTGRES: &str = r#"
ALTER TABLE resources ADD COLUMN role TEXT;
UPDATE resources SET role = (body::jsonb ->> 'device_owner') WHERE kind = 'port';
CREATE INDEX resources_kind_parent_role ON resources (kind, parent_id, role);
INSERT INTO claims (scope, key, owner)
    SELECT 'fip:port:' || (body::jsonb ->> 'port_id'), id, id FROM resources
    WHERE kind = 'floatingip' AND (body::jsonb ->> 'port_id') IS NOT NULL;
"#;

/// Each entry is one migration; never edit a released entry, append a new one.
const SQLITE: &[&str] = &[
    r#"
CREATE TABLE resources (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    id TEXT NOT NULL UNIQUE,
    project_id TEXT NOT NULL,
    parent_id TEXT,
    body TEXT NOT NULL
);
CREATE INDEX resources_kind_project ON resources (kind, project_id);
CREATE INDEX resources_kind_parent ON resources (kind, parent_id);
CREATE TABLE claims (
    scope TEXT NOT NULL,
    key TEXT NOT NULL,
    owner TEXT NOT NULL,
    PRIMARY KEY (scope, key)
);
CREATE INDEX claims_owner ON claims (owner);
CREATE TABLE quotas (
    project_id TEXT NOT NULL,
    resource TEXT NOT NULL,
    hard_limit BIGINT NOT NULL,
    PRIMARY KEY (project_id, resource)
);
CREATE TABLE settings (name TEXT PRIMARY KEY, value TEXT NOT NULL);
"#,
    r#"
CREATE TABLE changes (
    revision INTEGER PRIMARY KEY,
    items TEXT NOT NULL
);
CREATE TABLE heartbeats (
    host TEXT PRIMARY KEY,
    at BIGINT NOT NULL
);
"#,
    SFC_CHAIN_COUNTERS,
    BARRIER_TABLES,
    ROLE_SQLITE,
];

const POSTGRES: &[&str] = &[
    r#"
CREATE TABLE resources (
    seq BIGSERIAL PRIMARY KEY,
    kind TEXT NOT NULL,
    id TEXT NOT NULL UNIQUE,
    project_id TEXT NOT NULL,
    parent_id TEXT,
    body TEXT NOT NULL
);
CREATE INDEX resources_kind_project ON resources (kind, project_id);
CREATE INDEX resources_kind_parent ON resources (kind, parent_id);
CREATE TABLE claims (
    scope TEXT NOT NULL,
    key TEXT NOT NULL COLLATE "C",
    owner TEXT NOT NULL,
    PRIMARY KEY (scope, key)
);
CREATE INDEX claims_owner ON claims (owner);
CREATE TABLE quotas (
    project_id TEXT NOT NULL,
    resource TEXT NOT NULL,
    hard_limit BIGINT NOT NULL,
    PRIMARY KEY (project_id, resource)
);
CREATE TABLE settings (name TEXT PRIMARY KEY, value TEXT NOT NULL);
"#,
    r#"
CREATE TABLE changes (
    revision BIGINT PRIMARY KEY,
    items TEXT NOT NULL
);
CREATE TABLE feed_counter (only_row BOOLEAN PRIMARY KEY DEFAULT TRUE, revision BIGINT NOT NULL);
INSERT INTO feed_counter (revision) VALUES (0);
CREATE TABLE heartbeats (
    host TEXT PRIMARY KEY,
    at BIGINT NOT NULL
);
"#,
    SFC_CHAIN_COUNTERS,
    BARRIER_TABLES,
    ROLE_POSTGRES,
];

/// Arbitrary constant naming the migration lock on PostgreSQL.
const MIGRATION_LOCK: i64 = 0x6e65_7574_7269_6e6f;

pub(crate) async fn migrate(store: &Store) -> Result<(), StoreError> {
    let mut conn = store.pool.acquire().await?;
    let steps = match store.backend {
        Backend::Sqlite => SQLITE,
        Backend::Postgres => {
            sqlx::query(&format!("SELECT pg_advisory_lock({MIGRATION_LOCK})"))
                .execute(&mut *conn)
                .await?;
            POSTGRES
        }
    };
    let result = async {
        sqlx::raw_sql("CREATE TABLE IF NOT EXISTS schema_version (version BIGINT NOT NULL)")
            .execute(&mut *conn)
            .await?;
        let row = sqlx::query("SELECT MAX(version) AS v FROM schema_version")
            .fetch_one(&mut *conn)
            .await?;
        let done: Option<i64> = row.try_get("v")?;
        let done = done.unwrap_or(0) as usize;
        for (index, step) in steps.iter().enumerate().skip(done) {
            let mut tx = conn.begin().await?;
            sqlx::raw_sql(step).execute(&mut *tx).await?;
            sqlx::raw_sql(&format!(
                "INSERT INTO schema_version (version) VALUES ({})",
                index + 1
            ))
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            tracing::info!(version = index + 1, "applied schema migration");
        }
        Ok::<(), StoreError>(())
    }
    .await;
    if store.backend == Backend::Postgres {
        sqlx::query(&format!("SELECT pg_advisory_unlock({MIGRATION_LOCK})"))
            .execute(&mut *conn)
            .await?;
    }
    result
}
