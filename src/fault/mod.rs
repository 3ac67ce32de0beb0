//! Fault definitions and the seeded decisions that pick which requests they touch. A fault type
//! is defined once here and applied by whichever injector owns the target (the HTTP proxy today).

pub mod decide;
pub mod spec;

pub use decide::{selects, Decider, Draw};
pub use spec::*;
