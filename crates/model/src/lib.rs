//! Plain data: the cluster inventory (desired state) and what a probe saw
//! (observed state). No I/O happens in this crate.

pub mod dcs;
pub mod ha;
pub mod inventory;
pub mod name;
pub mod observed;
pub mod sharding;

pub use dcs::{Dcs, EtcdSpec};
pub use ha::{HaMode, HaSetting, HaSpec};
pub use inventory::*;
pub use name::{copy_app_name, slot_name, valid_name, NodeName};
pub use observed::*;
pub use postgres_types::PgLsn;
pub use sharding::{group_cluster, Sharding};
