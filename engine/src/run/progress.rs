//! What a run shows while it runs: the progress line on the terminal (`--progress`: each
//! step's rows out so far) and, with `RUST_LOG=valtava::memory=debug`, a log every second of
//! the query engine's memory pool beside the process's resident memory.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use tracing::debug;

use super::Shared;

/// The progress line: each step's rows out, redrawn every 120 ms until the run stops it.
pub(super) fn spawn_progress(
    shared: Arc<Shared>,
) -> (indicatif::ProgressBar, tokio::task::JoinHandle<()>) {
    let bar = indicatif::ProgressBar::new_spinner();
    bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
    let b = bar.clone();
    let handle = tokio::spawn(async move {
        loop {
            let parts: Vec<String> = shared
                .line
                .dag
                .order
                .iter()
                .map(|s| {
                    let c = &shared.counters[s];
                    format!("{s} {}", c.rows_out.load(Ordering::Relaxed))
                })
                .collect();
            b.set_message(parts.join(" · "));
            b.tick();
            tokio::time::sleep(std::time::Duration::from_millis(120)).await;
        }
    });
    (bar, handle)
}

/// With `RUST_LOG=valtava::memory=debug`, logs every second what the query engine's memory
/// pool holds beside the process's resident memory, and its largest consumers (tracked when
/// `VALTAVA_MEMORY_LIMIT` is set): where a run's memory goes, for an operator choosing it.
pub(super) fn spawn_memory_log(
    state: &datafusion::execution::SessionState,
) -> Option<tokio::task::JoinHandle<()>> {
    use datafusion::execution::memory_pool::{FairSpillPool, TrackConsumersPool};
    if !tracing::enabled!(target: "valtava::memory", tracing::Level::DEBUG) {
        return None;
    }
    let pool = state.runtime_env().memory_pool.clone();
    Some(tokio::spawn(async move {
        loop {
            let top = pool
                .downcast_ref::<TrackConsumersPool<FairSpillPool>>()
                .map(|p| p.report_top(5).replace('\n', "; "))
                .unwrap_or_default();
            debug!(
                target: "valtava::memory",
                rss_mib = resident_bytes().unwrap_or(0) >> 20,
                pool_mib = pool.reserved() >> 20,
                top = %top,
                "memory"
            );
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        }
    }))
}

/// The process's resident memory (Linux), for the memory log.
fn resident_bytes() -> Option<usize> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: usize = statm.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf only reads a system constant.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    Some(
        pages
            * usize::try_from(page)
                .ok()
                .filter(|p| *p > 0)
                .unwrap_or(4096),
    )
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    #[cfg(target_os = "linux")]
    fn resident_memory_grows_with_touched_pages() {
        let before = resident_bytes().unwrap();
        // Far more than other tests running at the same time could free meanwhile.
        let block = vec![1u8; 256 << 20];
        let after = resident_bytes().unwrap();
        assert!(block.iter().all(|b| *b == 1));
        assert!(after >= before + (192 << 20), "{before} -> {after}");
    }
}
