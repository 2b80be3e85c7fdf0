//! Ward's SQL surface: one SQLite + SQLCipher connection (through `rusqlite`) behind a
//! small, shareable handle.
//!
//! [`Connection`] is cheap to clone and can be handed to the closures of
//! [`crate::Tenant::with`] and the control plane's pool; every call locks the one
//! underlying SQLite connection for the duration of that call only. The lock is
//! re-entrant, so a row callback may use the connection again on the same thread.
//!
//! Statements run through SQLite's own prepared-statement cache (`prepare_cached`), so a
//! query that runs on every page is parsed and planned once per connection.
//!
//! The calls are `async` in shape only: SQLite runs on the calling thread and the future
//! is ready when it is first polled. Callers keep SQLite off the async workers with
//! [`crate::blocking`] (or by running on a blocking thread), exactly as they must for any
//! synchronous call that may wait for the disk.
//!
//! Rows are read into plain [`Value`]s before a call returns, so no statement stays open
//! (and no read transaction lingers) between calls. Long reads that should not be held
//! in memory whole use [`Connection::for_each_row`].

use std::sync::Arc;

use parking_lot::ReentrantMutex;
use rusqlite::types::{ToSqlOutput, ValueRef};

/// How many prepared statements each connection keeps. The busiest pages and the audit
/// writer use about a dozen; a prepared statement costs a few KiB.
pub const STATEMENT_CACHE: usize = 48;

/// Why a statement failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// SQLite reported a failure: the extended result code and its message.
    #[error("SQLite failure: `{1}`")]
    SqliteFailure(i32, String),
    /// The caller used the API in a way it does not allow.
    #[error("{0}")]
    Misuse(String),
    /// A column held NULL where a value was required.
    #[error("column {0} is NULL")]
    NullValue(i32),
    /// A column's value does not convert to the type asked for.
    #[error("column {0} holds {1}, which is not the type asked for")]
    InvalidColumnType(i32, &'static str),
    /// There is no column at this index.
    #[error("there is no column {0}")]
    InvalidColumnIndex(i32),
    /// A row does not read as the type asked for by [`Row::decode`].
    #[error("the row does not read as asked: {0}")]
    Decode(String),
}

impl From<rusqlite::Error> for Error {
    fn from(e: rusqlite::Error) -> Self {
        match e {
            rusqlite::Error::SqliteFailure(err, msg) => {
                let text = msg.unwrap_or_else(|| err.to_string());
                Self::SqliteFailure(err.extended_code, text)
            }
            rusqlite::Error::InvalidColumnIndex(i) => {
                Self::InvalidColumnIndex(i32::try_from(i).unwrap_or(i32::MAX))
            }
            other => Self::Misuse(other.to_string()),
        }
    }
}

impl Error {
    /// The primary SQLite result code, when SQLite reported this error.
    pub fn primary_code(&self) -> Option<i32> {
        match self {
            Self::SqliteFailure(code, _) => Some(code & 0xff),
            _ => None,
        }
    }

    /// Whether this error means the file's pages are damaged or not a database:
    /// `SQLITE_CORRUPT` (which SQLCipher reports for a page whose HMAC does not match)
    /// or `SQLITE_NOTADB`.
    pub fn is_damage(&self) -> bool {
        matches!(self.primary_code(), Some(11 | 26))
    }
}

/// One SQL value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// SQL NULL.
    Null,
    /// A 64-bit integer.
    Integer(i64),
    /// A double.
    Real(f64),
    /// UTF-8 text.
    Text(String),
    /// Bytes.
    Blob(Vec<u8>),
}

impl Value {
    fn kind(&self) -> &'static str {
        match self {
            Self::Null => "NULL",
            Self::Integer(_) => "an integer",
            Self::Real(_) => "a real",
            Self::Text(_) => "text",
            Self::Blob(_) => "a blob",
        }
    }

    fn from_ref(v: ValueRef<'_>) -> Self {
        match v {
            ValueRef::Null => Self::Null,
            ValueRef::Integer(i) => Self::Integer(i),
            ValueRef::Real(r) => Self::Real(r),
            // A damaged or foreign text value is shown, not trusted: invalid UTF-8 is
            // replaced rather than turned into a panic or an error far from its cause.
            ValueRef::Text(t) => Self::Text(String::from_utf8_lossy(t).into_owned()),
            ValueRef::Blob(b) => Self::Blob(b.to_vec()),
        }
    }
}

impl rusqlite::ToSql for Value {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::Borrowed(match self {
            Self::Null => ValueRef::Null,
            Self::Integer(i) => ValueRef::Integer(*i),
            Self::Real(r) => ValueRef::Real(*r),
            Self::Text(s) => ValueRef::Text(s.as_bytes()),
            Self::Blob(b) => ValueRef::Blob(b),
        }))
    }
}

macro_rules! value_from_int {
    ($($t:ty),*) => {$(
        impl From<$t> for Value {
            fn from(v: $t) -> Self {
                Self::Integer(i64::from(v))
            }
        }
        impl From<&$t> for Value {
            fn from(v: &$t) -> Self {
                Self::Integer(i64::from(*v))
            }
        }
    )*};
}
value_from_int!(i64, i32, u32, i16, u16, u8, i8, bool);

macro_rules! value_from_wide_int {
    ($($t:ty),*) => {$(
        impl From<$t> for Value {
            /// Values past `i64::MAX` saturate: no count Ward stores comes near it.
            fn from(v: $t) -> Self {
                Self::Integer(i64::try_from(v).unwrap_or(i64::MAX))
            }
        }
        impl From<&$t> for Value {
            fn from(v: &$t) -> Self {
                Self::from(*v)
            }
        }
    )*};
}
value_from_wide_int!(u64, usize);

impl From<f64> for Value {
    fn from(v: f64) -> Self {
        Self::Real(v)
    }
}
impl From<String> for Value {
    fn from(v: String) -> Self {
        Self::Text(v)
    }
}
impl From<&String> for Value {
    fn from(v: &String) -> Self {
        Self::Text(v.clone())
    }
}
impl From<&str> for Value {
    fn from(v: &str) -> Self {
        Self::Text(v.to_owned())
    }
}
impl From<&&str> for Value {
    fn from(v: &&str) -> Self {
        Self::Text((*v).to_owned())
    }
}
impl From<Vec<u8>> for Value {
    fn from(v: Vec<u8>) -> Self {
        Self::Blob(v)
    }
}
impl From<&Vec<u8>> for Value {
    fn from(v: &Vec<u8>) -> Self {
        Self::Blob(v.clone())
    }
}
impl From<&[u8]> for Value {
    fn from(v: &[u8]) -> Self {
        Self::Blob(v.to_vec())
    }
}
impl<const N: usize> From<[u8; N]> for Value {
    fn from(v: [u8; N]) -> Self {
        Self::Blob(v.to_vec())
    }
}
impl From<&Value> for Value {
    fn from(v: &Value) -> Self {
        v.clone()
    }
}
impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Self {
        v.map_or(Self::Null, Into::into)
    }
}
impl From<&Option<String>> for Value {
    fn from(v: &Option<String>) -> Self {
        v.as_deref().map_or(Self::Null, Into::into)
    }
}
impl From<&Option<i64>> for Value {
    fn from(v: &Option<i64>) -> Self {
        v.map_or(Self::Null, Into::into)
    }
}

/// Parameters of a statement, by position (`?1`, `?2`, …).
#[derive(Debug, Clone, Default)]
pub struct Params(Vec<Value>);

impl Params {
    /// Parameters from a list of values.
    pub fn new(values: Vec<Value>) -> Self {
        Self(values)
    }
}

/// Anything that can be a statement's parameters.
pub trait IntoParams {
    /// The parameters.
    fn into_params(self) -> Params;
}

impl IntoParams for () {
    fn into_params(self) -> Params {
        Params::default()
    }
}
impl IntoParams for Params {
    fn into_params(self) -> Params {
        self
    }
}
impl IntoParams for Vec<Value> {
    fn into_params(self) -> Params {
        Params(self)
    }
}
impl<T: Into<Value>, const N: usize> IntoParams for [T; N] {
    fn into_params(self) -> Params {
        Params(self.into_iter().map(Into::into).collect())
    }
}

/// A column value as a chained row's field, for checking the row's hash.
impl<'a> From<&'a Value> for ward_core::chain::Field<'a> {
    fn from(v: &'a Value) -> Self {
        match v {
            Value::Null => Self::Null,
            Value::Integer(i) => Self::Int(*i),
            Value::Real(r) => Self::Real(*r),
            Value::Text(s) => Self::Text(s),
            Value::Blob(b) => Self::Blob(b),
        }
    }
}

/// Positional parameters from a list of expressions, each converted into a [`Value`].
#[macro_export]
macro_rules! sql_params {
    () => { $crate::sql::Params::default() };
    ($($x:expr),+ $(,)?) => {
        $crate::sql::Params::new(vec![$($crate::sql::Value::from($x)),+])
    };
}
pub use crate::sql_params as params;

/// Types a column value can be read as.
pub trait FromValue: Sized {
    /// Converts the value of column `idx`.
    fn from_value(v: &Value, idx: i32) -> Result<Self, Error>;
}

impl FromValue for Value {
    fn from_value(v: &Value, _: i32) -> Result<Self, Error> {
        Ok(v.clone())
    }
}
impl FromValue for i64 {
    fn from_value(v: &Value, idx: i32) -> Result<Self, Error> {
        match v {
            Value::Integer(i) => Ok(*i),
            Value::Null => Err(Error::NullValue(idx)),
            other => Err(Error::InvalidColumnType(idx, other.kind())),
        }
    }
}
macro_rules! from_value_int {
    ($($t:ty),*) => {$(
        impl FromValue for $t {
            fn from_value(v: &Value, idx: i32) -> Result<Self, Error> {
                let i = i64::from_value(v, idx)?;
                <$t>::try_from(i).map_err(|_| Error::InvalidColumnType(idx, "an integer out of range"))
            }
        }
    )*};
}
from_value_int!(i32, u32, u64, usize, u16, u8);
impl FromValue for bool {
    fn from_value(v: &Value, idx: i32) -> Result<Self, Error> {
        Ok(i64::from_value(v, idx)? != 0)
    }
}
impl FromValue for f64 {
    fn from_value(v: &Value, idx: i32) -> Result<Self, Error> {
        match v {
            Value::Real(r) => Ok(*r),
            // Integers are exact in a double up to 2^53; SQLite stores whole reals so.
            #[expect(clippy::cast_precision_loss, reason = "SQLite's own REAL affinity")]
            Value::Integer(i) => Ok(*i as f64),
            Value::Null => Err(Error::NullValue(idx)),
            other => Err(Error::InvalidColumnType(idx, other.kind())),
        }
    }
}
impl FromValue for String {
    fn from_value(v: &Value, idx: i32) -> Result<Self, Error> {
        match v {
            Value::Text(s) => Ok(s.clone()),
            Value::Null => Err(Error::NullValue(idx)),
            other => Err(Error::InvalidColumnType(idx, other.kind())),
        }
    }
}
impl FromValue for Vec<u8> {
    fn from_value(v: &Value, idx: i32) -> Result<Self, Error> {
        match v {
            Value::Blob(b) => Ok(b.clone()),
            Value::Null => Err(Error::NullValue(idx)),
            other => Err(Error::InvalidColumnType(idx, other.kind())),
        }
    }
}
impl<T: FromValue> FromValue for Option<T> {
    fn from_value(v: &Value, idx: i32) -> Result<Self, Error> {
        match v {
            Value::Null => Ok(None),
            other => T::from_value(other, idx).map(Some),
        }
    }
}

/// One row of a result, read into plain values.
#[derive(Debug, Clone)]
pub struct Row {
    columns: Arc<[String]>,
    values: Vec<Value>,
}

impl Row {
    fn read(columns: &Arc<[String]>, row: &rusqlite::Row<'_>) -> Result<Self, Error> {
        let mut values = Vec::with_capacity(columns.len());
        for i in 0..columns.len() {
            values.push(Value::from_ref(row.get_ref(i)?));
        }
        Ok(Self {
            columns: columns.clone(),
            values,
        })
    }

    fn value(&self, idx: i32) -> Result<&Value, Error> {
        usize::try_from(idx)
            .ok()
            .and_then(|i| self.values.get(i))
            .ok_or(Error::InvalidColumnIndex(idx))
    }

    /// Column `idx` (from 0) as a `T`.
    pub fn get<T: FromValue>(&self, idx: i32) -> Result<T, Error> {
        T::from_value(self.value(idx)?, idx)
    }

    /// The row as a `T` whose fields are named as the query's columns (`SELECT a AS b`
    /// names one), for rows whose values need no conversion of their own.
    pub fn decode<T: serde::de::DeserializeOwned>(&self) -> Result<T, Error> {
        T::deserialize(decode::RowDecoder(self))
    }

    /// Column `idx` as a plain value.
    pub fn get_value(&self, idx: i32) -> Result<Value, Error> {
        self.value(idx).cloned()
    }

    /// How many columns the row has.
    pub fn column_count(&self) -> i32 {
        index_count(self.values.len())
    }

    /// The name of column `idx`.
    pub fn column_name(&self, idx: i32) -> Option<&str> {
        name_at(&self.columns, idx)
    }
}

/// Reads a row into a type whose fields are named as the query's columns.
mod decode {
    use serde::de::{self, DeserializeSeed, IntoDeserializer, MapAccess, Visitor};

    use super::{Error, Row, Value, index_count};

    impl de::Error for Error {
        fn custom<T: std::fmt::Display>(msg: T) -> Self {
            Self::Decode(msg.to_string())
        }
    }

    /// A whole row, as a map from column name to value.
    pub(super) struct RowDecoder<'a>(pub(super) &'a Row);

    impl<'de> de::Deserializer<'de> for RowDecoder<'_> {
        type Error = Error;

        fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
            visitor.visit_map(Columns {
                row: self.0,
                next: 0,
            })
        }

        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes
            byte_buf option unit unit_struct newtype_struct seq tuple tuple_struct map
            struct enum identifier ignored_any
        }
    }

    /// The columns of a row, one after the other.
    struct Columns<'a> {
        row: &'a Row,
        next: usize,
    }

    impl<'de> MapAccess<'de> for Columns<'_> {
        type Error = Error;

        fn next_key_seed<K: DeserializeSeed<'de>>(
            &mut self,
            seed: K,
        ) -> Result<Option<K::Value>, Error> {
            match self.row.columns.get(self.next) {
                Some(name) => seed
                    .deserialize(name.as_str().into_deserializer())
                    .map(Some),
                None => Ok(None),
            }
        }

        fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Error> {
            let idx = index_count(self.next);
            self.next += 1;
            seed.deserialize(ValueDecoder(self.row.value(idx)?))
        }
    }

    /// One column's value. NULL reads as `None`, an integer as a `bool` (0 is false)
    /// or any number type it fits, a real as a float, text as a string.
    struct ValueDecoder<'a>(&'a Value);

    impl<'de> de::Deserializer<'de> for ValueDecoder<'_> {
        type Error = Error;

        fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
            match self.0 {
                Value::Null => visitor.visit_none(),
                Value::Integer(i) => visitor.visit_i64(*i),
                Value::Real(r) => visitor.visit_f64(*r),
                Value::Text(s) => visitor.visit_str(s),
                Value::Blob(b) => visitor.visit_bytes(b),
            }
        }

        fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
            match self.0 {
                Value::Null => visitor.visit_none(),
                _ => visitor.visit_some(self),
            }
        }

        fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
            match self.0 {
                Value::Integer(i) => visitor.visit_bool(*i != 0),
                _ => self.deserialize_any(visitor),
            }
        }

        fn deserialize_newtype_struct<V: Visitor<'de>>(
            self,
            _name: &'static str,
            visitor: V,
        ) -> Result<V::Value, Error> {
            visitor.visit_newtype_struct(self)
        }

        serde::forward_to_deserialize_any! {
            i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes
            byte_buf unit unit_struct seq tuple tuple_struct map struct enum identifier
            ignored_any
        }
    }
}

/// The column list `columns` ("a, b, c") with each name qualified by the table alias
/// `alias` ("t.a, t.b, t.c"), for a query that joins another table.
pub fn qualified(alias: &str, columns: &str) -> String {
    columns
        .split(", ")
        .map(|c| format!("{alias}.{c}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A column count as the `i32` SQLite's API speaks in.
fn index_count(n: usize) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

/// The name of column `idx` among `columns`.
fn name_at(columns: &[String], idx: i32) -> Option<&str> {
    usize::try_from(idx)
        .ok()
        .and_then(|i| columns.get(i))
        .map(String::as_str)
}

/// The rows of a query, already read.
#[derive(Debug)]
pub struct Rows {
    columns: Arc<[String]>,
    rows: std::vec::IntoIter<Row>,
}

impl Rows {
    /// The next row, if any.
    pub async fn next(&mut self) -> Result<Option<Row>, Error> {
        Ok(self.rows.next())
    }

    /// How many columns each row has.
    pub fn column_count(&self) -> i32 {
        index_count(self.columns.len())
    }

    /// The name of column `idx`.
    pub fn column_name(&self, idx: i32) -> Option<&str> {
        name_at(&self.columns, idx)
    }
}

/// A shareable handle on one SQLite connection.
#[derive(Clone)]
pub struct Connection {
    inner: Arc<Shared>,
}

struct Shared {
    conn: ReentrantMutex<rusqlite::Connection>,
    /// Told before the connection closes, when its database is replicated.
    watched: Option<(std::path::PathBuf, Arc<dyn crate::db::WalWatch>)>,
    /// The first error since [`Connection::take_damage`] that said the file is damaged.
    damage: parking_lot::Mutex<Option<String>>,
}

impl Drop for Shared {
    fn drop(&mut self) {
        if let Some((path, watch)) = &self.watched {
            watch.closing(path, &self.conn.lock());
        }
    }
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Connection")
    }
}

fn columns_of(stmt: &rusqlite::Statement<'_>) -> Arc<[String]> {
    stmt.column_names().map(str::to_owned).collect()
}

impl Connection {
    /// Wraps a configured connection. Only [`crate::db::open`] calls this.
    pub(crate) fn new(
        conn: rusqlite::Connection,
        watched: Option<(std::path::PathBuf, Arc<dyn crate::db::WalWatch>)>,
    ) -> Self {
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        Self {
            inner: Arc::new(Shared {
                conn: ReentrantMutex::new(conn),
                watched,
                damage: parking_lot::Mutex::new(None),
            }),
        }
    }

    /// Remembers `e` if it says the file is damaged, and passes it on.
    fn note(&self, e: impl Into<Error>) -> Error {
        let e = e.into();
        if e.is_damage() {
            self.inner
                .damage
                .lock()
                .get_or_insert_with(|| e.to_string());
        }
        e
    }

    /// The damage a statement on this connection ran into since the last call, if any:
    /// the caller (the tenant store) takes the clinic out of service and names it.
    pub fn take_damage(&self) -> Option<String> {
        self.inner.damage.lock().take()
    }

    /// Runs `f` on the underlying connection, for what this handle does not wrap (the
    /// backup API, pragmas with unusual results). Keeps the connection for the call.
    pub fn with_raw<T>(&self, f: impl FnOnce(&rusqlite::Connection) -> T) -> T {
        let guard = self.inner.conn.lock();
        f(&guard)
    }

    /// Whether this is the only handle on the connection (so dropping it closes it).
    pub fn is_last_handle(&self) -> bool {
        Arc::strong_count(&self.inner) == 1
    }

    /// Runs a statement that returns no rows (or whose rows are not wanted); the number
    /// of rows it changed.
    pub async fn execute(&self, sql: &str, params: impl IntoParams) -> Result<u64, Error> {
        self.execute_now(sql, params)
    }

    /// [`Self::execute`], called synchronously.
    pub fn execute_now(&self, sql: &str, params: impl IntoParams) -> Result<u64, Error> {
        let params = params.into_params();
        let conn = self.inner.conn.lock();
        let run = || -> rusqlite::Result<u64> {
            let mut stmt = conn.prepare_cached(sql)?;
            let mut rows = stmt.query(rusqlite::params_from_iter(params.0.iter()))?;
            // Step to the end: a statement with rows (a pragma, `RETURNING`) runs fully.
            while rows.next()?.is_some() {}
            Ok(conn.changes())
        };
        run().map_err(|e| self.note(e))
    }

    /// Runs several statements separated by semicolons, with no parameters.
    pub async fn execute_batch(&self, sql: &str) -> Result<(), Error> {
        self.execute_batch_now(sql)
    }

    /// [`Self::execute_batch`], called synchronously.
    pub fn execute_batch_now(&self, sql: &str) -> Result<(), Error> {
        self.inner
            .conn
            .lock()
            .execute_batch(sql)
            .map_err(|e| self.note(e))
    }

    /// Every row of a query.
    pub async fn query(&self, sql: &str, params: impl IntoParams) -> Result<Rows, Error> {
        self.query_now(sql, params)
    }

    /// [`Self::query`], called synchronously.
    pub fn query_now(&self, sql: &str, params: impl IntoParams) -> Result<Rows, Error> {
        let mut out = Vec::new();
        let columns = self.for_each_row(sql, params, |row| {
            out.push(row.clone());
            Ok::<_, Error>(())
        })?;
        Ok(Rows {
            columns,
            rows: out.into_iter(),
        })
    }

    /// Runs a query and hands each row to `f` as it is read, without keeping the rows:
    /// for reads too large to hold in memory. Returns the column names.
    pub fn for_each_row<E: From<Error>>(
        &self,
        sql: &str,
        params: impl IntoParams,
        mut f: impl FnMut(&Row) -> Result<(), E>,
    ) -> Result<Arc<[String]>, E> {
        let params = params.into_params();
        let conn = self.inner.conn.lock();
        let mut stmt = conn.prepare_cached(sql).map_err(|e| self.note(e))?;
        let columns = columns_of(&stmt);
        let mut rows = stmt
            .query(rusqlite::params_from_iter(params.0.iter()))
            .map_err(|e| self.note(e))?;
        while let Some(row) = rows.next().map_err(|e| self.note(e))? {
            f(&Row::read(&columns, row).map_err(|e| self.note(e))?)?;
        }
        Ok(columns)
    }

    /// The first row of a query, if any; the statement is reset after it.
    pub fn first_row_now(&self, sql: &str, params: impl IntoParams) -> Result<Option<Row>, Error> {
        let params = params.into_params();
        let conn = self.inner.conn.lock();
        let run = || -> Result<Option<Row>, Error> {
            let mut stmt = conn.prepare_cached(sql)?;
            let columns = columns_of(&stmt);
            let mut rows = stmt.query(rusqlite::params_from_iter(params.0.iter()))?;
            match rows.next()? {
                Some(row) => Ok(Some(Row::read(&columns, row)?)),
                None => Ok(None),
            }
        };
        run().map_err(|e| self.note(e))
    }

    /// Whether no transaction is open.
    pub fn is_autocommit(&self) -> bool {
        self.inner.conn.lock().is_autocommit()
    }

    /// The rowid of the last row inserted on this connection.
    pub fn last_insert_rowid(&self) -> i64 {
        self.inner.conn.lock().last_insert_rowid()
    }

    /// Rows changed by the last statement.
    pub fn changes(&self) -> u64 {
        self.inner.conn.lock().changes()
    }

    /// Rows changed since the connection opened.
    pub fn total_changes(&self) -> u64 {
        self.inner.conn.lock().total_changes()
    }

    /// Releases the memory SQLite holds for this connection that it can do without
    /// (unpinned page-cache pages, lookaside): for a connection going idle.
    pub fn release_memory(&self) {
        // Best effort: a connection that cannot shrink just keeps its cache.
        let _ = self.inner.conn.lock().release_memory();
    }
}

#[cfg(test)]
impl Connection {
    /// How often SQLite recompiled the cached statement for `sql`.
    fn reprepares(&self, sql: &str) -> i32 {
        let conn = self.inner.conn.lock();
        conn.prepare_cached(sql)
            .map_or(-1, |s| s.get_status(rusqlite::StatementStatus::RePrepare))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_bound_values_do_not_recompile_a_cached_statement() {
        const SQL: &str = "SELECT n FROM t WHERE n >= ?1 AND ?3 ORDER BY n LIMIT ?2";
        let run = |c: &Connection| {
            c.execute_batch_now(
                "CREATE TABLE t (n INTEGER); CREATE INDEX t_n ON t (n);
                 INSERT INTO t VALUES (1), (2), (3), (4), (5);",
            )
            .unwrap();
            for i in 0..20_i64 {
                let mut got = Vec::new();
                c.for_each_row(SQL, params![i % 5, i % 3 + 1, i % 2], |r| {
                    got.push(r.get::<i64>(0)?);
                    Ok::<_, Error>(())
                })
                .unwrap();
                assert!(got.len() <= usize::try_from(i % 3 + 1).unwrap());
            }
            c.reprepares(SQL)
        };
        let dir = tempfile::tempdir().unwrap();
        let configured = crate::db::open_now(
            &dir.path().join("a.db"),
            &crate::DataKey::random(),
            true,
            crate::Durability::Full,
        )
        .unwrap()
        .conn;
        assert_eq!(run(&configured), 0, "Ward's connections keep their plans");
        // The same on a connection without Ward's settings: SQLite recompiles.
        assert!(run(&conn()) > 0, "the check would see a recompile");
    }

    fn conn() -> Connection {
        Connection::new(rusqlite::Connection::open_in_memory().unwrap(), None)
    }

    /// [`conn`] to a database that `schema` has set up.
    async fn conn_with(schema: &str) -> Connection {
        let c = conn();
        c.execute_batch(schema).await.unwrap();
        c
    }

    #[tokio::test]
    async fn values_round_trip_and_convert_as_asked() {
        let c = conn_with("CREATE TABLE t (i INTEGER, r REAL, s TEXT, b BLOB, n)").await;
        let changed = c
            .execute(
                "INSERT INTO t VALUES (?1, ?2, ?3, ?4, ?5)",
                params![7_i64, 1.5, "text", vec![1_u8, 2], None::<String>],
            )
            .await
            .unwrap();
        assert_eq!(changed, 1);
        let mut rows = c.query("SELECT i, r, s, b, n FROM t", ()).await.unwrap();
        assert_eq!(rows.column_name(2), Some("s"));
        let row = rows.next().await.unwrap().unwrap();
        assert_eq!(row.get::<i64>(0).unwrap(), 7);
        assert_eq!(row.get::<u32>(0).unwrap(), 7);
        assert_eq!(row.get::<f64>(1).unwrap(), 1.5);
        assert_eq!(row.get::<String>(2).unwrap(), "text");
        assert_eq!(row.get::<Vec<u8>>(3).unwrap(), vec![1, 2]);
        assert_eq!(row.get::<Option<String>>(4).unwrap(), None);
        assert!(matches!(row.get::<String>(4), Err(Error::NullValue(4))));
        assert!(matches!(
            row.get::<i64>(2),
            Err(Error::InvalidColumnType(2, _))
        ));
        assert!(matches!(
            row.get::<i64>(9),
            Err(Error::InvalidColumnIndex(9))
        ));
        assert!(rows.next().await.unwrap().is_none());
    }

    #[test]
    fn a_column_list_is_qualified_name_by_name() {
        assert_eq!(
            qualified("p", "id, number, full_name"),
            "p.id, p.number, p.full_name"
        );
    }

    #[tokio::test]
    async fn a_row_decodes_into_a_struct_by_column_name() {
        #[derive(Debug, PartialEq, serde::Deserialize)]
        struct Thing {
            id: i64,
            count: u32,
            weight: f64,
            name: String,
            note: Option<String>,
            gone: Option<String>,
            done: bool,
        }
        let c = conn();
        let row = c
            .first_row_now(
                "SELECT 3 AS count, 'x' AS name, 7 AS id, 2 AS weight, 'n' AS note, NULL AS gone, 1 AS done",
                (),
            )
            .unwrap()
            .unwrap();
        assert_eq!(
            row.decode::<Thing>().unwrap(),
            Thing {
                id: 7,
                count: 3,
                weight: 2.0,
                name: "x".into(),
                note: Some("n".into()),
                gone: None,
                done: true,
            }
        );
        let wrong = c
            .first_row_now("SELECT 'x' AS id, 1 AS count", ())
            .unwrap()
            .unwrap();
        assert!(matches!(wrong.decode::<Thing>(), Err(Error::Decode(_))));
    }

    #[tokio::test]
    async fn a_row_callback_may_use_the_connection_again() {
        let c = conn_with("CREATE TABLE t (n INTEGER); INSERT INTO t VALUES (1), (2);").await;
        let mut seen = Vec::new();
        c.for_each_row("SELECT n FROM t ORDER BY n", (), |row| {
            let n: i64 = row.get(0)?;
            let again = c.first_row_now("SELECT n FROM t WHERE n = ?1", [n])?;
            seen.push(again.map(|r| r.get::<i64>(0)).transpose()?);
            Ok::<_, Error>(())
        })
        .unwrap();
        assert_eq!(seen, [Some(1), Some(2)]);
    }

    #[tokio::test]
    async fn engine_errors_keep_their_code() {
        let c = conn_with("CREATE TABLE t (n INTEGER UNIQUE); INSERT INTO t VALUES (1);").await;
        let e = c.execute("INSERT INTO t VALUES (1)", ()).await.unwrap_err();
        assert_eq!(e.primary_code(), Some(19), "{e}");
        assert!(e.to_string().contains("UNIQUE"), "{e}");
        assert!(!e.is_damage());
    }
}
