//! Sharding, the pure part: the sharded spec file split into groups, the
//! names of every object a shard and a move create, the SQL text, and the
//! balance (which shards move where). Nothing here does I/O.

pub mod balance;
pub mod names;
pub mod script;
pub mod spec;
pub mod sql;

pub use balance::{balance, waves, Move};
