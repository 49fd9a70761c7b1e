//! How an operation talks to whoever runs it: the CLI prints and asks on a
//! terminal; an agent logs and never asks. Operations call this and never
//! print themselves.

use crate::error::{invalid, OpError};
use exec::Progress;
use plan::status::StatusReport;
use plan::Plan;

pub trait Ui: Sync {
    /// A line for the person running the operation (stderr in the CLI).
    fn say(&self, line: &str);
    /// Whether someone can answer a question.
    fn interactive(&self) -> bool;
    /// Show `plan` (when given) and ask `question`; true only when the
    /// answer is `expect`. Without anyone to ask: an error saying to pass --yes.
    fn confirm(&self, plan: Option<&Plan>, question: &str, expect: &str) -> Result<bool, OpError>;
    /// A step started or finished, or a copy's bytes.
    fn progress(&self, p: &Progress<'_>);
    /// A status report worth showing (the demo shows one after each step).
    fn status(&self, _r: &StatusReport) {}
    /// A long task's progress (a shard move: bytes copied, then lag).
    fn meter(&self, _m: &Meter<'_>) {}
}

/// One long task's progress, for a progress bar.
pub struct Meter<'a> {
    /// Which task (several run at once).
    pub key: &'a str,
    /// `copy`, `catch-up`, `cut-over`, `done`.
    pub phase: &'a str,
    pub done: u64,
    pub total: u64,
    /// A short text beside the bar (lag in bytes and seconds, ...).
    pub detail: &'a str,
    /// The task ended: the bar goes away.
    pub finished: bool,
}

/// No one to ask, nothing shown but through `tracing`: tests and daemons.
pub struct Quiet;

impl Ui for Quiet {
    fn say(&self, line: &str) {
        tracing::info!("{line}");
    }
    fn interactive(&self) -> bool {
        false
    }
    fn confirm(&self, _plan: Option<&Plan>, question: &str, _expect: &str) -> Result<bool, OpError> {
        Err(invalid(format!("{question}: refusing without a terminal; pass --yes to confirm")))
    }
    fn progress(&self, _p: &Progress<'_>) {}
}

/// Refuse early, before any work, when no one can answer the question.
pub fn need_answer_or_yes(ui: &dyn Ui, yes: bool, dry_run: bool, what: &str) -> Result<(), OpError> {
    if !yes && !dry_run && !ui.interactive() {
        return Err(invalid(format!("{what}: refusing without a terminal; pass --yes to confirm")));
    }
    Ok(())
}
