//! One module per command: build the typed request from the arguments,
//! call the operation in `ops`, print what it returns.

mod apply_config;
mod check;
mod demo;
mod destroy;
mod ha;
mod hba;
mod host;
mod init;
mod list;
mod psql;
mod resume;
mod scale_in;
mod scale_out;
mod status;

use crate::args::{Cli, Command, OutputFormat};
use crate::output::print_plan;
use crate::term::TermUi;
use journal::Home;
use ops::error::{invalid, OpError};
use ops::{Env, Outcome};
use std::path::PathBuf;

pub async fn run(cli: Cli) -> Result<u8, OpError> {
    let home = Home::new(home_dir(cli.home.clone())?);
    let fmt = cli.output;
    let ui = TermUi::new(fmt);
    let argv: Vec<String> = std::env::args().collect();
    let env = Env { home: &home, ui: &ui, argv: &argv };
    match cli.command {
        Command::Init(a) => init::run(env, fmt, a).await,
        Command::Status(a) => status::run(env, fmt, a).await,
        Command::Psql(a) => psql::run(env, a),
        Command::Destroy(a) => destroy::run(env, fmt, a).await,
        Command::List => list::run(env, fmt),
        Command::Hba(a) => hba::run(env, fmt, a).await,
        Command::ApplyConfig(a) => apply_config::run(env, fmt, a).await,
        Command::Demo(a) => demo::run(env, a).await,
        Command::ScaleOut(a) => scale_out::run(env, fmt, a).await,
        Command::ScaleIn(a) => scale_in::run(env, fmt, a).await,
        Command::Resume(a) => resume::run(env, fmt, a).await,
        Command::Switchover(a) => ha::switchover(env, fmt, a).await,
        Command::Failover(a) => ha::failover(env, fmt, a).await,
        Command::Rejoin(a) => ha::rejoin(env, fmt, a).await,
        Command::Check(a) => Ok(check::run(env, fmt, a).await),
        Command::Host(crate::args::HostCommand::Check(a)) => host::check(env, fmt, a).await,
    }
}

fn home_dir(opt: Option<PathBuf>) -> Result<PathBuf, OpError> {
    if let Some(h) = opt {
        return Ok(h);
    }
    match std::env::var_os("HOME") {
        Some(h) => Ok(PathBuf::from(h).join(".pgscale")),
        None => Err(invalid("no home directory: set --home or PGSCALE_HOME")),
    }
}

/// Print what a mutating operation returned; exit 0.
pub fn show(env: Env<'_>, fmt: OutputFormat, out: &Outcome) -> u8 {
    match out {
        Outcome::Planned(p) => print_plan(p, fmt),
        Outcome::Applied { plan, report: None } if plan.is_empty() => {
            env.ui.say("nothing to do: the cluster already matches")
        }
        Outcome::Applied { .. } => {}
        Outcome::Unchanged(why) => env.ui.say(why),
    }
    0
}
