use super::{read_inventory_file, Cluster, WAIT};
use crate::args::{ApplyConfigArgs, OutputFormat};
use crate::fail::{invalid, refused};
use crate::output::{confirm, finish, print_plan, progress};
use journal::Home;
use plan::Action;

pub async fn run(home: &Home, fmt: OutputFormat, a: ApplyConfigArgs, argv: &[String]) -> anyhow::Result<u8> {
    let (file, _locs) = read_inventory_file(&a.config)?;
    if file.name != a.name {
        return Err(invalid(format!("{} describes cluster `{}`, not `{}`", a.config.display(), file.name, a.name)));
    }
    let _lock = if a.dry_run { None } else { Some(home.lock(&a.name, "pgscale apply-config")?) };
    let stored = home.load(&a.name)?;
    // What init resolved (binaries, OS user) stays unless the file says otherwise.
    let mut new_pg = file.postgres.clone();
    new_pg.bin_dir = new_pg.bin_dir.or(stored.postgres.bin_dir.clone());
    new_pg.os_user = new_pg.os_user.or(stored.postgres.os_user.clone());
    let mut desired = stored.clone();
    desired.postgres = new_pg;
    let mut file_cmp = file.clone();
    file_cmp.postgres = desired.postgres.clone();
    plan::apply_config::check_only_config_changed(&stored, &file_cmp).map_err(invalid)?;

    let cl = Cluster::open(home, desired.clone(), a.timeout, a.dry_run).await?;
    let ctx = cl.ctx(WAIT);
    let names: Vec<String> = desired
        .nodes
        .first()
        .map(|n| plan::conf::managed_settings(&desired, n).into_iter().map(|(k, _)| k).collect())
        .unwrap_or_default();
    let mut obs = std::collections::BTreeMap::new();
    let futs = cl.targets().into_iter().map(|(n, t)| {
        let names = names.clone();
        async move { (n, pg::config_obs(&t, &names, a.timeout).await) }
    });
    for (n, r) in futures::future::join_all(futs).await {
        match r {
            Ok(o) => {
                obs.insert(n, o);
            }
            Err(e) => eprintln!("warning: {n}: {e}"),
        }
    }
    let plan = plan::apply_config::plan_apply_config(&desired, &ctx, &obs)
        .map_err(|e| invalid(format!("nothing changed:\n  {}", e.join("\n  "))))?;
    if a.dry_run {
        print_plan(&plan, fmt);
        return Ok(0);
    }
    if plan.is_empty() {
        print_plan(&plan, OutputFormat::Table);
        return Ok(0);
    }
    let primary = desired.primary().map(|p| p.name.clone()).unwrap_or_default();
    let restarts_primary = plan.steps.iter().any(|s| s.node == primary && matches!(s.action, Action::Restart { .. }));
    if restarts_primary && !a.yes {
        print_plan(&plan, OutputFormat::Table);
        if !confirm("This restarts the primary: its connections are cut.", "yes", false)? {
            return Err(refused("not confirmed: nothing changed"));
        }
    }
    let rt = cl.runtime(home, desired, a.timeout, WAIT)?;
    let report = exec::apply(&plan, &rt, argv, &mut progress()).await;
    for n in &plan.notes {
        eprintln!("note: {n}");
    }
    finish(
        &report,
        &format!("apply-config of cluster {}", a.name),
        &format!("pgscale apply-config -n {} -c {}", a.name, a.config.display()),
    )?;
    Ok(if plan.notes.is_empty() { 0 } else { crate::fail::FAILED })
}
