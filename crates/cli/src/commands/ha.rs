use super::show;
use crate::args::{FailoverArgs, OutputFormat, RejoinArgs, SwitchoverArgs};
use ops::error::OpError;
use ops::{ha, Env};

pub async fn switchover(env: Env<'_>, fmt: OutputFormat, a: SwitchoverArgs) -> Result<u8, OpError> {
    let r = ha::SwitchoverRequest {
        name: a.name,
        to: a.to,
        dry_run: a.dry_run,
        yes: a.yes,
        max_lag: a.max_lag,
        timeout: a.timeout,
    };
    let out = ha::switchover(env, r).await?;
    Ok(show(env, fmt, &out))
}

pub async fn failover(env: Env<'_>, fmt: OutputFormat, a: FailoverArgs) -> Result<u8, OpError> {
    let r = ha::FailoverRequest {
        name: a.name,
        to: a.to,
        force: a.force,
        dry_run: a.dry_run,
        yes: a.yes,
        timeout: a.timeout,
        known_down: vec![],
        promoted: false,
    };
    let out = ha::failover(env, r).await?;
    Ok(show(env, fmt, &out))
}

pub async fn rejoin(env: Env<'_>, fmt: OutputFormat, a: RejoinArgs) -> Result<u8, OpError> {
    let r = ha::RejoinRequest {
        name: a.name,
        node: a.node,
        reclone: a.reclone,
        dry_run: a.dry_run,
        yes: a.yes,
        timeout: a.timeout,
        max_rate: a.max_rate,
    };
    let out = ha::rejoin(env, r).await?;
    Ok(show(env, fmt, &out))
}
