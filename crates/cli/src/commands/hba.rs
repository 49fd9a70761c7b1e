use crate::args::{HbaArgs, OutputFormat};
use ops::error::OpError;
use ops::Env;

pub async fn run(env: Env<'_>, fmt: OutputFormat, a: HbaArgs) -> Result<u8, OpError> {
    let h = ops::hba::read(env.stores, &a.name, a.node.as_deref(), a.timeout).await?;
    if fmt == OutputFormat::Json {
        println!(
            "{}",
            serde_json::json!({"cluster": h.cluster, "node": h.node, "hba": h.have, "matches_inventory": h.matches})
        );
    } else {
        print!("{}", h.have);
        if h.matches {
            eprintln!("({}: pg_hba.conf matches the inventory)", h.node);
        } else {
            eprintln!("({}: pg_hba.conf DIFFERS from the inventory: `pgscale apply-config -n {} -c FILE --dry-run` shows the change)", h.node, h.cluster);
        }
    }
    Ok(0)
}
