use crate::args::{HostCheckArgs, OutputFormat};
use ops::error::OpError;
use ops::hostcheck::{self as hc, Scope};
use ops::Env;
use plan::hostcheck::render;

/// `pgscale host check`: exit 0 when every host is ready, 2 with problems,
/// 3 when only unreachable hosts stand in the way.
pub async fn check(env: Env<'_>, fmt: OutputFormat, a: HostCheckArgs) -> Result<u8, OpError> {
    let (inv, new_nodes) = match (&a.config, &a.name) {
        (Some(f), _) => {
            let (inv, _) = ops::cluster::read_inventory_file(f)?;
            let all = inv.nodes.iter().map(|n| n.name.clone()).collect();
            (inv, all)
        }
        (None, Some(n)) => (ops::cluster::stored(env.stores, n).await?.1, vec![]),
        (None, None) => unreachable!("clap requires -c or -n"),
    };
    let scope = Scope {
        only: None,
        new_nodes,
        copy_bytes: None,
        install: a.install,
        pg_major: a.pg_major,
        dry_run: a.dry_run,
        timeout: a.timeout,
    };
    let c = hc::check(env, &inv, &scope).await?;
    let code = c.error().map(|e| e.code()).unwrap_or(0);
    if fmt == OutputFormat::Json {
        let status = match code {
            0 => "ok",
            3 => "unreachable",
            _ => "problems",
        };
        println!(
            "{}",
            serde_json::json!({"cluster": inv.name, "status": status, "findings": c.findings, "install": c.install})
        );
    } else {
        print!("{}", render(&c.findings, true));
        match code {
            0 => eprintln!("host check of {}: every host is ready", inv.name),
            _ => eprintln!(
                "host check of {}: problems found (nothing was changed){}",
                inv.name,
                if a.install { "" } else { "; `--install` makes hosts ready where it can" }
            ),
        }
    }
    Ok(code)
}
