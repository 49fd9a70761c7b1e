//! The doctor: what an automatic-failover agent decides, as pure functions
//! of what it sees. The agent runtime (etcd, PostgreSQL, signals, HTTP)
//! gathers a [`View`] each tick, calls [`decide`], and carries out the
//! [`Decision`]; every safety rule lives here, where it is tested on plain
//! values.
//!
//! Safety rests on two fences (see the README's "Automatic failover"):
//! - **Fence A (time)**: the primary stops acknowledging before its leader
//!   lease can expire ([`fence::deadline`]).
//! - **Fence B (quorum, sync mode)**: no standby is promoted until enough of
//!   the standbys that could still acknowledge for the old primary have
//!   stopped receiving from it and reported how far they got
//!   ([`quorum::required_reports`]); the candidate must be at least that far.
//!
//! The leader keeps the synchronous count ([`sync::next`]), publishing a
//! standby as a possible acknowledger before the setting names it.

pub mod decide;
pub mod fence;
pub mod health;
pub mod quorum;
pub mod state;
pub mod sync;
pub mod timeline;

pub use decide::{decide, Blocked, Decision};
pub use state::{HaMode, Leader, Local, Member, PgRun, SyncSet, View};
