//! GPU memory pressure: a planner (how much to take on which device, in which chunks, when),
//! a thin layer over the CUDA driver API (cudarc, loaded at run time, so faultline builds and
//! runs on machines without CUDA), the `gpu-hog` process that holds the memory, and the
//! controller that starts and releases it.

pub mod controller;
pub mod driver;
pub mod hog;
pub mod plan;
pub mod report;
pub mod spec;

pub use controller::{GpuPressure, RunningHog, START_LIMIT};
pub use plan::Target;
pub use report::{DeviceRelease, DeviceReport, HogEvent, HogReport, ReleaseReport};
pub use spec::GpuPressureSpec;
