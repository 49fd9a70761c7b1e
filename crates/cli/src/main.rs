//! pgscale: create PostgreSQL clusters and scale them out and in online.
//! clap definitions → validated settings → one function per command
//! returning an exit status; data on stdout, progress and logs on stderr.

mod args;
mod commands;
mod fail;
mod output;
mod resolve;

use clap::Parser;
use fail::Fail;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = args::Cli::parse();
    let filter = if cli.verbose > 0 { "debug" } else { "warn" };
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("PGSCALE_LOG").unwrap_or_else(|_| filter.into()))
        .init();
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
            let f = Fail::from_anyhow(e);
            eprintln!("pgscale: {}", f.message);
            ExitCode::from(f.code)
        }
    }
}
