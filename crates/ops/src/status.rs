//! status: probe every node in parallel (each with a deadline) and report.

use crate::error::OpError;
use crate::resolve;
use journal::Home;
use plan::status::StatusReport;
use std::time::Duration;

pub async fn run(home: &Home, name: &str, timeout: Duration) -> Result<StatusReport, OpError> {
    let inv = home.load(name)?;
    let secrets = home.secrets(&inv.name, &resolve::secret_users(&inv))?;
    // Status talks only SQL, from here; it needs no host access, so a dead
    // host cannot slow it beyond the probe deadline.
    let targets = resolve::targets(&inv, &secrets);
    let obs = pg::probe_all(&targets, timeout).await;
    Ok(plan::status::report(&inv, &obs))
}
