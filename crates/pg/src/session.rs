//! A connection kept for several statements (a transaction held open
//! while other nodes are asked, as a shard cut-over does), every call
//! within a deadline.

use crate::conn::{classify, connect, Target};
use crate::PgError;
use std::time::Duration;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Row};

pub struct Db {
    c: Client,
    addr: String,
    /// The deadline of each call unless one is given.
    pub deadline: Duration,
}

/// How long a cancel request of a statement past its deadline may take
/// (on a frozen node it adds this much to the failed call).
const CANCEL_DEADLINE: Duration = Duration::from_secs(1);

/// Statement parameters.
pub type Params<'a> = &'a [&'a (dyn ToSql + Sync)];

impl Db {
    /// Connect to `dbname` on `t`'s server.
    pub async fn open(t: &Target, dbname: &str, d: Duration) -> Result<Db, PgError> {
        let mut t = t.clone();
        t.dbname = dbname.to_string();
        Ok(Db { c: connect(&t, d).await?, addr: t.addr(), deadline: d })
    }

    pub fn addr(&self) -> &str {
        &self.addr
    }

    async fn within<T>(
        &self,
        what: &str,
        d: Duration,
        fut: impl std::future::Future<Output = Result<T, tokio_postgres::Error>>,
    ) -> Result<T, PgError> {
        match tokio::time::timeout(d, fut).await {
            Err(_) => {
                // The server may still be running the statement (waiting on
                // a synchronous standby, a lock, a slot): ask it to stop,
                // within a deadline of its own, before the session is used
                // again (a cancel arriving later could hit the next statement;
                // one reaching an idle session is ignored).
                let token = self.c.cancel_token();
                let _ = tokio::time::timeout(CANCEL_DEADLINE, token.cancel_query(tokio_postgres::NoTls)).await;
                Err(PgError::Timeout { what: what.into(), addr: self.addr.clone(), deadline: d })
            }
            Ok(r) => r.map_err(|e| classify(what, &self.addr, e)),
        }
    }

    /// Run statements (simple protocol, no parameters).
    pub async fn exec(&self, what: &str, sql: &str) -> Result<(), PgError> {
        self.exec_within(what, sql, self.deadline).await
    }

    pub async fn exec_within(&self, what: &str, sql: &str, d: Duration) -> Result<(), PgError> {
        self.within(what, d, self.c.batch_execute(sql)).await
    }

    pub async fn rows(&self, what: &str, sql: &str, p: Params<'_>) -> Result<Vec<Row>, PgError> {
        self.within(what, self.deadline, self.c.query(sql, p)).await
    }

    pub async fn one(&self, what: &str, sql: &str, p: Params<'_>) -> Result<Row, PgError> {
        self.within(what, self.deadline, self.c.query_one(sql, p)).await
    }

    pub async fn opt(&self, what: &str, sql: &str, p: Params<'_>) -> Result<Option<Row>, PgError> {
        self.within(what, self.deadline, self.c.query_opt(sql, p)).await
    }

    /// Rows changed by one statement.
    pub async fn modify(&self, what: &str, sql: &str, p: Params<'_>) -> Result<u64, PgError> {
        self.within(what, self.deadline, self.c.execute(sql, p)).await
    }

    /// Whether the connection has ended (the server went away).
    pub fn is_closed(&self) -> bool {
        self.c.is_closed()
    }
}
