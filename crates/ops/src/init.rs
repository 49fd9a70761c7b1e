//! init: create the whole cluster a file describes: the primary, then every
//! standby (sync, potential, async, cascaded) through the scale-out path,
//! copies in parallel, `synchronous_standby_names` set last once the sync
//! standbys stream. One plan, shown whole by `--dry-run`; a re-run (or
//! `resume`) re-observes and finishes what is left.

use crate::cluster::{host_facts, read_inventory_file, Cluster, WAIT};
use crate::error::{invalid, problems, OpError};
use crate::hostcheck::{precheck, Scope};
use crate::scale_out::{self, Opts, Prepared};
use crate::{Env, Outcome};
use model::{ObservedRole, Phase, Role, RunState};
use plan::init::InitFacts;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

pub struct Request {
    /// The inventory file (YAML).
    pub config: PathBuf,
    pub dry_run: bool,
    /// Deadline of one remote call.
    pub timeout: Duration,
    /// How many standbys to copy at the same time (default: all whose upstream exists).
    pub parallel: Option<usize>,
    /// How long a new standby may take to stream and catch up after its copy.
    pub catchup: Duration,
    /// Make the hosts ready first (install PostgreSQL, the OS user, directories).
    pub install: bool,
    /// The major version to install where no host has one (default: the
    /// distribution's).
    pub pg_major: Option<u32>,
    /// pg_basebackup `--max-rate` of each standby's copy (e.g. `50M`).
    pub max_rate: Option<String>,
}

pub async fn run(env: Env<'_>, r: Request) -> Result<Outcome, OpError> {
    let text = std::fs::read_to_string(&r.config).map_err(|e| invalid(format!("read {}: {e}", r.config.display())))?;
    if plan::shard::spec::is_sharded(&text) {
        return crate::shard::init::run(env, &r, &text).await;
    }
    let (desired, locs) = read_inventory_file(&r.config)?;
    let rerun = format!("pgscale init -c {}", r.config.display());
    run_inventory(env, desired, &locs, &r, rerun).await
}

/// Create (or finish creating) the cluster `desired` describes.
pub async fn run_inventory(
    env: Env<'_>,
    mut desired: model::Inventory,
    locs: &plan::Locations,
    r: &Request,
    rerun: String,
) -> Result<Outcome, OpError> {
    let store = env.stores.for_spec(&desired.name, desired.dcs.as_ref()).await?;
    let primary_name = desired.primary().map(|p| p.name.clone()).unwrap_or_default();
    desired.node_mut(&primary_name).expect("primary exists").role = Some(Role::Primary);
    // Standbys join through the scale-out path: recorded as joining until
    // they stream and count.
    for n in desired.nodes.iter_mut().filter(|n| n.name != primary_name) {
        n.state.joining = true;
    }

    // The lock comes first: two inits of one name must not interleave. A dry
    // run changes nothing, so it takes no lock.
    let _lock =
        if r.dry_run { None } else { Some(store.lock(&desired.name, "pgscale init", env.stores.lock_wait()).await?) };
    if store.exists(&desired.name).await? {
        let recorded = store.load(&desired.name).await?;
        let mut bare = recorded.clone();
        bare.state = Default::default();
        for n in &mut bare.nodes {
            n.state = Default::default();
        }
        bare.postgres.bin_dir = desired.postgres.bin_dir.clone();
        bare.postgres.os_user = desired.postgres.os_user.clone();
        let mut want = desired.clone();
        for n in &mut want.nodes {
            n.state = Default::default();
        }
        if bare != want {
            return Err(invalid(format!(
                "cluster `{}` already exists with another definition; change its configuration with `pgscale apply-config`, add or remove standbys with `pgscale scale-out`/`scale-in`, or remove it with `pgscale destroy -n {}`",
                desired.name, desired.name
            )));
        }
        if recorded.state.phase == Phase::Ready && !recorded.nodes.iter().any(|n| n.state.joining) {
            return Ok(Outcome::Unchanged(format!(
                "cluster {} already exists and matches {}: nothing to do",
                desired.name,
                r.config.display()
            )));
        }
        // An interrupted init: carry over what it recorded (directories it
        // created, standbys already members) so this run continues instead
        // of refusing them.
        desired.state = recorded.state.clone();
        // The binaries and OS user the interrupted run resolved, unless the
        // file names them: a re-run must not switch versions half-way.
        desired.postgres.bin_dir = desired.postgres.bin_dir.clone().or(recorded.postgres.bin_dir.clone());
        desired.postgres.os_user = desired.postgres.os_user.clone().or(recorded.postgres.os_user.clone());
        for n in &mut desired.nodes {
            if let Some(x) = recorded.node(&n.name) {
                n.state = x.state.clone();
            }
        }
        env.ui.say(&format!("cluster {} was left half-created by an interrupted init: continuing", desired.name));
    }
    let o = Opts {
        dry_run: r.dry_run,
        parallel: r.parallel,
        timeout: r.timeout,
        catchup: r.catchup,
        install: r.install,
        pg_major: r.pg_major,
        max_rate: r.max_rate.clone(),
    };
    let existed = store.exists(&desired.name).await?;
    let name = desired.name.clone();
    let res = execute(env, desired, locs, &o, rerun).await;
    // Refused before anything was recorded: leave no trace in the home
    // (the lock and secret files of a cluster that does not exist).
    if res.is_err() && !r.dry_run && !existed && !store.exists(&name).await? {
        let _ = store.forget(&name).await;
    }
    res
}

/// Create what is left of `desired` (also `resume` of an interrupted init,
/// from the recorded inventory).
pub async fn execute(
    env: Env<'_>,
    mut desired: model::Inventory,
    locs: &plan::Locations,
    o: &Opts,
    rerun: String,
) -> Result<Outcome, OpError> {
    let r = o;
    let store = env.stores.for_spec(&desired.name, desired.dcs.as_ref()).await?;
    // The hosts first: binaries, one major version, the OS user, writable
    // parents with room, free ports, clocks; every finding at once, before
    // anything changes (and before the OS user is needed here).
    let scope = Scope {
        only: None,
        new_nodes: desired.nodes.iter().map(|n| n.name.clone()).collect(),
        copy_bytes: None,
        install: o.install || desired.postgres.install,
        pg_major: o.pg_major,
        dry_run: o.dry_run,
        timeout: o.timeout,
    };
    if let Some(why) = precheck(env, &desired, &scope).await? {
        return Ok(Outcome::Unchanged(why));
    }
    let cl = Cluster::open(store.clone(), desired.clone(), r.timeout, r.dry_run).await?;
    // Record what was resolved, so later commands use the same binaries/user.
    desired.postgres.bin_dir = Some(cl.bin_dir.clone());
    desired.postgres.os_user = Some(cl.os_user.clone());
    let p = desired.primary().expect("has a primary").clone();
    let h = cl.host(&p.name)?;
    let f = host_facts(&h, &p, &cl.bin_dir, r.timeout).await?;
    let ours: Vec<_> = p.state.created_dirs.iter().chain(&p.state.adopted_dirs).cloned().collect();
    let fx = BTreeMap::from([(p.name.clone(), f.dirs.clone())]);
    let ps = plan::validate::validate_facts(&desired, locs, &fx, &ours);
    if !ps.is_empty() {
        return Err(problems(&ps));
    }
    let init = plan::init::plan_init(
        &desired,
        &cl.ctx(WAIT),
        &InitFacts { dirs: f.dirs, initialized: f.initialized, running: f.running },
    );
    let (cl, plan) = if desired.nodes.iter().any(|n| n.state.joining) {
        // The standbys' plan: against the running primary when there is
        // one, else against the primary this plan's first part creates.
        let obs = pg::probe_all(&cl.targets(), r.timeout).await;
        let up = obs.get(&p.name).is_some_and(|o| o.state == RunState::Running && o.role == ObservedRole::Primary);
        // Only the primary's entry is predicted: the standbys are as found.
        let predicted = (!up).then(|| {
            let mut o = obs.clone();
            o.nodes.extend(plan::init::primary_after_init(&desired).nodes);
            o
        });
        let Prepared { cl, plan: standbys } = scale_out::prepare(&desired, Some((locs, 0)), o, cl, predicted).await?;
        let mut plan = init.then(standbys);
        plan.operation = "init".into();
        (cl, plan)
    } else {
        (cl, init)
    };
    scale_out::apply_adding(env, &cl, desired, plan, o, rerun).await
}

/// A commented 3-node spec: a primary, a synchronous standby and an
/// asynchronous one, on this machine's loopback addresses.
pub fn template() -> String {
    "# A cluster for `pgscale init -c THIS_FILE [--dry-run]`.\n\
     # Every node: [a-z0-9_]{1,63} name (application_name and slot name), host, port, data_dir.\n\
     name: demo\n\
     postgres:                        # all optional\n\
     \x20 # bin_dir: /usr/lib/postgresql/15/bin  # default: found on the primary's host\n\
     \x20 # os_user: postgres            # default: the invoking user; `postgres` when invoked as root\n\
     \x20 # install: false               # true: `init` installs PostgreSQL on hosts that lack it\n\
     \x20 parameters:\n\
     \x20   shared_buffers: 128MB\n\
     \x20 # hba: [\"host all app 10.0.0.0/8 scram-sha-256\"]   # your own pg_hba lines\n\
     nodes:\n\
     \x20 - name: pg1                    # the primary: `role: primary`, else the first node\n\
     \x20   host: 127.0.0.1\n\
     \x20   port: 5432\n\
     \x20   data_dir: /var/lib/pgscale/demo/pg1\n\
     \x20 - name: pg2\n\
     \x20   host: 127.0.0.2\n\
     \x20   port: 5432\n\
     \x20   data_dir: /var/lib/pgscale/demo/pg2\n\
     \x20   sync: sync                   # sync | potential | async (default)\n\
     \x20 - name: pg3\n\
     \x20   host: 127.0.0.3\n\
     \x20   port: 5432\n\
     \x20   data_dir: /var/lib/pgscale/demo/pg3\n\
     \x20   # upstream: pg2              # a cascaded standby streams from another standby\n\
     \x20   # transport: ssh             # default: local for this machine's addresses, else ssh\n\
     \x20   # ssh: { user: postgres, port: 22, identity_file: ~/.ssh/id_ed25519 }\n"
        .to_string()
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_template_is_a_valid_three_node_spec() {
        let (inv, locs) = plan::parse_inventory("t.yaml", &super::template()).expect("parses");
        assert_eq!(inv.nodes.len(), 3);
        assert!(plan::validate::validate_static(&inv, &locs).is_empty());
    }
}
