//! Exit codes of every mutating command: 0 done (OK); 1 failed while changing the
//! cluster (re-running is safe); 2 invalid input or usage, nothing changed;
//! 3 refused by a safety check or because another operation holds the
//! cluster, nothing changed.

pub const FAILED: u8 = 1;
pub const INVALID: u8 = 2;
pub const REFUSED: u8 = 3;

#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Fail {
    pub code: u8,
    pub message: String,
}

impl Fail {
    pub fn from_anyhow(e: anyhow::Error) -> Fail {
        match e.downcast::<Fail>() {
            Ok(f) => f,
            Err(e) => {
                // A held lock is a refusal, whatever wrapped it.
                let code = match e.downcast_ref::<journal::HomeError>() {
                    Some(journal::HomeError::Held { .. }) => REFUSED,
                    Some(journal::HomeError::Unknown(_)) => INVALID,
                    _ => FAILED,
                };
                Fail { code, message: format!("{e:#}") }
            }
        }
    }
}

pub fn invalid(msg: impl Into<String>) -> anyhow::Error {
    Fail { code: INVALID, message: msg.into() }.into()
}

pub fn refused(msg: impl Into<String>) -> anyhow::Error {
    Fail { code: REFUSED, message: msg.into() }.into()
}

pub fn failed(msg: impl Into<String>) -> anyhow::Error {
    Fail { code: FAILED, message: msg.into() }.into()
}

/// Problems found in an input file: all of them, one per line.
pub fn problems(ps: &[plan::Problem]) -> anyhow::Error {
    let lines: Vec<String> = ps.iter().map(|p| p.to_string()).collect();
    invalid(format!(
        "invalid input, nothing changed ({} problem{}):\n  {}",
        ps.len(),
        if ps.len() == 1 { "" } else { "s" },
        lines.join("\n  ")
    ))
}
