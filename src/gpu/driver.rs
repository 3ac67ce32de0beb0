//! The handful of CUDA driver calls the hog makes, through cudarc's dynamically loaded bindings.
//!
//! cudarc loads `libcuda.so` on first use and *panics* when it cannot, or when a symbol is
//! missing. [`Driver::load`] therefore checks both first and turns them into errors, so nothing
//! below can reach cudarc's panics. Every `CUresult` is checked and named in the error.
//!
//! Memory comes from `cuMemAlloc` (plain device memory: not managed, not a pool, so it is really
//! resident on the device) and is written with `cuMemsetD8` followed by `cuCtxSynchronize`:
//! the memset is asynchronous, and only the synchronize proves the pages were touched.

use std::ffi::CStr;

use cudarc::driver::sys::{self, CUcontext, CUdevice, CUdeviceptr, CUresult};

/// The message for a machine without the driver library, shared with the tests.
pub const NO_DRIVER: &str = "no CUDA driver library (libcuda.so) found: this machine has no \
NVIDIA driver, or it is not on the loader path";

/// Every symbol this module makes cudarc load, exactly as cudarc names them (several are the
/// `_v2` entry points). A test double of libcuda must export these.
pub const SYMBOLS: &[&str] = &[
    "cuInit",
    "cuDeviceGetCount",
    "cuDeviceGet",
    "cuDevicePrimaryCtxRetain",
    "cuDevicePrimaryCtxRelease_v2",
    "cuCtxSetCurrent",
    "cuCtxSynchronize",
    "cuMemGetInfo_v2",
    "cuMemAlloc_v2",
    "cuMemsetD8_v2",
    "cuMemFree_v2",
    "cuGetErrorName",
    "cuGetErrorString",
];

/// A failed driver call: which call, and what the driver said.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DriverError {
    #[error("{NO_DRIVER}")]
    NoLibrary,
    #[error("the CUDA driver library lacks `{0}`: it is not the NVIDIA driver library, or one too old for faultline")]
    MissingSymbol(&'static str),
    #[error("{call} failed: {name} ({text})")]
    Call {
        call: String,
        result: CUresult,
        name: String,
        text: String,
    },
}

/// Proof that libcuda is loaded and has every symbol we call; the only way to make calls.
#[derive(Debug)]
pub struct Driver(());

/// A device's primary context, retained; [`Driver::release_context`] gives it back.
#[derive(Debug, Clone, Copy)]
pub struct Context {
    pub device: u32,
    handle: CUdevice,
    ctx: CUcontext,
}

impl Driver {
    /// Finds libcuda and checks its symbols, then `cuInit(0)`.
    pub fn load() -> Result<Driver, DriverError> {
        // SAFETY: dlopen runs the library's initialisers; that is what loading the CUDA driver
        // means, and the same happens on cudarc's first call. No memory of ours is involved.
        if !unsafe { sys::is_culib_present() } {
            return Err(DriverError::NoLibrary);
        }
        for &name in SYMBOLS {
            // SAFETY: `is_culib_present` just succeeded, so `culib()` loads instead of
            // panicking. The symbol is only looked up (as an opaque function pointer), never
            // called, so its real signature does not matter here.
            let found = unsafe { sys::culib().get::<unsafe extern "C" fn()>(name.as_bytes()) };
            if found.is_err() {
                return Err(DriverError::MissingSymbol(name));
            }
        }
        let driver = Driver(());
        // SAFETY: cuInit takes a flags integer (must be 0) and touches no memory of ours.
        driver.check("cuInit", unsafe { sys::cuInit(0) })?;
        Ok(driver)
    }

    /// How many CUDA devices the driver sees.
    pub fn device_count(&self) -> Result<u32, DriverError> {
        let mut count: std::ffi::c_int = 0;
        // SAFETY: `count` is a live, writable c_int for the duration of the call.
        self.check("cuDeviceGetCount", unsafe {
            sys::cuDeviceGetCount(&mut count)
        })?;
        Ok(u32::try_from(count).unwrap_or(0))
    }

    /// Retains device `ordinal`'s primary context (the one every CUDA runtime user of the
    /// device shares, so the hog adds no second context's overhead) and makes it current.
    pub fn retain_context(&self, ordinal: u32) -> Result<Context, DriverError> {
        let call = |name: &str| format!("{name}(device {ordinal})");
        let index = std::ffi::c_int::try_from(ordinal).map_err(|_| DriverError::Call {
            call: call("cuDeviceGet"),
            result: CUresult::CUDA_ERROR_INVALID_DEVICE,
            name: "CUDA_ERROR_INVALID_DEVICE".into(),
            text: "device number out of range".into(),
        })?;
        let mut handle: CUdevice = 0;
        // SAFETY: `handle` is a live, writable CUdevice for the duration of the call.
        self.check(&call("cuDeviceGet"), unsafe {
            sys::cuDeviceGet(&mut handle, index)
        })?;
        let mut ctx: CUcontext = std::ptr::null_mut();
        // SAFETY: `ctx` is a live, writable pointer slot; `handle` came from cuDeviceGet.
        self.check(&call("cuDevicePrimaryCtxRetain"), unsafe {
            sys::cuDevicePrimaryCtxRetain(&mut ctx, handle)
        })?;
        let context = Context {
            device: ordinal,
            handle,
            ctx,
        };
        if let Err(e) = self.make_current(&context) {
            self.release_context(context);
            return Err(e);
        }
        Ok(context)
    }

    /// Makes `context` current on this thread: allocations go to its device.
    pub fn make_current(&self, context: &Context) -> Result<(), DriverError> {
        // SAFETY: `ctx` is a retained primary context, valid until `release_context`.
        self.check(
            &format!("cuCtxSetCurrent(device {})", context.device),
            unsafe { sys::cuCtxSetCurrent(context.ctx) },
        )
    }

    /// Gives the primary context back. Errors are only reported: the process is leaving, and
    /// the driver tears the context down with it anyway.
    pub fn release_context(&self, context: Context) -> Option<DriverError> {
        // SAFETY: `handle` is the device whose primary context this value retained, once.
        let result = unsafe { sys::cuDevicePrimaryCtxRelease_v2(context.handle) };
        self.check(
            &format!("cuDevicePrimaryCtxRelease(device {})", context.device),
            result,
        )
        .err()
    }

    /// (free, total) bytes of the current context's device.
    pub fn mem_info(&self, context: &Context) -> Result<(u64, u64), DriverError> {
        self.make_current(context)?;
        let (mut free, mut total) = (0usize, 0usize);
        // SAFETY: both are live, writable usize slots for the duration of the call.
        self.check(
            &format!("cuMemGetInfo(device {})", context.device),
            unsafe { sys::cuMemGetInfo_v2(&mut free, &mut total) },
        )?;
        Ok((free as u64, total as u64))
    }

    /// Allocates `bytes` of device memory in the current context and writes every byte of it.
    /// On a failed write the allocation is freed before the error is returned.
    pub fn alloc_and_touch(
        &self,
        context: &Context,
        bytes: u64,
    ) -> Result<CUdeviceptr, DriverError> {
        let dev = context.device;
        let size = usize::try_from(bytes).map_err(|_| DriverError::Call {
            call: format!("cuMemAlloc(device {dev}, {bytes} bytes)"),
            result: CUresult::CUDA_ERROR_INVALID_VALUE,
            name: "CUDA_ERROR_INVALID_VALUE".into(),
            text: "size does not fit in this platform's size_t".into(),
        })?;
        self.make_current(context)?;
        let mut ptr: CUdeviceptr = 0;
        // SAFETY: `ptr` is a live, writable slot; the driver allocates device memory only.
        let rc = unsafe { sys::cuMemAlloc_v2(&mut ptr, size) };
        self.check(&format!("cuMemAlloc(device {dev}, {bytes} bytes)"), rc)?;
        // A non-zero pattern, so written memory can be told from fresh memory (the test double
        // checks every byte of it when it is freed).
        // SAFETY: `ptr` .. `ptr + size` is exactly the device allocation just made.
        let rc = unsafe { sys::cuMemsetD8_v2(ptr, 0xA5, size) };
        let mut written = self.check(&format!("cuMemsetD8(device {dev}, {bytes} bytes)"), rc);
        if written.is_ok() {
            // SAFETY: no arguments; waits for the memset queued above on the current context.
            let rc = unsafe { sys::cuCtxSynchronize() };
            written = self.check(&format!("cuCtxSynchronize(device {dev})"), rc);
        }
        if let Err(e) = written {
            let _ = self.free(context, ptr);
            return Err(e);
        }
        Ok(ptr)
    }

    /// Frees one allocation made by [`Driver::alloc_and_touch`] on `context`.
    pub fn free(&self, context: &Context, ptr: CUdeviceptr) -> Result<(), DriverError> {
        self.make_current(context)?;
        // SAFETY: `ptr` was returned by cuMemAlloc on this context and is freed once (the
        // caller drops its record of it).
        self.check(&format!("cuMemFree(device {})", context.device), unsafe {
            sys::cuMemFree_v2(ptr)
        })
    }

    fn check(&self, call: &str, result: CUresult) -> Result<(), DriverError> {
        if result == CUresult::CUDA_SUCCESS {
            return Ok(());
        }
        Err(DriverError::Call {
            call: call.to_string(),
            result,
            name: describe(result, sys::cuGetErrorName).unwrap_or_else(|| format!("{result:?}")),
            text: describe(result, sys::cuGetErrorString)
                .unwrap_or_else(|| "no description from the driver".into()),
        })
    }
}

/// The driver's own name or description of an error code, when it has one.
fn describe(
    result: CUresult,
    lookup: unsafe fn(CUresult, *mut *const std::ffi::c_char) -> CUresult,
) -> Option<String> {
    let mut text: *const std::ffi::c_char = std::ptr::null();
    // SAFETY: `text` is a live, writable pointer slot. Only called through `Driver`, whose
    // existence proves the library and both lookup symbols are present.
    let found = unsafe { lookup(result, &mut text) };
    if found != CUresult::CUDA_SUCCESS || text.is_null() {
        return None;
    }
    // SAFETY: on success the driver points `text` at a static NUL-terminated string.
    let s = unsafe { CStr::from_ptr(text) };
    Some(s.to_string_lossy().into_owned())
}
