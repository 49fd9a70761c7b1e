//! pgscale: create PostgreSQL clusters and change them online.
//! clap definitions → a typed request → the operation in `ops` → printing
//! and an exit status; data on stdout, progress and logs on stderr.

mod args;
mod commands;
mod group;
mod output;
mod term;

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let argv = match group::rewrite(std::env::args().collect()) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("pgscale: {e}");
            return ExitCode::from(2);
        }
    };
    let cli = args::Cli::parse_from(argv);
    // The agent is a daemon: it logs what it decides by default.
    let agent = match &cli.command {
        args::Command::Agent(a) => Some(a.log_format),
        _ => None,
    };
    let filter = match (cli.verbose, agent) {
        (0, None) => "warn",
        (0, Some(_)) => "info",
        _ => "debug",
    };
    let env_filter = tracing_subscriber::EnvFilter::try_from_env("PGSCALE_LOG").unwrap_or_else(|_| filter.into());
    let fmt = tracing_subscriber::fmt().with_writer(std::io::stderr).with_env_filter(env_filter);
    if agent == Some(args::LogFormat::Json) {
        fmt.json().init();
    } else {
        fmt.init();
    }
    if matches!(cli.command, args::Command::Check(_)) {
        // Nagios: when pgscale itself fails (a bug), the answer is UNKNOWN (3).
        std::panic::set_hook(Box::new(|info| {
            println!("UNKNOWN: pgscale internal error: {info}");
            std::process::exit(3);
        }));
    }
    let rt = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("pgscale: start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match rt.block_on(commands::run(cli)) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("pgscale: {}", e.message);
            ExitCode::from(e.code())
        }
    }
}
