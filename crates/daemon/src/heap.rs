//! The C allocator's settings for vigild: few arenas, a fixed threshold above
//! which a block gets its own mapping, and the memory freed by the start-up
//! burst handed back to the kernel once.
//!
//! vigild holds thousands of small, long-lived records (a process actor, its
//! logs and settings per program) and allocates most of them during the
//! autostart pass, from every runtime thread at once. glibc's malloc gives each
//! contending thread an arena of its own (up to eight per core), and keeps
//! what the pass freed (its temporaries, the parsed config's copies) in them.
//! It also raises its mapping threshold each time a mapped block is freed, so
//! after a few large answers (`status` of thousands of programs) such buffers
//! come from the heap and leave holes in it. With 5,000 idle programs these
//! took 16 MiB of the daemon's anonymous memory (BENCHMARKS.md, "Memory per
//! program"). Two arenas keep the two runtime workers from contending; a
//! fixed threshold sends every large buffer to its own mapping, returned when
//! freed; one trim after the pass returns the free pages. None adds a
//! wake-up: the trim runs once, when the pass ends.

/// Arenas glibc may create; one more than the runtime's workers gains nothing
/// measurable on the start-up path and costs idle memory.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const ARENAS: libc::c_int = 2;

/// Blocks at least this large get a mapping of their own (glibc's initial
/// value, kept fixed instead of growing).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const MMAP_THRESHOLD: libc::c_int = 128 * 1024;

/// Caps glibc's arenas and fixes its mapping threshold. Call before any
/// thread is started.
pub fn configure() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes malloc parameters; it is called before
    // vigild starts any thread, and a refused value leaves the default.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, ARENAS);
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
    }
}

/// Returns the allocator's free pages to the kernel (after the autostart pass).
pub fn release() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim takes the arenas' own locks and only releases memory
    // malloc holds free; no pointer the program holds is touched.
    unsafe {
        libc::malloc_trim(0);
    }
}
