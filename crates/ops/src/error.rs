//! The one error of the operations layer. Its kind is the exit code the CLI
//! returns: 1 failed while changing the cluster (re-running is safe); 2
//! invalid input or usage, nothing changed; 3 refused by a safety check or
//! because another operation holds the cluster, nothing changed.

use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Failed while changing the cluster; re-running continues.
    Failed,
    /// Invalid input or usage; nothing changed.
    Invalid,
    /// Refused (a safety check, a held lock, an unreachable store); nothing changed.
    Refused,
}

impl Kind {
    pub fn code(self) -> u8 {
        match self {
            Kind::Failed => 1,
            Kind::Invalid => 2,
            Kind::Refused => 3,
        }
    }
}

#[derive(Debug, Clone, thiserror::Error)]
pub struct OpError {
    pub kind: Kind,
    pub message: String,
}

impl fmt::Display for OpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl OpError {
    pub fn code(&self) -> u8 {
        self.kind.code()
    }

    /// A rejoin failed because pg_rewind did (a fresh copy is the way back).
    pub fn rewind_failed(&self) -> bool {
        exec::rewind_failed(&self.message)
    }
}

pub fn invalid(msg: impl Into<String>) -> OpError {
    OpError { kind: Kind::Invalid, message: msg.into() }
}

pub fn refused(msg: impl Into<String>) -> OpError {
    OpError { kind: Kind::Refused, message: msg.into() }
}

pub fn failed(msg: impl Into<String>) -> OpError {
    OpError { kind: Kind::Failed, message: msg.into() }
}

/// Problems found in an input file: all of them, one per line.
pub fn problems(ps: &[plan::Problem]) -> OpError {
    let lines: Vec<String> = ps.iter().map(|p| p.to_string()).collect();
    invalid(format!(
        "invalid input, nothing changed ({} problem{}):\n  {}",
        ps.len(),
        if ps.len() == 1 { "" } else { "s" },
        lines.join("\n  ")
    ))
}

impl From<store::StoreError> for OpError {
    fn from(e: store::StoreError) -> OpError {
        // A held or lost lock, a conflicting write, an unreachable store: a
        // refusal (run again later); an unknown cluster or a missing key: usage.
        let kind = match &e {
            e if e.is_refusal() => Kind::Refused,
            store::StoreError::Unknown { .. } | store::StoreError::Key(_) | store::StoreError::Invalid(_) => {
                Kind::Invalid
            }
            _ => Kind::Failed,
        };
        OpError { kind, message: e.to_string() }
    }
}

impl From<journal::HomeError> for OpError {
    fn from(e: journal::HomeError) -> OpError {
        store::StoreError::from(e).into()
    }
}

impl From<host::HostError> for OpError {
    fn from(e: host::HostError) -> OpError {
        let kind = if matches!(e, host::HostError::Config(_)) { Kind::Invalid } else { Kind::Failed };
        OpError { kind, message: e.to_string() }
    }
}

impl From<pg::PgError> for OpError {
    fn from(e: pg::PgError) -> OpError {
        failed(e.to_string())
    }
}

impl From<std::io::Error> for OpError {
    fn from(e: std::io::Error) -> OpError {
        failed(e.to_string())
    }
}
