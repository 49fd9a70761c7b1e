use super::{host_facts, observed_hba, Cluster, WAIT};
use crate::args::{OutputFormat, ScaleOutArgs};
use crate::fail::{invalid, problems, refused};
use crate::output::{finish, print_plan, progress};
use journal::Home;
use model::{Inventory, NodeState};
use plan::scale::{JoinFacts, ScaleOpts};
use plan::Locations;
use std::collections::BTreeMap;
use std::time::Duration;

pub struct Opts {
    pub fmt: OutputFormat,
    pub dry_run: bool,
    pub parallel: Option<usize>,
    pub timeout: Duration,
    pub catchup: Duration,
}

/// Same node, ignoring what pgscale keeps in `state`.
fn same_spec(a: &model::NodeSpec, b: &model::NodeSpec) -> bool {
    let mut x = a.clone();
    x.state = NodeState::default();
    let mut y = b.clone();
    y.state = NodeState::default();
    x == y
}

pub async fn run(home: &Home, fmt: OutputFormat, a: ScaleOutArgs, argv: &[String]) -> anyhow::Result<u8> {
    let stored = home.load(&a.name)?;
    if a.gen_template {
        print!("{}", template(&stored).await);
        return Ok(0);
    }
    let path = a.config.clone().ok_or_else(|| invalid("-c FILE is required (or --gen-template)"))?;
    let text = std::fs::read_to_string(&path).map_err(|e| invalid(format!("read {}: {e}", path.display())))?;
    let (nodes, locs) = plan::parse_nodes(&path.display().to_string(), &text).map_err(|p| problems(&p))?;
    let ps = plan::validate::user_state_problems(None, &nodes, &locs);
    if !ps.is_empty() {
        return Err(problems(&ps));
    }
    let _lock = if a.dry_run { None } else { Some(home.lock(&a.name, "pgscale scale-out")?) };
    let stored = home.load(&a.name)?;
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
    // Every node already added with exactly these settings: a re-run of a
    // finished scale-out. Nothing to add; still converge what is left.
    let o = Opts { fmt, dry_run: a.dry_run, parallel: a.parallel, timeout: a.timeout, catchup: a.catchup_timeout };
    let member = |f: &model::NodeSpec| desired.node(&f.name).is_some_and(|e| !e.state.joining && same_spec(e, f));
    if !nodes.is_empty() && nodes.iter().all(member) {
        eprintln!(
            "{} already member(s) of {} with these settings: nothing to add",
            nodes.iter().map(|n| n.name.as_str()).collect::<Vec<_>>().join(", "),
            a.name
        );
        return execute(home, desired, None, &o, argv).await;
    }
    for (i, n) in nodes.iter().enumerate() {
        desired.state.removed.retain(|r| *r != n.name);
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
    execute(home, desired, Some((&shifted, offset)), &o, argv).await
}

/// Plan and run the addition of the nodes marked joining (also `resume`).
pub async fn execute(
    home: &Home,
    desired: Inventory,
    locs: Option<(&Locations, usize)>,
    o: &Opts,
    argv: &[String],
) -> anyhow::Result<u8> {
    let cl = Cluster::open(home, desired.clone(), o.timeout, o.dry_run).await?;
    let mut facts = BTreeMap::new();
    let mut join = BTreeMap::new();
    let mut ours = Vec::new();
    for n in desired.nodes.iter().filter(|n| n.state.joining) {
        let h =
            cl.hosts[&n.name].clone().map_err(|e| invalid(format!("{}: its host cannot be reached: {e}", n.name)))?;
        let f = host_facts(&h, n, &cl.bin_dir, o.timeout).await?;
        facts.insert(n.name.clone(), f.dirs.clone());
        join.insert(n.name.clone(), JoinFacts { dirs: f.dirs, copied: f.copied, running: f.running });
        ours.extend(n.state.created_dirs.iter().chain(&n.state.adopted_dirs).cloned());
    }
    let empty = Locations::for_file("inventory");
    let (l, offset) = locs.unwrap_or((&empty, 0));
    let ps: Vec<_> = plan::validate::validate_facts(&desired, l, &facts, &ours)
        .into_iter()
        .map(|p| plan::unshift(p, offset))
        .collect();
    if !ps.is_empty() {
        return Err(problems(&ps));
    }
    let obs = pg::probe_all(&cl.targets(), o.timeout).await;
    let hba = observed_hba(&cl, &obs, o.timeout).await;
    let joining = join.len().max(1);
    let opts = ScaleOpts {
        parallel: o.parallel.unwrap_or(joining).max(1),
        catchup_secs: o.catchup.as_secs().max(1),
        stop_secs: 10,
    };
    let plan = plan::scale::plan_scale_out(&desired, &cl.ctx(WAIT), &obs, &hba, &join, &opts).map_err(refused)?;
    if o.dry_run {
        print_plan(&plan, o.fmt);
        return Ok(0);
    }
    if plan.is_empty() {
        eprintln!("nothing to do: the cluster already matches");
        return Ok(0);
    }
    let rt = cl.runtime(home, desired.clone(), o.timeout, WAIT)?;
    let report = exec::apply(&plan, &rt, argv, &mut progress()).await;
    for n in &plan.notes {
        eprintln!("note: {n}");
    }
    finish(&report, &format!("scale-out of cluster {}", desired.name), &format!("pgscale resume -n {}", desired.name))?;
    eprintln!("next: pgscale status -n {}", desired.name);
    Ok(0)
}

/// A commented add file with the next name, address and port filled in.
async fn template(inv: &Inventory) -> String {
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
