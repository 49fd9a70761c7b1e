//! Talking to PostgreSQL: connections with deadlines, the probe that fills
//! `Observed`, the configuration observation, finding server binaries.
//! Decides nothing.

mod conn;
pub mod controldata;
mod facts;
mod probe;
mod session;
mod stmt;

pub use conn::{connect, scram_verifier, tcp_listening, Target};
pub use facts::server_facts;
pub use probe::{config_obs, find_bin_dir, probe, probe_all};
pub use session::{Db, Params};
pub use stmt::{
    copy_progress, count_ids, database_bytes, end_copy, execute, hba_errors, is_primary, promote, received_lsn,
    streaming, Session, Streaming,
};
pub use tokio_postgres::Row;

use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum PgError {
    #[error("connect to {addr}: connection refused (is the server running?)")]
    Refused { addr: String },
    #[error("{what} on {addr}: no answer within {}s (deadline)", .deadline.as_secs_f64())]
    Timeout { what: String, addr: String, deadline: Duration },
    #[error("{what} on {addr}: {message}")]
    Server {
        what: String,
        addr: String,
        message: String,
        /// SQLSTATE, kept for classification (never match message text).
        code: Option<String>,
    },
    #[error("{what} on {addr}: {message}")]
    Network { what: String, addr: String, message: String },
}

impl PgError {
    pub fn sqlstate(&self) -> Option<&str> {
        match self {
            PgError::Server { code, .. } => code.as_deref(),
            _ => None,
        }
    }
}
