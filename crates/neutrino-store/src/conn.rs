//! One statement interface over the two ways a [`Tx`] reaches its database: an sqlx
//! transaction (PostgreSQL, and SQLite readers) or a member of the in-process SQLite writer
//! (see [`crate::writer`]), whose statements run on the calling thread.
//!
//! Statements are written once, with `?` placeholders; rows come back as tuples.

use sqlx::any::{AnyArguments, AnyRow};
use sqlx::query::Query;
use sqlx::{Any, Row};

use crate::writer::Member;
use crate::{sql, StoreError, Tx};

/// A statement parameter.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Arg<'a> {
    Text(&'a str),
    OptText(Option<&'a str>),
    Int(i64),
}

impl<'a> Arg<'a> {
    fn bind(self, query: Query<'a, Any, AnyArguments<'a>>) -> Query<'a, Any, AnyArguments<'a>> {
        match self {
            Arg::Text(v) => query.bind(v),
            Arg::OptText(v) => query.bind(v),
            Arg::Int(v) => query.bind(v),
        }
    }
}

impl rusqlite::ToSql for Arg<'_> {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        match self {
            Arg::Text(v) => v.to_sql(),
            Arg::OptText(v) => v.to_sql(),
            Arg::Int(v) => v.to_sql(),
        }
    }
}

impl<'a> From<&'a str> for Arg<'a> {
    fn from(v: &'a str) -> Self {
        Arg::Text(v)
    }
}

impl<'a> From<&'a String> for Arg<'a> {
    fn from(v: &'a String) -> Self {
        Arg::Text(v)
    }
}

impl<'a> From<Option<&'a str>> for Arg<'a> {
    fn from(v: Option<&'a str>) -> Self {
        Arg::OptText(v)
    }
}

impl From<i64> for Arg<'_> {
    fn from(v: i64) -> Self {
        Arg::Int(v)
    }
}

/// A column type both drivers decode (`String`, `i64`, `Option<String>` ...).
pub(crate) trait Col:
    for<'r> sqlx::Decode<'r, Any> + sqlx::Type<Any> + rusqlite::types::FromSql
{
}

impl<T> Col for T where T: for<'r> sqlx::Decode<'r, Any> + sqlx::Type<Any> + rusqlite::types::FromSql
{}

/// A result row as a tuple, columns by position.
pub(crate) trait FromRow: Sized {
    fn from_any(row: &AnyRow) -> Result<Self, sqlx::Error>;
    fn from_lite(row: &rusqlite::Row<'_>) -> rusqlite::Result<Self>;
}

macro_rules! tuple_row {
    ($($t:ident $i:tt),+) => {
        impl<$($t: Col),+> FromRow for ($($t,)+) {
            fn from_any(row: &AnyRow) -> Result<Self, sqlx::Error> {
                Ok(($(row.try_get::<$t, _>($i)?,)+))
            }
            fn from_lite(row: &rusqlite::Row<'_>) -> rusqlite::Result<Self> {
                Ok(($(row.get::<_, $t>($i)?,)+))
            }
        }
    };
}

tuple_row!(A 0);
tuple_row!(A 0, B 1);
tuple_row!(A 0, B 1, C 2);
tuple_row!(A 0, B 1, C 2, D 3);
tuple_row!(A 0, B 1, C 2, D 3, E 4);

/// Where a transaction's statements go.
pub(crate) enum Conn {
    Sqlx(sqlx::Transaction<'static, Any>),
    Writer(Member),
}

impl Tx {
    /// Runs a statement; returns the number of rows it changed.
    pub(crate) async fn execute(
        &mut self,
        text: &str,
        args: &[Arg<'_>],
    ) -> Result<u64, StoreError> {
        match &mut self.conn {
            Conn::Sqlx(tx) => {
                let q = sql(self.backend, text);
                let mut query = sqlx::query(&q);
                for a in args {
                    query = a.bind(query);
                }
                Ok(query.execute(&mut **tx).await?.rows_affected())
            }
            Conn::Writer(m) => {
                let mut stmt = m.conn()?.prepare_cached(text)?;
                Ok(stmt.execute(rusqlite::params_from_iter(args))? as u64)
            }
        }
    }

    /// Runs a query; returns every row.
    pub(crate) async fn fetch_all<R: FromRow>(
        &mut self,
        text: &str,
        args: &[Arg<'_>],
    ) -> Result<Vec<R>, StoreError> {
        match &mut self.conn {
            Conn::Sqlx(tx) => {
                let q = sql(self.backend, text);
                let mut query = sqlx::query(&q);
                for a in args {
                    query = a.bind(query);
                }
                let rows = query.fetch_all(&mut **tx).await?;
                Ok(rows.iter().map(R::from_any).collect::<Result<_, _>>()?)
            }
            Conn::Writer(m) => {
                let mut stmt = m.conn()?.prepare_cached(text)?;
                let rows = stmt.query_map(rusqlite::params_from_iter(args), R::from_lite)?;
                Ok(rows.collect::<Result<_, _>>()?)
            }
        }
    }

    /// Runs a query; returns its first row, if any.
    pub(crate) async fn fetch_optional<R: FromRow>(
        &mut self,
        text: &str,
        args: &[Arg<'_>],
    ) -> Result<Option<R>, StoreError> {
        match &mut self.conn {
            Conn::Sqlx(tx) => {
                let q = sql(self.backend, text);
                let mut query = sqlx::query(&q);
                for a in args {
                    query = a.bind(query);
                }
                let row = query.fetch_optional(&mut **tx).await?;
                Ok(row.as_ref().map(R::from_any).transpose()?)
            }
            Conn::Writer(m) => {
                let mut stmt = m.conn()?.prepare_cached(text)?;
                let mut rows = stmt.query(rusqlite::params_from_iter(args))?;
                Ok(rows.next()?.map(R::from_lite).transpose()?)
            }
        }
    }

    /// Runs a query that always returns a row (an aggregate, `RETURNING`).
    pub(crate) async fn fetch_one<R: FromRow>(
        &mut self,
        text: &str,
        args: &[Arg<'_>],
    ) -> Result<R, StoreError> {
        self.fetch_optional(text, args)
            .await?
            .ok_or(StoreError::Database(sqlx::Error::RowNotFound))
    }
}
