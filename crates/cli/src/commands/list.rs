use crate::args::OutputFormat;
use comfy_table::{presets, Table};
use ops::error::OpError;
use ops::Env;

pub async fn run(env: Env<'_>, fmt: OutputFormat) -> Result<u8, OpError> {
    let mut rows = Vec::new();
    for (name, store) in env.stores.listing().await? {
        let inv = store.load(&name).await?;
        rows.push(serde_json::json!({
            "name": name,
            "phase": format!("{:?}", inv.state.phase).to_lowercase(),
            "nodes": inv.nodes.len(),
            "primary": inv.primary().map(|p| p.name.clone()),
            "store": store.describe(),
        }));
    }
    if fmt == OutputFormat::Json {
        println!("{}", serde_json::Value::Array(rows));
        return Ok(0);
    }
    if rows.is_empty() {
        let where_ = match &env.stores.config().etcd {
            Some(e) => format!("etcd ({}, prefix {})", e.endpoints.join(","), e.prefix),
            None => format!("{}", env.stores.config().home.display()),
        };
        eprintln!("no clusters in {where_}; create one with `pgscale init -c FILE` or try `pgscale demo`");
        return Ok(0);
    }
    let mut t = Table::new();
    t.load_preset(presets::NOTHING);
    t.set_header(["NAME", "PHASE", "NODES", "PRIMARY", "STORE"]);
    for r in rows {
        t.add_row([
            r["name"].as_str().unwrap_or("").to_string(),
            r["phase"].as_str().unwrap_or("").to_string(),
            r["nodes"].to_string(),
            r["primary"].as_str().unwrap_or("-").to_string(),
            r["store"].as_str().unwrap_or("").to_string(),
        ]);
    }
    println!("{t}");
    Ok(0)
}
