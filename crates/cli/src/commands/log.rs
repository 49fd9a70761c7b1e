use crate::args::{LogArgs, OutputFormat};
use ops::error::OpError;
use ops::Env;

/// `pgscale log`: the operation log from the cluster's store, oldest first.
pub async fn run(env: Env<'_>, fmt: OutputFormat, a: LogArgs) -> Result<u8, OpError> {
    let store = env.stores.for_cluster(&a.name).await?;
    if !store.exists(&a.name).await? {
        store.load(&a.name).await?;
    }
    let lines = store.log(&a.name, a.limit).await?;
    for l in &lines {
        if fmt == OutputFormat::Json {
            println!("{l}");
            continue;
        }
        let s = |k: &str| l.get(k).and_then(|v| v.as_str()).unwrap_or("").to_string();
        let detail = match s("event").as_str() {
            "request" => format!("{} ({} steps)", s("operation"), l["steps"]),
            "finished" => format!("{} ok={} {} ms", s("operation"), l["ok"], l["ms"]),
            "failed" => format!("{} {}", s("step"), s("error")),
            "skipped" => format!("{} ({})", s("step"), s("why")),
            _ => s("step"),
        };
        println!("{} pid {:<7} {:<9} {detail}", s("ts"), l["pid"], s("event"));
    }
    Ok(0)
}
