use crate::args::{HaAction, HaArgs, OutputFormat};
use ops::error::OpError;
use ops::ha_mode::{self, Change};
use ops::Env;

pub async fn run(env: Env<'_>, fmt: OutputFormat, a: HaArgs) -> Result<u8, OpError> {
    let name = a.name.to_string();
    let change = match a.action {
        HaAction::Enable => Change::Enable,
        HaAction::Disable => Change::Disable,
        HaAction::Pause => Change::Pause,
        HaAction::Resume => Change::Resume,
        HaAction::Status => return status(env, fmt, &name).await,
    };
    let (s, changed) = ha_mode::set(env, &name, change).await?;
    if fmt == OutputFormat::Json {
        println!("{}", serde_json::json!({ "cluster": name, "mode": s.mode, "changed": changed }));
    } else if changed {
        env.ui.say(&format!("automatic failover of {name}: {}", s.mode.as_str()));
    } else {
        env.ui.say(&format!("automatic failover of {name} is already {}: nothing changed", s.mode.as_str()));
    }
    Ok(0)
}

async fn status(env: Env<'_>, fmt: OutputFormat, name: &str) -> Result<u8, OpError> {
    let s = ha_mode::status(env, name).await?;
    if fmt == OutputFormat::Json {
        println!("{}", serde_json::to_string(&s).unwrap_or_default());
        return Ok(0);
    }
    let since = match (&s.set_by, &s.set_at) {
        (Some(b), Some(t)) => format!(" (set by {b} at {t})"),
        _ => " (never set)".into(),
    };
    let what = match s.mode {
        model::HaMode::Enabled => "enabled",
        model::HaMode::Disabled => "disabled: agents observe and publish, nobody fails over",
        model::HaMode::Paused => "PAUSED (maintenance): agents observe and report, never act",
    };
    println!("cluster {} ({})", s.cluster, s.store);
    println!("automatic failover: {what}{since}");
    println!("policies (spec `ha:`): {}", s.policies);
    match &s.leader {
        Some(l) => println!("leader: {l}"),
        None => println!("leader: none"),
    }
    for (n, m) in &s.members {
        println!("agent {n}: {m}");
    }
    if !s.without_agent.is_empty() {
        println!("no agent running for: {}", s.without_agent.join(", "));
    }
    Ok(0)
}
