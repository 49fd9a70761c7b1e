use crate::args::{OutputFormat, StatusArgs};
use crate::output::print_status;
use ops::error::OpError;
use ops::Env;

pub async fn run(env: Env<'_>, fmt: OutputFormat, a: StatusArgs) -> Result<u8, OpError> {
    let reports = ops::status::run_all(env.stores, &a.name, a.timeout).await?;
    if reports.len() > 1 && fmt == OutputFormat::Json {
        // A sharded cluster: one report per group, the coordinator first.
        println!("{}", serde_json::to_string(&reports).unwrap_or_default());
        return Ok(0);
    }
    for r in &reports {
        print_status(r, fmt);
    }
    Ok(0)
}
