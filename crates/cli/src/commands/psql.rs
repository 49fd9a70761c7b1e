use crate::args::PsqlArgs;
use ops::error::{failed, invalid, OpError};
use ops::Env;

use std::os::unix::process::CommandExt;
use std::path::PathBuf;

pub async fn run(env: Env<'_>, a: PsqlArgs) -> Result<u8, OpError> {
    let (_, inv, secrets, store_error) = ops::cluster::for_reading(env.stores, &a.name).await?;
    if let Some(e) = store_error {
        env.ui.say(&format!("warning: {e}"));
    }
    let node = match &a.node {
        Some(n) => inv.node(n).ok_or_else(|| invalid(format!("node `{n}` is not in cluster {}", inv.name)))?,
        None => inv.primary().ok_or_else(|| invalid("the cluster has no nodes"))?,
    };
    // The client runs here; prefer the cluster's own binaries if they are on
    // this machine, else psql from PATH.
    let psql = inv
        .postgres
        .bin_dir
        .as_ref()
        .map(|b| b.join("psql"))
        .filter(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from("psql"));
    // The passwords file on this machine (written from etcd when kept there).
    let secrets = secrets.path().to_path_buf();
    env.stores.close().await;
    let argv = plan::argv::psql(
        psql.parent().unwrap_or(&PathBuf::new()),
        &node.host,
        node.port,
        &inv.postgres.admin_user,
        &a.args,
    );
    let prog = if psql.is_absolute() { psql.display().to_string() } else { "psql".into() };
    // The password comes from PGPASSFILE (mode 0600), never argv.
    let err = std::process::Command::new(prog).args(&argv[1..]).env("PGPASSFILE", secrets).exec();
    Err(failed(format!("run psql: {err} (install the PostgreSQL client: apt-get install postgresql-client)")))
}
