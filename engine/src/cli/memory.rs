//! The process's memory, tuned at start-up before any other thread runs: transparent huge
//! pages off, and (with the `mimalloc` feature, whose allocator `main.rs` sets) a shorter
//! purge delay. Both measured on large runs; see each function.

/// Turns transparent huge pages off for this process. mimalloc asks the kernel for them, and
/// the query engine allocates and frees large hash tables and buffers over and over: each
/// fresh 2 MiB page is cleared on first touch, which took a fifth of a large run's CPU time
/// (a 10 M row line ran 26.7 s instead of 29–33 s without them; `examples/benchmark`).
pub(super) fn no_huge_pages() {
    #[cfg(target_os = "linux")]
    // SAFETY: PR_SET_THP_DISABLE only sets a flag of the calling process; no memory is
    // passed. A failure (an old kernel) leaves huge pages on, which is harmless.
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
}

/// The allocator's purge delay in milliseconds; see [`prompt_purge`].
#[cfg(feature = "mimalloc")]
const PURGE_DELAY_MS: std::ffi::c_long = 5;

/// mimalloc's option number of the purge delay: `mi_option_purge_delay` follows
/// `mi_option_eager_commit_delay` in mimalloc 2's `mimalloc.h` (the Rust bindings name only
/// the options before it).
#[cfg(feature = "mimalloc")]
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t =
    libmimalloc_sys::mi_option_eager_commit_delay + 1;

/// Returns freed memory to the system 5 ms after it falls free instead of mimalloc's 10 ms.
/// The query engine frees and allocates hash tables, sorted runs and spill buffers from
/// several threads at once; with the longer delay the freed pages of one were still held
/// when the next was allocated. 50 M rows under a 512 MiB limit: 354 MiB against 410 MiB;
/// 10 M rows under 1 GiB: the same time (20.4–21.4 s against 19.3–22.1 s). Shorter delays
/// cost time (3 ms: +6 % at 10 M rows; 0 ms: +55 % at 50 M rows;
/// `examples/benchmark/PROFILE.md`). `MIMALLOC_PURGE_DELAY` still overrides it.
pub(super) fn prompt_purge() {
    #[cfg(feature = "mimalloc")]
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: sets one integer option of the allocator, before any other thread runs
        // (mimalloc's option setter is not thread-safe); the option is read on each purge.
        unsafe {
            libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, PURGE_DELAY_MS);
        }
    }
}

#[cfg(all(test, feature = "mimalloc"))]
mod tests {
    /// The allocator's purge delay is Valtava's unless the environment names one.
    #[test]
    fn the_purge_delay_is_set_unless_the_environment_sets_it() {
        super::prompt_purge();
        // SAFETY: reads one integer option of the allocator.
        let got = unsafe { libmimalloc_sys::mi_option_get(super::MI_OPTION_PURGE_DELAY) };
        let want = std::env::var("MIMALLOC_PURGE_DELAY")
            .ok()
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(super::PURGE_DELAY_MS);
        assert_eq!(got, want);
    }
}
