//! Plain data: the cluster inventory (desired state) and what a probe saw
//! (observed state). No I/O happens in this crate.

pub mod inventory;
pub mod observed;

pub use inventory::*;
pub use observed::*;
pub use postgres_types::PgLsn;
