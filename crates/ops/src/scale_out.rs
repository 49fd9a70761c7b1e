//! scale-out: add standbys (sync, potential, async, cascaded) online.

use crate::cluster::{host_facts_all, observed_hba, Cluster, WAIT};
use crate::error::{invalid, problems, refused, OpError};
use crate::hostcheck::{precheck, Scope};
use crate::{run_plan, Apply, Env, Outcome};
use model::{Inventory, NodeState};
use plan::scale::{JoinFacts, ScaleOpts};
use plan::Locations;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

pub struct Request {
    pub name: String,
    /// The file with the `nodes:` to add.
    pub config: PathBuf,
    pub dry_run: bool,
    /// How many nodes to copy at the same time (default: all whose upstream exists).
    pub parallel: Option<usize>,
    /// Deadline of one remote call.
    pub timeout: Duration,
    /// How long a new standby may take to stream and catch up after its copy.
    pub catchup: Duration,
    /// Make the new hosts ready first (install PostgreSQL, the OS user, directories).
    pub install: bool,
    /// pg_basebackup `--max-rate` of each copy (e.g. `50M`).
    pub max_rate: Option<String>,
}

pub struct Opts {
    pub dry_run: bool,
    pub parallel: Option<usize>,
    pub timeout: Duration,
    pub catchup: Duration,
    /// `--install` (or `postgres.install` in the spec).
    pub install: bool,
    /// The major version to install where no host has one yet.
    pub pg_major: Option<u32>,
    /// pg_basebackup `--max-rate` of each copy.
    pub max_rate: Option<String>,
}

/// Same node, ignoring what pgscale keeps in `state`.
fn same_spec(a: &model::NodeSpec, b: &model::NodeSpec) -> bool {
    let mut x = a.clone();
    x.state = NodeState::default();
    let mut y = b.clone();
    y.state = NodeState::default();
    x == y
}

pub async fn run(env: Env<'_>, r: Request) -> Result<Outcome, OpError> {
    let store = env.stores.for_cluster(&r.name).await?;
    let path = &r.config;
    let text = std::fs::read_to_string(path).map_err(|e| invalid(format!("read {}: {e}", path.display())))?;
    let (nodes, locs) = plan::parse_nodes(&path.display().to_string(), &text).map_err(|p| problems(&p))?;
    let ps = plan::validate::user_state_problems(None, &nodes, &locs);
    if !ps.is_empty() {
        return Err(problems(&ps));
    }
    let _lock =
        if r.dry_run { None } else { Some(store.lock(&r.name, "pgscale scale-out", env.stores.lock_wait()).await?) };
    let stored = store.load(&r.name).await?;
    // Nodes of an interrupted run of this same file are already recorded as
    // joining: take them out and append the file's nodes, so the file's
    // numbering maps onto the combined inventory.
    let mut desired = stored.clone();
    let mut carried = BTreeMap::new();
    desired.nodes.retain(|n| {
        let again = n.state.joining && nodes.iter().any(|f| same_spec(f, n));
        if again {
            carried.insert(n.name.clone(), n.state.clone());
        }
        !again
    });
    let offset = desired.nodes.len();
    let o = Opts {
        dry_run: r.dry_run,
        parallel: r.parallel,
        timeout: r.timeout,
        catchup: r.catchup,
        install: r.install,
        pg_major: None,
        max_rate: r.max_rate.clone(),
    };
    // Every node already added with exactly these settings: a re-run of a
    // finished scale-out. Nothing to add; still converge what is left.
    let member = |f: &model::NodeSpec| desired.node(&f.name).is_some_and(|e| !e.state.joining && same_spec(e, f));
    if !nodes.is_empty() && nodes.iter().all(member) {
        env.ui.say(&format!(
            "{} already member(s) of {} with these settings: nothing to add",
            nodes.iter().map(|n| n.name.as_str()).collect::<Vec<_>>().join(", "),
            r.name
        ));
        return execute(env, desired, None, &o).await;
    }
    for (i, n) in nodes.iter().enumerate() {
        desired.state.removed.retain(|x| *x != n.name);
        if let Some(e) = desired.node(&n.name) {
            let what = if e.state.joining {
                "being added by an interrupted scale-out with other settings (run `pgscale resume`)"
            } else {
                "already a node of the cluster"
            };
            return Err(problems(&[locs.problem(format!("nodes[{i}].name"), format!("`{}` is {what}", n.name))]));
        }
        let mut n = n.clone();
        n.state = carried.remove(&n.name).unwrap_or_default();
        n.state.joining = true;
        desired.nodes.push(n);
    }
    let shifted = locs.shifted(offset);
    let ps: Vec<_> =
        plan::validate::validate_static(&desired, &shifted).into_iter().map(|p| plan::unshift(p, offset)).collect();
    if !ps.is_empty() {
        return Err(problems(&ps));
    }
    execute(env, desired, Some((&shifted, offset)), &o).await
}

/// The facts, observations and plan of adding the nodes marked joining.
pub(crate) struct Prepared {
    pub cl: Cluster,
    pub plan: plan::Plan,
}

pub(crate) async fn prepare(
    desired: &Inventory,
    locs: Option<(&Locations, usize)>,
    o: &Opts,
    cl: Cluster,
    obs: Option<model::Observed>,
) -> Result<Prepared, OpError> {
    let joining_nodes: Vec<_> = desired.nodes.iter().filter(|n| n.state.joining).collect();
    let found = host_facts_all(&cl, &joining_nodes, o.timeout).await?;
    let mut facts = BTreeMap::new();
    let mut join = BTreeMap::new();
    let mut ours = Vec::new();
    for n in &joining_nodes {
        let f = &found[&n.name];
        facts.insert(n.name.clone(), f.dirs.clone());
        join.insert(n.name.clone(), JoinFacts { dirs: f.dirs.clone(), copied: f.copied, running: f.running });
        ours.extend(n.state.created_dirs.iter().chain(&n.state.adopted_dirs).cloned());
    }
    let empty = Locations::for_file("inventory");
    let (l, offset) = locs.unwrap_or((&empty, 0));
    let ps: Vec<_> = plan::validate::validate_facts(desired, l, &facts, &ours)
        .into_iter()
        .map(|p| plan::unshift(p, offset))
        .collect();
    if !ps.is_empty() {
        return Err(problems(&ps));
    }
    let (obs, hba) = match obs {
        // A dry run of init: the primary does not exist yet; plan against
        // the primary init will leave (its pg_hba already has every peer).
        Some(o) => {
            let want = plan::hba::render(desired, &cl.os_user, &cl.peers);
            let hba = desired.primary().map(|p| (p.name.clone(), want)).into_iter().collect();
            (o, hba)
        }
        None => {
            let obs = pg::probe_all(&cl.targets(), o.timeout).await;
            let hba = observed_hba(&cl, &obs, o.timeout).await;
            (obs, hba)
        }
    };
    let joining = join.len().max(1);
    let opts = ScaleOpts {
        parallel: o.parallel.unwrap_or(joining).max(1),
        catchup_secs: o.catchup.as_secs().max(1),
        stop_secs: 10,
        copy_max_rate: o.max_rate.clone(),
    };
    let plan = plan::scale::plan_scale_out(desired, &cl.ctx(WAIT), &obs, &hba, &join, &opts).map_err(refused)?;
    Ok(Prepared { cl, plan })
}

/// Plan and run the addition of the nodes marked joining (also `resume`
/// and the standbys of `init`).
pub async fn execute(
    env: Env<'_>,
    desired: Inventory,
    locs: Option<(&Locations, usize)>,
    o: &Opts,
) -> Result<Outcome, OpError> {
    let store = env.stores.for_spec(&desired.name, desired.dcs.as_ref()).await?;
    let cl = Cluster::open(store.clone(), desired.clone(), o.timeout, o.dry_run).await?;
    // The hosts first: binaries, version, OS user, room for a copy of the
    // primary, free ports, clocks; all at once, before anything changes.
    let joining: Vec<String> = desired.nodes.iter().filter(|n| n.state.joining).map(|n| n.name.clone()).collect();
    if !joining.is_empty() {
        let primary = desired.primary().map(|p| p.name.clone()).unwrap_or_default();
        let t = cl.targets().into_iter().find(|(n, _)| *n == primary).map(|(_, t)| t);
        let copy_bytes = match t {
            Some(t) => pg::database_bytes(&t, o.timeout).await.ok(),
            None => None,
        };
        let scope = Scope {
            only: Some(joining.clone()),
            new_nodes: joining,
            copy_bytes,
            install: o.install || desired.postgres.install,
            pg_major: o.pg_major,
            dry_run: o.dry_run,
            timeout: o.timeout,
        };
        if let Some(why) = precheck(env, &desired, &scope).await? {
            return Ok(Outcome::Unchanged(why));
        }
    }
    let Prepared { cl, plan } = prepare(&desired, locs, o, cl, None).await?;
    if !o.dry_run && plan.is_empty() {
        return Ok(Outcome::Unchanged("nothing to do: the cluster already matches".into()));
    }
    let rerun = format!("pgscale resume -n {}", desired.name);
    apply_adding(env, &cl, desired, plan, o, rerun).await
}

/// Run a plan that adds nodes (scale-out, init), then say what to look at.
pub(crate) async fn apply_adding(
    env: Env<'_>,
    cl: &Cluster,
    desired: Inventory,
    plan: plan::Plan,
    o: &Opts,
    rerun: String,
) -> Result<Outcome, OpError> {
    let name = desired.name.clone();
    let a = Apply { dry_run: o.dry_run, question: None, timeout: o.timeout, rerun };
    let out = run_plan(env, cl, desired, plan, a).await?;
    if !o.dry_run {
        env.ui.say(&format!("next: pgscale status -n {name}"));
    }
    Ok(out)
}

/// A commented add file with the next name, address and port filled in.
pub async fn template(inv: &Inventory) -> String {
    let primary = inv.primary().expect("a recorded cluster has a primary");
    let n = inv.nodes.iter().filter_map(|n| n.name.strip_prefix("pg")?.parse::<u32>().ok()).max().unwrap_or(1) + 1;
    let mut name = format!("pg{n}");
    while inv.node(&name).is_some() {
        name.push('_');
    }
    let host = primary.host.clone();
    let mut port =
        inv.nodes.iter().filter(|n| n.host == host).map(|n| n.port).max().unwrap_or(primary.port).saturating_add(1);
    while port < u16::MAX && pg::tcp_listening(&host, port, Duration::from_millis(200)).await {
        port += 1;
    }
    let data_dir = primary.data_dir.parent().map(|p| p.join(&name)).unwrap_or_default();
    format!(
        "# Nodes to add to cluster {c}: pgscale scale-out -n {c} -c THIS_FILE [--dry-run]\n\
         # Fields as in the inventory; the values below are the next free ones.\n\
         nodes:\n  - name: {name}                # [a-z0-9_]{{1,63}}: application_name and slot name\n    \
         host: {host}           # where it listens and where its commands run\n    \
         port: {port}\n    \
         data_dir: {dd}   # must be missing or empty\n    \
         upstream: {p}               # the node it streams from (default: the primary; another standby = cascaded)\n    \
         sync: async                # sync | potential | async (sync/potential: direct standbys of the primary)\n    \
         # socket_dir: {dd}.sock\n    \
         # transport: ssh             # default: local for this machine's addresses\n    \
         # ssh: {{ user: postgres, port: 22, identity_file: ~/.ssh/id_ed25519 }}\n\n",
        c = inv.name,
        dd = data_dir.display(),
        p = primary.name,
    )
}
