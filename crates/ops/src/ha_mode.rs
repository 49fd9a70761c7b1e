//! `pgscale ha`: automatic failover on, off or paused for a whole cluster,
//! and what its agents publish. The mode lives in etcd beside the
//! inventory; a cluster kept in the home cannot have agents.

use crate::error::{invalid, OpError};
use crate::Env;
use model::{HaMode, HaSetting};
use serde::Serialize;
use std::collections::BTreeMap;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    Enable,
    Disable,
    Pause,
    Resume,
}

/// The new setting, and whether it changed anything.
pub async fn set(env: Env<'_>, name: &str, change: Change) -> Result<(HaSetting, bool), OpError> {
    let store = env.stores.for_cluster(name).await?;
    // The cluster must exist (and be readable) before agents are told anything.
    store.load(name).await?;
    let now = store.ha(name).await?.map(|s| s.mode).unwrap_or_default();
    let mode = match (change, now) {
        (Change::Enable, _) => HaMode::Enabled,
        (Change::Disable, _) => HaMode::Disabled,
        (Change::Pause, _) => HaMode::Paused,
        (Change::Resume, HaMode::Paused) => HaMode::Enabled,
        (Change::Resume, m) => {
            return Err(invalid(format!(
                "automatic failover of {name} is not paused (it is {}): `pgscale ha -n {name} enable` turns it on",
                m.as_str()
            )))
        }
    };
    let me = journal::Holder::me(&format!("pgscale ha {}", mode.as_str()));
    let s = HaSetting { mode, by: format!("{} pid {} ({})", me.host, me.pid, me.command), at: me.started };
    if mode == now && store.ha(name).await?.is_some() {
        return Ok((s, false));
    }
    store.set_ha(name, &s).await?;
    Ok((s, true))
}

/// `pgscale ha status`: the mode and what the agents published.
#[derive(Debug, Serialize)]
pub struct Status {
    pub cluster: String,
    pub store: String,
    pub mode: HaMode,
    /// Who set the mode, when (None: never set: disabled).
    pub set_by: Option<String>,
    pub set_at: Option<String>,
    /// The leader key as published (None: no leader).
    pub leader: Option<serde_json::Value>,
    /// Each agent's published state, by node.
    pub members: BTreeMap<String, serde_json::Value>,
    /// Nodes of the inventory without a live agent.
    pub without_agent: Vec<String>,
    /// The spec's `ha:` policies (an agent's flags may override them).
    pub policies: model::HaSpec,
}

pub async fn status(env: Env<'_>, name: &str) -> Result<Status, OpError> {
    let store = env.stores.for_cluster(name).await?;
    let inv = store.load(name).await?;
    let setting = store.ha(name).await?;
    let keys = store.ha_keys(name).await?;
    let parse = |v: &String| serde_json::from_str(v).unwrap_or_else(|_| serde_json::Value::String(v.clone()));
    let members: BTreeMap<String, serde_json::Value> =
        keys.iter().filter_map(|(k, v)| Some((k.strip_prefix("members/")?.to_string(), parse(v)))).collect();
    Ok(Status {
        cluster: name.into(),
        store: store.describe(),
        mode: setting.as_ref().map(|s| s.mode).unwrap_or_default(),
        set_by: setting.as_ref().map(|s| s.by.clone()),
        set_at: setting.as_ref().map(|s| s.at.clone()),
        leader: keys.get("leader").map(parse),
        without_agent: inv.nodes.iter().filter(|n| !members.contains_key(&n.name)).map(|n| n.name.clone()).collect(),
        members,
        policies: inv.ha.clone(),
    })
}

/// `pgscale haproxy-config`: every node checked through its agent (the
/// address the agent published, else the node's address, port 8008).
pub async fn haproxy_config(env: Env<'_>, name: &str, listen: &plan::haproxy::Listen) -> Result<String, OpError> {
    let store = env.stores.for_cluster(name).await?;
    let inv = store.load(name).await?;
    let keys = store.ha_keys(name).await?;
    let backends = inv
        .nodes
        .iter()
        .map(|n| {
            let published = keys
                .get(&format!("members/{}", n.name))
                .and_then(|v| serde_json::from_str::<serde_json::Value>(v).ok())
                .and_then(|v| v["api_url"].as_str().map(String::from))
                .and_then(|u| {
                    let (h, p) = u.rsplit_once(':')?;
                    Some((h.trim_matches(['[', ']']).to_string(), p.parse::<u16>().ok()?))
                });
            let (check_host, check_port) = published.unwrap_or((n.host.clone(), 8008));
            plan::haproxy::Backend { name: n.name.clone(), host: n.host.clone(), port: n.port, check_host, check_port }
        })
        .collect::<Vec<_>>();
    Ok(plan::haproxy::render(name, &backends, listen))
}

/// `pgscale history`: what the agents did and why, oldest first.
pub async fn history(env: Env<'_>, name: &str, limit: usize) -> Result<Vec<serde_json::Value>, OpError> {
    let store = env.stores.for_cluster(name).await?;
    store.load(name).await?;
    let keys = store.ha_keys(name).await?;
    let mut v: Vec<serde_json::Value> = keys
        .iter()
        .filter(|(k, _)| k.starts_with("history/"))
        .filter_map(|(_, v)| serde_json::from_str(v).ok())
        .collect();
    let skip = v.len().saturating_sub(limit);
    Ok(v.split_off(skip))
}
