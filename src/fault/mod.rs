//! Fault definitions and the seeded decisions that pick which requests they touch. A fault type
//! is defined once here; `action` is the checked form each injection takes for the backend that
//! applies it (`run/faults/`).

pub mod action;
pub mod decide;
pub mod evidence;
pub mod spec;

pub use action::FaultAction;
pub use decide::{selects, Decider, Draw};
pub use evidence::Evidence;
pub use spec::*;
