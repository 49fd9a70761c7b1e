//! Nagios exit codes: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN. UNKNOWN when
//! pgscale itself cannot do its job (no such cluster, an unreadable home,
//! an internal error); a node that cannot be reached is CRITICAL.

use crate::args::{CheckArgs, OutputFormat};
use ops::Env;
use plan::check::Severity;

pub async fn run(env: Env<'_>, fmt: OutputFormat, a: CheckArgs) -> u8 {
    let c = match ops::check::run(env.stores, &a.name, a.node.as_deref(), a.timeout).await {
        Ok(c) => c,
        Err(e) => {
            if fmt == OutputFormat::Json {
                println!("{}", serde_json::json!({"cluster": a.name, "status": "unknown", "error": e.message}));
            } else {
                println!("UNKNOWN: {}", e.message);
            }
            return Severity::Unknown.code();
        }
    };
    let word = |s: Severity| match s {
        Severity::Ok => "OK",
        Severity::Warning => "WARNING",
        Severity::Critical => "CRITICAL",
        Severity::Unknown => "UNKNOWN",
    };
    if fmt == OutputFormat::Json {
        println!("{}", serde_json::json!({"cluster": c.cluster, "status": c.status, "findings": c.findings}));
    } else {
        for f in &c.findings {
            println!("{} {} {}: {}", word(f.severity), f.node, f.check, f.message);
        }
        if c.findings.is_empty() {
            println!("OK: cluster {}: {} node(s), nothing to report", c.cluster, c.nodes);
        }
    }
    c.status.code()
}
