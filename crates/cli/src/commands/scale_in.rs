use super::show;
use crate::args::{OutputFormat, ScaleInArgs};
use ops::error::OpError;
use ops::{scale_in, Env};

pub async fn run(env: Env<'_>, fmt: OutputFormat, a: ScaleInArgs) -> Result<u8, OpError> {
    let r = scale_in::Request {
        name: a.name,
        nodes: a.nodes,
        dry_run: a.dry_run,
        yes: a.yes,
        clear_dir: a.clear_dir,
        timeout: a.timeout,
    };
    let out = scale_in::run(env, r).await?;
    Ok(show(env, fmt, &out))
}
