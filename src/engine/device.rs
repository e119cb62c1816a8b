//! Run-time device choice: CUDA when cinevec was built with the `cuda` feature and a GPU answers,
//! otherwise the CPU. The choice is logged once per load, in one line that says why.
//!
//! A CUDA build made by `scripts/build-cuda.sh` does not need any CUDA library to start: the driver
//! (`libcuda.so.1`), cuBLAS, cuBLASLt, cuRAND and NVRTC are bound lazily (see
//! `scripts/cuda-lazy-link.py`). Before the first CUDA call, [`select`] opens the driver and the
//! libraries candle needs to create a device; when one is missing (a machine without a GPU, or the
//! CUDA libraries not on `LD_LIBRARY_PATH`) it stays on the CPU and logs which one.

use anyhow::Result;
use candle_core::{DType, Device};

/// Pick the device for a model.
pub fn select(force_cpu: bool) -> Result<Device> {
    if force_cpu {
        tracing::info!("device: CPU (forced)");
        return Ok(Device::Cpu);
    }
    #[cfg(feature = "cuda")]
    {
        match cuda::open_gpu() {
            Ok((dev, name)) => {
                tracing::info!("device: CUDA GPU 0 ({name})");
                return Ok(dev);
            }
            Err(reason) => tracing::info!("device: CPU (built with CUDA, but no GPU is usable: {reason})"),
        }
    }
    #[cfg(not(feature = "cuda"))]
    tracing::info!(
        "device: CPU, {} threads (this build has no CUDA support; rebuild with `--features cuda` for GPUs)",
        candle_core::utils::get_num_threads()
    );
    Ok(Device::Cpu)
}

/// Refuse a dtype the device cannot run well: half precision is for GPUs only (on the CPU candle's
/// f16/bf16 matrix products are far slower than f32, and nothing here measures their accuracy).
pub fn check_dtype(device: &Device, dtype: DType) -> Result<()> {
    match dtype {
        DType::F32 => Ok(()),
        DType::F16 | DType::BF16 if device.is_cuda() => Ok(()),
        DType::F16 | DType::BF16 => anyhow::bail!(
            "dtype {} needs a CUDA GPU, but the model runs on the CPU (see the `device:` log line): use f32",
            dtype_name(dtype)
        ),
        other => anyhow::bail!("dtype {other:?} is not supported for models (use f32, f16 or bf16)"),
    }
}

/// The dtype as users type it (`f32`, `f16`, `bf16`).
pub fn dtype_name(dtype: DType) -> String {
    format!("{dtype:?}").to_lowercase()
}

/// A short name for logs and manifests.
pub fn describe(device: &Device) -> String {
    match device {
        Device::Cpu => "cpu".to_string(),
        Device::Cuda(_) => "cuda:0".to_string(),
        Device::Metal(_) => "metal".to_string(),
    }
}

#[cfg(feature = "cuda")]
mod cuda {
    use candle_core::cuda_backend::cudarc;
    use candle_core::Device;
    use std::ffi::{CStr, CString};

    /// Where NVIDIA's container runtime and the usual distributions put the driver, tried when the
    /// dynamic loader's own search (LD_LIBRARY_PATH, ld.so.cache) does not find it.
    const DRIVER_DIRS: [&str; 4] =
        ["/usr/local/nvidia/lib64", "/usr/lib/x86_64-linux-gnu", "/usr/lib64", "/usr/lib/wsl/lib"];

    /// `dlopen` a library into the global namespace and keep it open for the life of the process: the
    /// lazy bindings then find it by its soname (glibc matches already loaded objects by soname, so a
    /// driver opened by absolute path serves `dlopen("libcuda.so.1")` too).
    fn open(name: &str) -> Result<(), String> {
        let c_name = CString::new(name).map_err(|e| e.to_string())?;
        // SAFETY: a valid C string; the handle is deliberately never closed.
        let handle = unsafe { libc::dlopen(c_name.as_ptr(), libc::RTLD_NOW | libc::RTLD_GLOBAL) };
        if !handle.is_null() {
            return Ok(());
        }
        // SAFETY: dlerror returns null or a C string valid until the next dl* call on this thread.
        let err = unsafe { libc::dlerror() };
        Err(if err.is_null() {
            format!("{name}: cannot be loaded")
        } else {
            unsafe { CStr::from_ptr(err) }.to_string_lossy().into_owned()
        })
    }

    /// Open the driver and the libraries that creating a candle CUDA device calls.
    pub fn open_libraries() -> Result<(), String> {
        const DRIVER: &str = "libcuda.so.1";
        if open(DRIVER).is_err() && !DRIVER_DIRS.iter().any(|dir| open(&format!("{dir}/{DRIVER}")).is_ok()) {
            return Err(format!("no NVIDIA driver ({DRIVER} not found)"));
        }
        let major = cudarc::driver::sys::CUDA_VERSION / 1000;
        // cuBLASLt before cuBLAS, which needs it; cuRAND keeps its major version 10 across CUDA 11-13.
        for lib in [format!("libcublasLt.so.{major}"), format!("libcublas.so.{major}"), "libcurand.so.10".into()] {
            open(&lib).map_err(|e| {
                format!("{lib} (CUDA {major}) cannot be loaded: {e}; put the folder holding it on LD_LIBRARY_PATH")
            })?;
        }
        Ok(())
    }

    /// GPU 0 as a candle device, with its name for the log; or why there is none.
    pub fn open_gpu() -> Result<(Device, String), String> {
        open_libraries()?;
        // First line only: with RUST_BACKTRACE set, candle appends a backtrace to its errors.
        let device = Device::new_cuda(0)
            .map_err(|e| e.to_string().lines().next().unwrap_or("CUDA device 0 unavailable").trim().to_string())?;
        let name = device
            .as_cuda_device()
            .ok()
            .and_then(|d| {
                let stream = d.cuda_stream();
                let ctx = stream.context();
                let (major, minor) = ctx.compute_capability().ok()?;
                Some(format!("{}, compute capability {major}.{minor}", ctx.name().ok()?))
            })
            .unwrap_or_else(|| "unnamed".into());
        Ok((device, name))
    }
}
