//! init of a sharded cluster: every group created as an ordinary cluster
//! (coordinator first), then the sharding set up on top: the database on
//! every group, the coordinator's catalog, a foreign server per data group,
//! and the shards placed round-robin. A re-run continues where it stopped.

use super::{groups, Sharded};
use crate::error::{invalid, problems, OpError};
use crate::init::{run_inventory, Request};
use crate::{Env, Outcome};
use plan::shard::spec;
use std::time::Duration;

pub async fn run(env: Env<'_>, r: &Request, text: &str) -> Result<Outcome, OpError> {
    let file = r.config.display().to_string();
    let (f, locs) = plan::load::parse_sharded(&file, text).map_err(|p| problems(&p))?;
    let mut ps = spec::problems(&f, &locs);
    let parts = spec::split(&f, &locs);
    for g in &parts {
        ps.extend(plan::validate::user_state_problems(None, &g.inv.nodes, &g.locs));
        ps.extend(plan::validate::validate_static(&g.inv, &g.locs));
    }
    if !ps.is_empty() {
        return Err(problems(&ps));
    }
    let invs: Vec<&model::Inventory> = parts.iter().map(|g| &g.inv).collect();
    let peers = groups::peers_of(&groups::addresses(&invs, r.timeout).await);
    let rerun = format!("pgscale init -c {file}");
    let mut plans = Vec::new();
    for g in parts {
        let mut inv = g.inv;
        refuse_foreign_cluster(env, &inv).await?;
        if let Some(s) = inv.sharding.as_mut() {
            s.peers = peers.get(&inv.name).cloned().unwrap_or_default();
        }
        env.ui.say(&format!("group {} (cluster {}):", g.group, inv.name));
        match run_inventory(env, inv, &g.locs, r, rerun.clone()).await? {
            Outcome::Planned(p) => plans.push(p),
            Outcome::Unchanged(why) => env.ui.say(&why),
            _ => {}
        }
    }
    if r.dry_run {
        return Ok(Outcome::PlannedMany(plans));
    }
    let sh = Sharded::open(env.stores, &f.name).await?;
    setup(&sh, r.timeout).await?;
    Ok(Outcome::Done(format!(
        "sharded cluster {} is ready: coordinator {} and data groups {}, {} shards in database {}; \
         create sharded tables with `pgscale table create -n {}`",
        f.name,
        sh.coord.primary_name(),
        sh.data.keys().cloned().collect::<Vec<_>>().join(", "),
        sh.shards,
        sh.database,
        f.name
    )))
}

/// A cluster of that name that is not this sharded cluster's group is
/// never taken over.
async fn refuse_foreign_cluster(env: Env<'_>, inv: &model::Inventory) -> Result<(), OpError> {
    let store = env.stores.for_spec(&inv.name, inv.dcs.as_ref()).await?;
    if !store.exists(&inv.name).await? {
        return Ok(());
    }
    let have = store.load(&inv.name).await?;
    let mine =
        |s: &model::Sharding| inv.sharding.as_ref().is_some_and(|w| w.cluster == s.cluster && w.group == s.group);
    if !have.sharding.as_ref().is_some_and(mine) {
        return Err(invalid(format!(
            "cluster {} already exists and is not this sharded cluster's group; rename the sharded cluster or the group",
            inv.name
        )));
    }
    Ok(())
}

/// The sharding on top of created groups (idempotent).
pub async fn setup(sh: &Sharded<'_>, d: Duration) -> Result<(), OpError> {
    groups::ensure_database(&sh.coord.primary_target(), &sh.database, d).await?;
    let coord = sh.coord_db(d).await?;
    coord.exec("create the coordinator catalog", &plan::shard::sql::coordinator_catalog()).await?;
    for g in sh.data.values() {
        groups::prepare_data(sh, &coord, &g.name, d).await?;
        groups::register(&coord, g, &sh.database).await?;
    }
    let order = sh.coord.inv.sharding.as_ref().map(|s| s.groups.clone()).unwrap_or_default();
    let placed: i64 = coord.one("count placed shards", "SELECT count(*) FROM pgscale.shards", &[]).await?.get(0);
    if placed == 0 && !order.is_empty() {
        let values: Vec<String> = (0..sh.shards)
            .map(|s| format!("({s}, {})", plan::sql::literal(&order[s as usize % order.len()])))
            .collect();
        coord
            .exec("place the shards", &format!("INSERT INTO pgscale.shards (shard, grp) VALUES {}", values.join(", ")))
            .await?;
    }
    Ok(())
}
