use crate::args::{MigrateArgs, StoreKind};
use ops::error::{invalid, OpError};
use ops::Env;

/// `pgscale store migrate`: the cluster's state to the home or to etcd.
pub async fn migrate(env: Env<'_>, a: MigrateArgs) -> Result<u8, OpError> {
    let stores = env.stores;
    let home = stores.home();
    let remembered = ::store::etcd::pointer(stores.local_home(), &a.name);
    let etcd_spec = stores.config().etcd.clone().or(remembered);
    let (from, to) = match a.to {
        StoreKind::Etcd => {
            let spec = etcd_spec.ok_or_else(|| {
                invalid("say which etcd: --etcd URL,... (or PGSCALE_ETCD), e.g. --etcd 10.0.0.1:2379,10.0.0.2:2379")
            })?;
            (home, stores.etcd(&spec).await?)
        }
        StoreKind::Home => {
            let spec = etcd_spec.ok_or_else(|| {
                invalid(format!(
                    "cluster {} is not kept in etcd as far as this machine knows: give --etcd URL,...",
                    a.name
                ))
            })?;
            (stores.etcd(&spec).await?, home)
        }
    };
    ::store::migrate(&a.name, from.as_ref(), to.as_ref(), stores.lock_wait()).await?;
    env.ui.say(&format!(
        "cluster {}: its state moved from {} to {}; its servers were not touched",
        a.name,
        from.describe(),
        to.describe()
    ));
    if a.to == StoreKind::Etcd {
        env.ui.say(&format!(
            "other machines need the endpoints (--etcd or PGSCALE_ETCD) and a copy of the key file {} (mode 0600)",
            stores
                .config()
                .key_file
                .clone()
                .unwrap_or_else(|| ::store::etcd::key_path_default(&stores.config().home))
                .display()
        ));
    }
    Ok(0)
}
