//! Ward's shared vocabulary: validated identifiers, roles, clinic states, who acted and
//! the clock.
//!
//! Everything here is parsed, not validated: a value of these types that reached the
//! rest of the code is already known to be well formed.

mod actor;
pub mod chain;
mod clock;
mod ids;
mod permissions;

pub use actor::Actor;
pub use clock::{Clock, ManualClock, SystemClock, format_time, parse_time};
pub use ids::{ClinicId, ClinicStatus, Email, ParseError, Role, Slug};
pub use permissions::Permission;
