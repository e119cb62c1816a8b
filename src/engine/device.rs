//! Run-time device choice: CUDA when cinevec was built with the `cuda` feature and a GPU answers,
//! otherwise the CPU. The choice is logged once per load.

use anyhow::Result;
use candle_core::Device;

/// Pick the device for a model.
pub fn select(force_cpu: bool) -> Result<Device> {
    if force_cpu {
        tracing::info!("device: CPU (forced)");
        return Ok(Device::Cpu);
    }
    #[cfg(feature = "cuda")]
    {
        match Device::new_cuda(0) {
            Ok(dev) => {
                tracing::info!("device: CUDA GPU 0");
                return Ok(dev);
            }
            Err(e) => tracing::info!("device: CPU (built with CUDA, but no GPU is usable: {e})"),
        }
    }
    #[cfg(not(feature = "cuda"))]
    tracing::info!(
        "device: CPU, {} threads (this build has no CUDA support; rebuild with `--features cuda` for GPUs)",
        candle_core::utils::get_num_threads()
    );
    Ok(Device::Cpu)
}

/// A short name for logs and manifests.
pub fn describe(device: &Device) -> String {
    match device {
        Device::Cpu => "cpu".to_string(),
        Device::Cuda(_) => "cuda:0".to_string(),
        Device::Metal(_) => "metal".to_string(),
    }
}
