use super::show;
use crate::args::{DestroyArgs, OutputFormat};
use ops::error::OpError;
use ops::{destroy, Env};

pub async fn run(env: Env<'_>, fmt: OutputFormat, a: DestroyArgs) -> Result<u8, OpError> {
    let r = destroy::Request { name: a.name, yes: a.yes, dry_run: a.dry_run, timeout: a.timeout };
    let out = destroy::run(env, r).await?;
    Ok(show(env, fmt, &out))
}
