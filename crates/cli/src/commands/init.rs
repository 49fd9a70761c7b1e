use super::{read_inventory_file, Cluster, WAIT};
use crate::args::{InitArgs, OutputFormat};
use crate::fail::{invalid, problems};
use crate::output::{finish, print_plan, progress};
use host::Host;
use journal::Home;
use model::{Phase, Role};
use plan::init::InitFacts;
use std::collections::BTreeMap;

pub async fn run(home: &Home, fmt: OutputFormat, a: InitArgs, argv: &[String]) -> anyhow::Result<u8> {
    let (mut desired, locs) = read_inventory_file(&a.config)?;
    let primary_name = desired.primary().map(|p| p.name.clone()).unwrap_or_default();
    let standbys: Vec<_> = desired.nodes.iter().filter(|n| n.name != primary_name).map(|n| n.name.clone()).collect();
    if !standbys.is_empty() {
        return Err(invalid(format!(
            "{}: init creates the primary ({primary_name}) only, for now; remove {} from the file and add {} afterwards with `pgscale scale-out` (coming next)",
            a.config.display(),
            standbys.join(", "),
            if standbys.len() == 1 { "it" } else { "them" }
        )));
    }
    desired.node_mut(&primary_name).expect("primary exists").role = Some(Role::Primary);

    // The lock comes first: two inits of one name must not interleave. A dry
    // run changes nothing, so it takes no lock.
    let _lock = if a.dry_run { None } else { Some(home.lock(&desired.name, "pgscale init")?) };
    if home.exists(&desired.name) {
        let recorded = home.load(&desired.name)?;
        let mut bare = recorded.clone();
        bare.state = Default::default();
        for n in &mut bare.nodes {
            n.state = Default::default();
        }
        bare.postgres.bin_dir = desired.postgres.bin_dir.clone();
        bare.postgres.os_user = desired.postgres.os_user.clone();
        if bare != desired {
            return Err(invalid(format!(
                "cluster `{}` already exists with another definition; change its configuration with `pgscale apply-config`, or remove it with `pgscale destroy -n {}`",
                desired.name, desired.name
            )));
        }
        if recorded.state.phase == Phase::Ready {
            eprintln!("cluster {} already exists and matches {}: nothing to do", desired.name, a.config.display());
            return Ok(0);
        }
        // An interrupted init: carry over what it recorded (directories it
        // created) so this run continues instead of refusing them.
        desired.state = recorded.state.clone();
        for n in &mut desired.nodes {
            if let Some(r) = recorded.node(&n.name) {
                n.state = r.state.clone();
            }
        }
        eprintln!("cluster {} was left half-created by an interrupted init: continuing", desired.name);
    }

    let cl = Cluster::open(home, desired.clone(), a.timeout, a.dry_run).await?;
    // Record what was resolved, so later commands use the same binaries/user.
    desired.postgres.bin_dir = Some(cl.bin_dir.clone());
    desired.postgres.os_user = Some(cl.os_user.clone());
    let p = desired.primary().expect("has a primary").clone();
    let h: Host = cl.hosts[&p.name].clone().map_err(|e| crate::fail::failed(format!("reach {}: {e}", p.name)))?;
    let d = a.timeout;
    let f = super::host_facts(&h, &p, &cl.bin_dir, d).await?;
    let (facts, initialized, running) = (f.dirs, f.initialized, f.running);
    let ours: Vec<_> = p.state.created_dirs.iter().chain(&p.state.adopted_dirs).cloned().collect();
    let fx = BTreeMap::from([(p.name.clone(), facts.clone())]);
    let ps = plan::validate::validate_facts(&desired, &locs, &fx, &ours);
    if !ps.is_empty() {
        return Err(problems(&ps));
    }
    let plan = plan::init::plan_init(&desired, &cl.ctx(WAIT), &InitFacts { dirs: facts, initialized, running });
    if a.dry_run {
        print_plan(&plan, fmt);
        return Ok(0);
    }
    let rt = cl.runtime(home, desired.clone(), d, WAIT)?;
    let report = exec::apply(&plan, &rt, argv, &mut progress()).await;
    finish(&report, &format!("init of cluster {}", desired.name), &format!("pgscale init -c {}", a.config.display()))?;
    eprintln!("next: pgscale status -n {}", desired.name);
    Ok(0)
}
