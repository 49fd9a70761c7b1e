use crate::args::{OutputFormat, StatusArgs};
use crate::output::print_status;
use journal::Home;

pub async fn run(home: &Home, fmt: OutputFormat, a: StatusArgs) -> anyhow::Result<u8> {
    let inv = home.load(&a.name)?;
    let secrets = home.secrets(&inv.name, &crate::resolve::secret_users(&inv))?;
    // Status talks only SQL, from here; it needs no host access, so a dead
    // host cannot slow it beyond the probe deadline.
    let targets = crate::resolve::targets(&inv, &secrets);
    let obs = pg::probe_all(&targets, a.timeout).await;
    let report = plan::status::report(&inv, &obs);
    print_status(&report, fmt);
    Ok(0)
}
