use super::{Cluster, WAIT};
use crate::args::{DestroyArgs, OutputFormat};
use crate::fail::refused;
use crate::output::{confirm, finish, print_plan, progress};
use journal::Home;

pub async fn run(home: &Home, fmt: OutputFormat, a: DestroyArgs, argv: &[String]) -> anyhow::Result<u8> {
    let inv = home.load(&a.name)?;
    // Refuse early, before any work, when no one can answer the question.
    if !a.yes && !a.dry_run && !std::io::IsTerminal::is_terminal(&std::io::stdin()) {
        return Err(crate::fail::invalid(format!(
            "destroy removes cluster {} and its data: refusing without a terminal; pass --yes to confirm",
            a.name
        )));
    }
    let _lock = if a.dry_run { None } else { Some(home.lock(&a.name, "pgscale destroy")?) };
    let cl = Cluster::open(home, inv.clone(), a.timeout, a.dry_run).await?;
    let obs = pg::probe_all(&cl.targets(), a.timeout).await;
    let plan = plan::destroy::plan_destroy(&inv, &cl.ctx(WAIT), &obs);
    for (n, h) in &cl.hosts {
        if let Err(e) = h {
            eprintln!("warning: {n}: {e}: its steps will fail and the record is kept");
        }
    }
    if a.dry_run {
        print_plan(&plan, fmt);
        return Ok(0);
    }
    if !a.yes {
        print_plan(&plan, OutputFormat::Table);
        if !confirm(
            &format!("This stops every node of {} and deletes the data directories pgscale created.", a.name),
            &a.name,
            false,
        )? {
            return Err(refused("not confirmed: nothing changed"));
        }
    }
    let rt = cl.runtime(home, inv.clone(), a.timeout, WAIT)?;
    let report = exec::apply(&plan, &rt, argv, &mut progress()).await;
    finish(&report, &format!("destroy of cluster {}", a.name), &format!("pgscale destroy -n {} --yes", a.name))?;
    Ok(0)
}
