use super::Cluster;
use crate::args::{HbaArgs, OutputFormat};
use crate::fail::{failed, invalid};
use journal::Home;

pub async fn run(home: &Home, fmt: OutputFormat, a: HbaArgs) -> anyhow::Result<u8> {
    let inv = home.load(&a.name)?;
    let node = match &a.node {
        Some(n) => inv.node(n).ok_or_else(|| invalid(format!("node `{n}` is not in cluster {}", inv.name)))?.clone(),
        None => inv.primary().ok_or_else(|| invalid("the cluster has no nodes"))?.clone(),
    };
    let cl = Cluster::open(home, inv.clone(), a.timeout, true).await?;
    let want = plan::hba::render(&inv, &cl.os_user, &cl.peers);
    let target =
        cl.targets().into_iter().find(|(n, _)| *n == node.name).map(|(_, t)| t).expect("every node has a target");
    let obs = pg::config_obs(&target, &[], a.timeout)
        .await
        .map_err(|e| failed(format!("read pg_hba.conf of {}: {e}", node.name)))?;
    let have = obs.hba.unwrap_or_default();
    let matches = have == want;
    if fmt == OutputFormat::Json {
        println!(
            "{}",
            serde_json::json!({"cluster": inv.name, "node": node.name, "hba": have, "matches_inventory": matches})
        );
    } else {
        print!("{have}");
        if matches {
            eprintln!("({}: pg_hba.conf matches the inventory)", node.name);
        } else {
            eprintln!("({}: pg_hba.conf DIFFERS from the inventory: `pgscale apply-config -n {} -c FILE --dry-run` shows the change)", node.name, inv.name);
        }
    }
    Ok(0)
}
