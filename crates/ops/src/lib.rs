//! Operations: one function per operation, taking a typed request and
//! returning a typed outcome, telling what happens through a [`Ui`]. Each
//! opens the cluster, observes it, decides, plans and applies. The CLI and
//! the agent call the very same functions; nothing here prints or reads a
//! terminal.

pub mod adopt;
pub mod apply_config;
pub mod check;
pub mod cluster;
pub mod demo;
pub mod destroy;
pub mod error;
pub mod ha;
pub mod ha_mode;
pub mod hba;
pub mod hostcheck;
pub mod init;
pub mod load;
pub mod resolve;
pub mod resume;
pub mod scale_in;
pub mod scale_out;
pub mod shard;
pub mod status;
pub mod ui;

pub use cluster::{Cluster, WAIT};
pub use error::{Kind, OpError};
pub use ui::{Meter, Quiet, Ui};

use exec::{Outcome as StepOutcome, Report};
use plan::Plan;
use std::time::Duration;

/// What every operation gets: where clusters' state lives, who it talks
/// to, and the command line recorded in the operation log.
#[derive(Clone, Copy)]
pub struct Env<'a> {
    pub stores: &'a store::Stores,
    pub ui: &'a dyn Ui,
    pub argv: &'a [String],
}

/// What a mutating operation did.
#[derive(Debug)]
pub enum Outcome {
    /// `--dry-run`: the plan that would run; nothing changed.
    Planned(Plan),
    /// The plan ran to the end (an empty plan: nothing was left to do).
    Applied { plan: Plan, report: Option<Report> },
    /// Nothing to do; the message says why.
    Unchanged(String),
    /// Done, by steps outside a single plan (a sharded cluster's groups);
    /// the message sums it up.
    Done(String),
    /// `--dry-run` of several clusters (a sharded cluster's groups).
    PlannedMany(Vec<Plan>),
}

/// How a prepared plan is run.
pub(crate) struct Apply<'q> {
    pub dry_run: bool,
    /// Ask before running (None: do not ask).
    pub question: Option<&'q str>,
    pub timeout: Duration,
    /// What to re-run if it fails.
    pub rerun: String,
}

/// Dry run, question, apply, summary: the tail every mutating operation shares.
pub(crate) async fn run_plan(
    env: Env<'_>,
    cl: &Cluster,
    desired: model::Inventory,
    plan: Plan,
    a: Apply<'_>,
) -> Result<Outcome, OpError> {
    if a.dry_run {
        return Ok(Outcome::Planned(plan));
    }
    if let Some(q) = a.question {
        if !env.ui.confirm(Some(&plan), q, "yes")? {
            return Err(error::refused("not confirmed: nothing changed"));
        }
    }
    if plan.is_empty() {
        return Ok(Outcome::Applied { plan, report: None });
    }
    let report = apply(env, cl, desired, &plan, a.timeout).await?;
    for n in &plan.notes {
        env.ui.say(&format!("note: {n}"));
    }
    finish(env, &report, &format!("{} of cluster {}", plan.operation, plan.cluster), &a.rerun)?;
    Ok(Outcome::Applied { plan, report: Some(report) })
}

/// Run a plan, telling the Ui each step.
pub(crate) async fn apply(
    env: Env<'_>,
    cl: &Cluster,
    desired: model::Inventory,
    plan: &Plan,
    timeout: Duration,
) -> Result<Report, OpError> {
    let rt = cl.runtime(desired, timeout, WAIT);
    let ui = env.ui;
    Ok(exec::apply(plan, &rt, env.argv, &mut |p| ui.progress(&p)).await)
}

/// Summarise a run; a failed step is an error naming what to re-run.
pub(crate) fn finish(env: Env<'_>, report: &Report, what: &str, rerun: &str) -> Result<(), OpError> {
    let failed: Vec<_> = report
        .results
        .iter()
        .filter_map(|r| if let StepOutcome::Failed(e) = &r.outcome { Some(e.as_str()) } else { None })
        .collect();
    if report.refused {
        return Err(error::refused(format!(
            "{what} stopped after {:.2}s:\n  {}\nRe-running `{rerun}` is safe: it continues from what is left.",
            report.elapsed.as_secs_f64(),
            failed.join("\n  ")
        )));
    }
    if failed.is_empty() {
        env.ui.say(&format!("{what}: done in {:.2}s", report.elapsed.as_secs_f64()));
        Ok(())
    } else {
        Err(error::failed(format!(
            "{what} failed after {:.2}s:\n  {}\nRe-running `{rerun}` is safe: it continues from what is left.",
            report.elapsed.as_secs_f64(),
            failed.join("\n  ")
        )))
    }
}
