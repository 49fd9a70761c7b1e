use super::{scale_in, scale_out};
use crate::args::{OutputFormat, ResumeArgs};
use journal::Home;
use std::time::Duration;

/// Re-observe, re-plan and apply what is left of the recorded intent.
pub async fn run(home: &Home, fmt: OutputFormat, a: ResumeArgs, argv: &[String]) -> anyhow::Result<u8> {
    let _lock = if a.dry_run { None } else { Some(home.lock(&a.name, "pgscale resume")?) };
    let inv = home.load(&a.name)?;
    if inv.nodes.iter().any(|n| n.state.joining) {
        eprintln!("resuming scale-out of {}", a.name);
        let o = scale_out::Opts {
            fmt,
            dry_run: a.dry_run,
            parallel: None,
            timeout: a.timeout,
            catchup: Duration::from_secs(600),
        };
        return scale_out::execute(home, inv, None, &o, argv).await;
    }
    if inv.nodes.iter().any(|n| n.state.leaving) {
        eprintln!("resuming scale-in of {}", a.name);
        let o = scale_in::Opts { fmt, dry_run: a.dry_run, yes: a.yes, timeout: a.timeout };
        return scale_in::execute(home, inv, &o, argv).await;
    }
    if let Some(old) = &inv.state.previous_primary {
        let to = inv.primary().map(|p| p.name.clone()).unwrap_or_default();
        drop(_lock);
        // A failover marks the old primary as needing a rejoin; a switchover does not.
        if inv.node(old).is_some_and(|n| n.state.needs_rejoin) {
            eprintln!("resuming failover of {} to {to}", a.name);
            let f = crate::args::FailoverArgs {
                name: a.name.clone(),
                to: Some(to),
                force: false,
                dry_run: a.dry_run,
                yes: a.yes,
                timeout: a.timeout,
            };
            return super::ha::failover(home, fmt, f, argv).await;
        }
        eprintln!("resuming switchover of {} to {to}", a.name);
        let s = crate::args::SwitchoverArgs {
            name: a.name.clone(),
            to,
            dry_run: a.dry_run,
            yes: a.yes,
            max_lag: 16 << 20,
            timeout: a.timeout,
        };
        return super::ha::switchover(home, fmt, s, argv).await;
    }
    if inv.state.phase == model::Phase::Initializing {
        eprintln!("cluster {} was left half-created by init: run the same `pgscale init -c FILE` again, or `pgscale destroy -n {}`", a.name, a.name);
        return Ok(crate::fail::INVALID);
    }
    eprintln!("nothing to resume: no operation on {} was interrupted", a.name);
    Ok(0)
}
