//! Pure decisions: validation, the exact SQL/argv builders, the planners and
//! the status report. Nothing here does I/O: every input is a plain value,
//! so every rule is unit-tested without a database.

pub mod adopt;
pub mod apply_config;
pub mod argv;
pub mod check;
pub mod conf;
pub mod destroy;
pub mod ha;
pub mod haproxy;
pub mod hba;
pub mod hostcheck;
pub mod init;
pub mod load;
pub mod scale;
pub mod shard;
pub mod sql;
pub mod status;
pub mod steps;
pub mod sync;
pub mod validate;

pub use load::{parse_inventory, parse_nodes, unshift, Locations, Problem};
pub use steps::{Action, Plan, Step};
