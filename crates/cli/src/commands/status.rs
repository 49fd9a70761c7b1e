use crate::args::{OutputFormat, StatusArgs};
use crate::output::print_status;
use ops::error::OpError;
use ops::Env;

pub async fn run(env: Env<'_>, fmt: OutputFormat, a: StatusArgs) -> Result<u8, OpError> {
    let report = ops::status::run(env.stores, &a.name, a.timeout).await?;
    print_status(&report, fmt);
    Ok(0)
}
