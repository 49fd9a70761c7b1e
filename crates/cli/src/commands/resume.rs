use super::show;
use crate::args::{OutputFormat, ResumeArgs};
use ops::error::OpError;
use ops::{resume, Env};

pub async fn run(env: Env<'_>, fmt: OutputFormat, a: ResumeArgs) -> Result<u8, OpError> {
    let r = resume::Request { name: a.name, dry_run: a.dry_run, yes: a.yes, timeout: a.timeout };
    let out = resume::run(env, r).await?;
    Ok(show(env, fmt, &out))
}
