use super::{observed_hba, Cluster, WAIT};
use crate::args::{CheckArgs, OutputFormat};
use journal::Home;
use plan::check::{overall, CheckInput, Severity};

/// Disk use of a directory's filesystem, percent (`df -P`).
async fn disk_pct(h: &host::Host, path: &std::path::Path, d: std::time::Duration) -> Option<u8> {
    let argv = vec!["df".to_string(), "-P".into(), path.display().to_string()];
    let o = h.run(&host::Run::new(&argv, d)).await.ok()?;
    let line = o.stdout.lines().nth(1)?;
    line.split_whitespace().nth(4)?.trim_end_matches('%').parse().ok()
}

pub async fn run(home: &Home, fmt: OutputFormat, a: CheckArgs) -> anyhow::Result<u8> {
    let inv = match home.load(&a.name) {
        Ok(i) => i,
        Err(e) => {
            println!("UNKNOWN: {e}");
            return Ok(Severity::Unknown.code());
        }
    };
    let cl = Cluster::open(home, inv.clone(), a.timeout, true).await?;
    let obs = pg::probe_all(&cl.targets(), a.timeout).await;
    let mut input = CheckInput { hba: observed_hba(&cl, &obs, a.timeout).await, ..Default::default() };
    for n in &inv.nodes {
        if let Some(Ok(h)) = cl.hosts.get(&n.name) {
            if let Some(p) = disk_pct(h, &n.data_dir, a.timeout).await {
                input.disk_used_pct.insert(n.name.clone(), p);
            }
        }
    }
    let mut findings = plan::check::check(&inv, &obs, &cl.ctx(WAIT), &input);
    if let Some(n) = &a.node {
        findings.retain(|f| &f.node == n);
    }
    let status = overall(&findings);
    let word = |s: Severity| match s {
        Severity::Ok => "OK",
        Severity::Warning => "WARNING",
        Severity::Critical => "CRITICAL",
        Severity::Unknown => "UNKNOWN",
    };
    if fmt == OutputFormat::Json {
        println!("{}", serde_json::json!({"cluster": inv.name, "status": status, "findings": findings}));
    } else {
        for f in &findings {
            println!("{} {} {}: {}", word(f.severity), f.node, f.check, f.message);
        }
        if findings.is_empty() {
            println!("OK: cluster {}: {} node(s), nothing to report", inv.name, inv.nodes.len());
        }
    }
    Ok(status.code())
}
