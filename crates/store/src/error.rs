use journal::{Holder, HomeError};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Home(HomeError),
    #[error("cluster `{name}` is not known in {store}; `pgscale list` shows the known ones{hint}")]
    Unknown { name: String, store: String, hint: String },
    #[error("cluster {cluster} is busy: {holder} holds its lock in {store}; wait for it to finish, then run the command again{}", held_hint(*.ttl_s))]
    Held { cluster: String, holder: Box<Holder>, store: String, ttl_s: u64 },
    #[error("the record of cluster {cluster} in {store} changed since this command read it (another pgscale wrote it): nothing more was written; run the command again")]
    Conflict { cluster: String, store: String },
    #[error("cluster {cluster}: this command lost its lock in {store} ({why}); it stopped before the next step; run it again (or `pgscale resume -n {cluster}`)")]
    LockLost { cluster: String, store: String, why: String },
    #[error("{store} cannot be used: {detail}; run the command again once etcd has a quorum")]
    Unavailable { store: String, detail: String },
    #[error("{0}")]
    Key(String),
    #[error("{0}")]
    Invalid(String),
}

impl From<HomeError> for StoreError {
    fn from(e: HomeError) -> StoreError {
        match e {
            HomeError::Held { cluster, holder } => {
                StoreError::Held { cluster, holder: Box::new(holder), store: "the home".into(), ttl_s: 0 }
            }
            HomeError::Unknown(name) => StoreError::Unknown { name, store: "this home".into(), hint: String::new() },
            e => StoreError::Home(e),
        }
    }
}

impl StoreError {
    /// Nothing changed and the command can simply be run again later.
    pub fn is_refusal(&self) -> bool {
        matches!(
            self,
            StoreError::Held { .. }
                | StoreError::Conflict { .. }
                | StoreError::LockLost { .. }
                | StoreError::Unavailable { .. }
        )
    }
}

fn held_hint(ttl_s: u64) -> String {
    if ttl_s == 0 {
        " (if that process is gone, the lock is already free)".into()
    } else {
        format!(" (if that process is gone, its lock expires by itself within {ttl_s} s)")
    }
}
