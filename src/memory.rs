//! Giving the kernel back the memory the agent freed while it started.
//!
//! Why: reading a config of 10,000 sensors takes several times the memory
//! the resolved config keeps (the YAML parse, the raw config, the checks),
//! all freed before the first poll. glibc's malloc hands back only what is
//! free at the top of its heaps; what lies between blocks still in use (the
//! sensors, allocated while the parse's memory was live) stays resident for
//! good: about 3 MiB in the `cycle` bench, half the agent's heap
//! (BENCHMARKS.md, "Issue 16: footprint"). `malloc_trim` returns the free
//! pages wherever they are. It runs once the agent has started and after
//! each reload, never in the poll loop.
//!
//! The one `unsafe` call of the crate outside `history::simd`: glibc has no
//! safe wrapper and the libc crate would add nothing but the declaration.

/// Return the free pages of malloc's heaps to the kernel (glibc only; a
/// no-op elsewhere).
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    trim();
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn trim() {
    unsafe extern "C" {
        /// glibc, malloc.h: `int malloc_trim(size_t pad)`.
        fn malloc_trim(pad: usize) -> std::ffi::c_int;
    }
    // SAFETY: malloc_trim takes no pointer and touches no memory of ours:
    // it walks glibc's own arenas, each under its own lock, so any thread
    // may call it at any time (glibc manual, "Memory Allocation Tunables";
    // MT-Safe in malloc_trim(3)). Its result (whether anything was
    // returned) needs no handling.
    unsafe {
        malloc_trim(0);
    }
}
