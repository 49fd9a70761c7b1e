use super::show;
use crate::args::{InitArgs, OutputFormat};
use ops::error::OpError;
use ops::{init, Env};

pub async fn run(env: Env<'_>, fmt: OutputFormat, a: InitArgs) -> Result<u8, OpError> {
    if a.gen_template {
        if a.sharded {
            print!("{}", plan::shard::spec::template());
        } else {
            print!("{}", init::template());
        }
        return Ok(0);
    }
    let r = init::Request {
        config: a.config.expect("clap requires -c without --gen-template"),
        dry_run: a.dry_run,
        timeout: a.timeout,
        parallel: a.parallel,
        catchup: a.catchup_timeout,
        install: a.install,
        pg_major: a.pg_major,
        max_rate: a.max_rate,
    };
    let out = init::run(env, r).await?;
    Ok(show(env, fmt, &out))
}
