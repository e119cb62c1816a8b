//! cinevec: movie similarity search and rating prediction over text embeddings.
//!
//! The crate is laid out by role and in layers (ARCHITECTURE.md): [`cli`] (flags into each command's
//! plain options); [`server`] (the HTTP transport), [`pipeline`] (the offline steps) and [`bench`]
//! (benchmarks and data generators); [`service`] (the operations, independent of HTTP, over the live
//! rows); [`engine`] (tokenizer + transformer + pooling, run by candle), [`index`] (nearest
//! neighbours), [`head`] (the rating model), [`catalog`] (input formats and the store), [`models`]
//! (getting model folders), [`artifacts`]; and the basics: [`movie`] (the canonical document),
//! [`hash`], [`rng`], [`progress`]. Each module imports only from the layers below it.

pub mod artifacts;
pub mod bench;
pub mod catalog;
pub mod cli;
pub mod engine;
pub mod hash;
pub mod head;
pub mod index;
pub mod models;
pub mod movie;
pub mod pipeline;
pub mod progress;
pub mod rng;
pub mod server;
pub mod service;

/// What the process is about to do, for [`tune_allocator`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Workload {
    /// A command that runs and ends (build, embed, train, benches).
    Batch,
    /// `cinevec serve`: a long-running process.
    Server,
}

/// glibc's allocator settings, the one place they are made (call before any thread starts; a
/// setting given in the environment, `MALLOC_MMAP_THRESHOLD_`, `MALLOC_ARENA_MAX` or
/// `MALLOC_TRIM_THRESHOLD_`, wins).
///
/// Both workloads: blocks of up to 32 MiB come from the heap rather than a fresh `mmap` each. A
/// forward pass allocates and frees activations of a few MB each, dozens of times; with glibc's
/// defaults each of those is a fresh `mmap`, and page faults plus zeroing cost several percent of the
/// embedding time (a 1 MiB threshold made `/v1/embed` 25 % slower for one document and 20-80 % for 32,
/// though it cut the server's peak RSS at 242k movies by 20 MiB: BENCHMARKS.md, issue 19). The heap
/// keeps what large temporaries freed, so the server hands it back after its start-up work
/// (`malloc_trim`, see `server::listen::trim`).
///
/// The trim threshold (free memory at the top of the heap above it goes back to the system) differs on
/// purpose, and each value was measured where it matters:
/// - [`Workload::Batch`]: 1 GiB, in effect never trimming: a command's working set is re-used batch
///   after batch until it ends, and giving it back only to fault it in again costs embedding time.
/// - [`Workload::Server`]: 1 MiB, and two arenas instead of one per core times eight (threads that
///   allocate now and then — the model's, the blocking pool's, rayon's — each kept freed memory of
///   their own). A server lives for weeks and its memory is what the host budgets: at 242k movies
///   this keeps peak RSS within a few MiB of its value at ready (~620 MiB) instead of growing ~40 MiB
///   under load, with no measurable cost to request latency (BENCHMARKS.md).
pub fn tune_allocator(workload: Workload) {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only adjusts allocator parameters; called before worker threads start.
    unsafe {
        if std::env::var_os("MALLOC_MMAP_THRESHOLD_").is_none() {
            libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        }
        if workload == Workload::Server && std::env::var_os("MALLOC_ARENA_MAX").is_none() {
            libc::mallopt(libc::M_ARENA_MAX, 2);
        }
        if std::env::var_os("MALLOC_TRIM_THRESHOLD_").is_none() {
            let trim = match workload {
                Workload::Batch => 1 << 30,
                Workload::Server => 1 << 20,
            };
            libc::mallopt(libc::M_TRIM_THRESHOLD, trim);
        }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    let _ = workload;
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
