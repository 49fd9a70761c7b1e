use crate::args::OutputFormat;
use comfy_table::{presets, Table};
use ops::error::OpError;
use ops::Env;

pub fn run(env: Env<'_>, fmt: OutputFormat) -> Result<u8, OpError> {
    let home = env.home;
    let mut rows = Vec::new();
    for name in home.list()? {
        let inv = home.load(&name)?;
        rows.push(serde_json::json!({
            "name": name,
            "phase": format!("{:?}", inv.state.phase).to_lowercase(),
            "nodes": inv.nodes.len(),
            "primary": inv.primary().map(|p| p.name.clone()),
        }));
    }
    if fmt == OutputFormat::Json {
        println!("{}", serde_json::Value::Array(rows));
        return Ok(0);
    }
    if rows.is_empty() {
        eprintln!(
            "no clusters in {}; create one with `pgscale init -c FILE` or try `pgscale demo`",
            home.root().display()
        );
        return Ok(0);
    }
    let mut t = Table::new();
    t.load_preset(presets::NOTHING);
    t.set_header(["NAME", "PHASE", "NODES", "PRIMARY"]);
    for r in rows {
        t.add_row([
            r["name"].as_str().unwrap_or("").to_string(),
            r["phase"].as_str().unwrap_or("").to_string(),
            r["nodes"].to_string(),
            r["primary"].as_str().unwrap_or("-").to_string(),
        ]);
    }
    println!("{t}");
    Ok(0)
}
