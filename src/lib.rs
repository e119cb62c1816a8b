//! cinevec: movie similarity search and rating prediction over text embeddings.
//!
//! The crate is laid out by role: [`movie`] (the canonical document), [`catalog`] (input formats and the
//! store), [`engine`] (tokenizer + transformer + pooling, run by candle), [`models`] (getting model
//! folders), [`pipeline`] (the offline steps), [`head`] (the rating model), [`index`] (nearest
//! neighbours), [`server`] (the HTTP service) and [`cli`] (the command line).

pub mod artifacts;
pub mod bench;
pub mod catalog;
pub mod cli;
pub mod engine;
pub mod head;
pub mod index;
pub mod models;
pub mod movie;
pub mod parity;
pub mod pipeline;
pub mod progress;
mod rng;
pub mod server;
pub mod service_bench;

/// Keep freed memory in the process instead of handing it back to the kernel after every tensor.
///
/// A forward pass allocates and frees activations of a few MB each, dozens of times; with glibc's
/// defaults each of those is a fresh `mmap`, and page faults plus zeroing cost several percent of the
/// embedding time. Raising the mmap and trim thresholds lets the heap reuse them.
pub fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only adjusts allocator parameters; called before worker threads start.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
    }
}

/// Thread settings for candle on the CPU, applied unless the user set them.
///
/// candle runs matrix products on rayon's pool and element-wise ops on a second, spinning "barrier"
/// pool. On a small machine the two pools fight over the same cores: profiles of one-document requests
/// showed a third of the time in barrier spin-waits. With `CANDLE_NUM_THREADS=1` element-wise ops run
/// on the calling thread (cinevec's hot ones are its own parallel kernels anyway) and the matrix
/// products keep every core. `RAYON_NUM_THREADS` is pinned to the core count so that candle does not
/// re-read `/proc/cpuinfo` on every matrix product.
///
/// Call before any thread starts (it edits the environment).
pub fn tune_threads() {
    if std::env::var_os("RAYON_NUM_THREADS").is_none() {
        let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
        std::env::set_var("RAYON_NUM_THREADS", cores.to_string());
    }
    if std::env::var_os("CANDLE_NUM_THREADS").is_none() {
        std::env::set_var("CANDLE_NUM_THREADS", "1");
    }
}
