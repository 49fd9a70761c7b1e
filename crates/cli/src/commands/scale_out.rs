use super::show;
use crate::args::{OutputFormat, ScaleOutArgs};
use ops::error::{invalid, OpError};
use ops::{scale_out, Env};

pub async fn run(env: Env<'_>, fmt: OutputFormat, a: ScaleOutArgs) -> Result<u8, OpError> {
    if a.gen_template {
        let stored = ops::cluster::stored(env.stores, &a.name).await?.1;
        print!("{}", scale_out::template(&stored).await);
        return Ok(0);
    }
    let r = scale_out::Request {
        name: a.name,
        config: a.config.ok_or_else(|| invalid("-c FILE is required (or --gen-template)"))?,
        dry_run: a.dry_run,
        parallel: a.parallel,
        timeout: a.timeout,
        catchup: a.catchup_timeout,
        install: a.install,
        max_rate: a.max_rate,
    };
    let out = scale_out::run(env, r).await?;
    Ok(show(env, fmt, &out))
}
