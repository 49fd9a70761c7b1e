use super::show;
use crate::args::{ApplyConfigArgs, OutputFormat};
use crate::output::print_plan;
use ops::error::OpError;
use ops::{apply_config, Env, Outcome};

pub async fn run(env: Env<'_>, fmt: OutputFormat, a: ApplyConfigArgs) -> Result<u8, OpError> {
    let dry_run = a.dry_run;
    let r = apply_config::Request { name: a.name, config: a.config, dry_run, yes: a.yes, timeout: a.timeout };
    let res = apply_config::run(env, r).await?;
    if let Outcome::Planned(p) = &res.outcome {
        // Without --dry-run an empty plan is printed as a table ("nothing to do").
        print_plan(p, if dry_run { fmt } else { OutputFormat::Table });
        return Ok(0);
    }
    show(env, fmt, &res.outcome);
    // Nodes that were down were skipped: run it again when they are back.
    Ok(if res.partial { 1 } else { 0 })
}
