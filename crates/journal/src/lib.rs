//! What pgscale keeps in its home (`--home`, `$PGSCALE_HOME`, `~/.pgscale`):
//! per cluster a directory with the inventory (written atomically), the
//! secret file (.pgpass format, mode 0600), the intent log and the lock.
//! Nothing here knows about PostgreSQL beyond the .pgpass line format.

mod home;
mod lock;
mod log;
mod secrets;

pub use home::{Home, HomeError};
pub use lock::{Holder, LockGuard};
pub use log::{Event, Journal};
pub use secrets::{pgpass_line, Secrets};
