//! A small team of threads that spin between jobs, for the many short parallel steps of a forward
//! pass over one short document.
//!
//! A forward pass of MiniLM over one ~90-token document is ~50 parallel steps of 0.1-1 ms each (matrix
//! products, attention, GELU). On rayon's pool each step wakes sleeping workers and puts the caller to
//! sleep until they finish; profiles at batch 1 showed ~10 % of the time in those wake-ups and
//! `sched_yield`. The team instead runs part of every step on the calling thread and keeps its helpers
//! spinning for a short while after each step, so the next step starts at once; helpers park when
//! nothing comes for [`SPIN`]. One job at a time: a caller that finds the team busy (another thread's
//! forward pass) runs its step on rayon's pool instead.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// How long an idle helper spins before it parks.
const SPIN: Duration = Duration::from_micros(300);

struct Job<'a> {
    items: usize,
    next: AtomicUsize,
    f: &'a (dyn Fn(usize) + Sync),
    panicked: AtomicBool,
}

impl Job<'_> {
    /// Take and run items until none is left.
    fn work(&self) {
        loop {
            let i = self.next.fetch_add(1, SeqCst);
            if i >= self.items {
                return;
            }
            if catch_unwind(AssertUnwindSafe(|| (self.f)(i))).is_err() {
                self.panicked.store(true, SeqCst);
            }
        }
    }
}

/// The job word: bits 32.. the job's generation, bit 31 "closed", bits 0..31 helpers working on it.
const CLOSED: u64 = 1 << 31;
const ACTIVE: u64 = CLOSED - 1;

fn generation(word: u64) -> u64 {
    word >> 32
}

struct Shared {
    /// See [`CLOSED`]. A helper joins the current job by incrementing the active count of an open
    /// job; the caller closes it when its own work is done and no helper is active, so it never
    /// waits for a helper that has not started (one the OS has not scheduled, say).
    word: AtomicU64,
    /// The current job (a `*const Job` with its lifetime erased): valid while its job is open or
    /// has active helpers.
    job: AtomicPtr<()>,
    /// Helpers parked on `wake`.
    parked: AtomicUsize,
    lock: Mutex<()>,
    wake: Condvar,
}

pub struct Team {
    shared: Arc<Shared>,
    helpers: usize,
    /// Held by the caller of the running job.
    busy: Mutex<()>,
}

impl Team {
    fn new(helpers: usize) -> Team {
        let shared = Arc::new(Shared {
            word: AtomicU64::new(CLOSED),
            job: AtomicPtr::new(std::ptr::null_mut()),
            parked: AtomicUsize::new(0),
            lock: Mutex::new(()),
            wake: Condvar::new(),
        });
        let mut started = 0;
        for i in 0..helpers {
            let shared = Arc::clone(&shared);
            let spawned = std::thread::Builder::new().name(format!("cinevec-team-{i}")).spawn(move || helper(&shared));
            if spawned.is_ok() {
                started += 1;
            }
        }
        Team { shared, helpers: started, busy: Mutex::new(()) }
    }

    /// Threads that work on a job: the caller and the helpers.
    pub fn size(&self) -> usize {
        self.helpers + 1
    }

    /// Run `f(i)` once for every `i` in `0..items`, on the calling thread and the helpers; returns
    /// when all are done. Re-raises a panic of `f` (after every item ran).
    pub fn for_each(&self, items: usize, f: &(dyn Fn(usize) + Sync)) {
        if items == 0 {
            return;
        }
        let guard = match self.busy.try_lock() {
            Ok(g) if self.helpers > 0 && items > 1 => g,
            _ => {
                use rayon::prelude::*;
                (0..items).into_par_iter().with_max_len(1).for_each(f);
                return;
            }
        };
        let job = Job { items, next: AtomicUsize::new(0), f, panicked: AtomicBool::new(false) };
        let s = &*self.shared;
        // The previous job is closed with no helper in it (see below), so nobody reads `job` now.
        let next_generation = generation(s.word.load(SeqCst)).wrapping_add(1) & (u64::MAX >> 32);
        s.job.store(&job as *const Job as *mut (), SeqCst);
        s.word.store(next_generation << 32, SeqCst);
        if s.parked.load(SeqCst) > 0 {
            let _l = s.lock.lock().unwrap_or_else(|e| e.into_inner());
            s.wake.notify_all();
        }
        job.work();
        // Close the job once no helper is inside it; helpers that come later skip it.
        let mut spins = 0u32;
        loop {
            let word = s.word.load(SeqCst);
            if word & ACTIVE == 0 && s.word.compare_exchange(word, word | CLOSED, SeqCst, SeqCst).is_ok() {
                break;
            }
            spins += 1;
            if spins < 1 << 14 {
                std::hint::spin_loop();
            } else {
                std::thread::yield_now();
            }
        }
        s.job.store(std::ptr::null_mut(), SeqCst);
        drop(guard);
        if job.panicked.load(SeqCst) {
            panic!("a parallel step of the forward pass panicked");
        }
    }
}

fn helper(s: &Shared) {
    // A closed job is never joined, so starting from "nothing seen" is safe.
    let mut seen = u64::MAX;
    let mut idle_since = Instant::now();
    let mut spins = 0u32;
    loop {
        let word = s.word.load(SeqCst);
        if generation(word) != seen {
            seen = generation(word);
            if word & CLOSED == 0 && s.word.compare_exchange(word, word + 1, SeqCst, SeqCst).is_ok() {
                let job = s.job.load(SeqCst) as *const Job;
                // SAFETY: the job is open and counts this helper as active: its caller keeps it
                // alive (and `job` pointing at it) until the count is back to zero.
                unsafe { (*job).work() };
                s.word.fetch_sub(1, SeqCst);
            } else if word & CLOSED == 0 {
                // The word changed under us (another helper joined, or a new job): look again.
                seen = u64::MAX;
            }
            idle_since = Instant::now();
            continue;
        }
        spins = spins.wrapping_add(1);
        if !spins.is_multiple_of(64) {
            std::hint::spin_loop();
            continue;
        }
        if idle_since.elapsed() < SPIN {
            // Give the core away if another thread wants it (a busy machine); returns at once on
            // an idle one.
            std::thread::yield_now();
            continue;
        }
        let mut l = s.lock.lock().unwrap_or_else(|e| e.into_inner());
        s.parked.fetch_add(1, SeqCst);
        while generation(s.word.load(SeqCst)) == seen {
            l = s.wake.wait(l).unwrap_or_else(|e| e.into_inner());
        }
        s.parked.fetch_sub(1, SeqCst);
        drop(l);
    }
}

/// The process's team: one helper per core beyond the first (`RAYON_NUM_THREADS` when set).
pub fn get() -> &'static Team {
    static TEAM: OnceLock<Team> = OnceLock::new();
    TEAM.get_or_init(|| {
        let threads = std::env::var("RAYON_NUM_THREADS")
            .ok()
            .and_then(|v| v.parse::<usize>().ok())
            .filter(|&n| n > 0)
            .unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1));
        Team::new(threads - 1)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_item_runs_exactly_once() {
        let team = Team::new(3);
        for items in [1usize, 2, 3, 7, 64, 1000] {
            let counts: Vec<AtomicUsize> = (0..items).map(|_| AtomicUsize::new(0)).collect();
            team.for_each(items, &|i| {
                counts[i].fetch_add(1, SeqCst);
            });
            assert!(counts.iter().all(|c| c.load(SeqCst) == 1), "{items} items");
        }
    }

    #[test]
    fn a_job_right_after_the_team_is_made_completes() {
        // Helpers that start after the first job was posted must still take part in it (a helper
        // that missed it would leave the caller waiting for its acknowledgement forever).
        for _ in 0..50 {
            let team = Team::new(2);
            let n = AtomicUsize::new(0);
            team.for_each(3, &|_| {
                n.fetch_add(1, SeqCst);
            });
            assert_eq!(n.load(SeqCst), 3);
        }
    }

    #[test]
    fn helpers_take_part_and_survive_parking() {
        let team = Team::new(1);
        let threads = Mutex::new(std::collections::HashSet::new());
        for round in 0..50 {
            if round % 10 == 0 {
                // Long enough for the helper to park.
                std::thread::sleep(Duration::from_millis(2));
            }
            team.for_each(8, &|_| {
                threads.lock().unwrap().insert(std::thread::current().id());
                std::thread::sleep(Duration::from_micros(200));
            });
        }
        assert_eq!(threads.lock().unwrap().len(), 2, "the caller and the helper both worked");
    }

    #[test]
    fn concurrent_callers_fall_back_without_losing_items() {
        let team = Arc::new(Team::new(1));
        let total = Arc::new(AtomicUsize::new(0));
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let (team, total) = (Arc::clone(&team), Arc::clone(&total));
                std::thread::spawn(move || {
                    for _ in 0..200 {
                        team.for_each(5, &|_| {
                            total.fetch_add(1, SeqCst);
                        });
                    }
                })
            })
            .collect();
        handles.into_iter().for_each(|h| h.join().unwrap());
        assert_eq!(total.load(SeqCst), 4 * 200 * 5);
    }

    #[test]
    fn a_panicking_item_is_reported_and_the_team_still_works() {
        let team = Team::new(1);
        let result = catch_unwind(AssertUnwindSafe(|| {
            team.for_each(4, &|i| {
                if i == 2 {
                    panic!("boom");
                }
            })
        }));
        assert!(result.is_err());
        let n = AtomicUsize::new(0);
        team.for_each(10, &|_| {
            n.fetch_add(1, SeqCst);
        });
        assert_eq!(n.load(SeqCst), 10);
    }
}
