//! The DataFusion sessions plans are made and run in: Valtava's functions registered,
//! deterministic settings, and for a run a memory limit under which operators spill.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use datafusion::common::DataFusionError;
use datafusion::execution::SessionStateBuilder;
use datafusion::execution::runtime_env::RuntimeEnv;
use datafusion::prelude::{SessionConfig, SessionContext};

/// The session every plan is made in: Valtava's functions registered, deterministic
/// settings, no memory limit (planning and checking read no rows).
pub fn session(key: Option<&[u8]>, target_partitions: usize) -> SessionContext {
    let runtime = Arc::new(RuntimeEnv::default());
    with_functions(context(session_config(target_partitions), runtime), key)
}

/// The session a run executes in: as [`session`], and with `memory_limit` bytes sorts and
/// aggregations spill to temporary files instead of growing; the fair pool shares the limit
/// among the operators that can spill, as the steps of a line run at once. The limit is
/// the caller's (the command line reads `VALTAVA_MEMORY_LIMIT`); a pool that cannot be
/// built is an error, never a run without its limit.
pub fn limited_session(
    key: Option<&[u8]>,
    target_partitions: usize,
    memory_limit: Option<usize>,
) -> Result<SessionContext, DataFusionError> {
    let Some(bytes) = memory_limit else {
        return Ok(session(key, target_partitions));
    };
    let runtime = datafusion::execution::runtime_env::RuntimeEnvBuilder::new()
        .with_max_spill_merge_fan_in(SPILL_MERGE_FAN_IN)
        .with_memory_pool(Arc::new(
            // An error names the largest consumers, so an operator can see what to tune.
            datafusion::execution::memory_pool::TrackConsumersPool::new(
                datafusion::execution::memory_pool::FairSpillPool::new(bytes),
                std::num::NonZeroUsize::new(5).expect("5 is not zero"),
            ),
        ))
        .build_arc()?;
    let ctx = context(session_config(target_partitions), runtime);
    Ok(with_functions(ctx, key))
}

/// DataFusion's session with Valtava's operators: a window that only numbers rows over
/// sorted input streams ([`super::row_number`]).
fn context(config: SessionConfig, runtime: Arc<RuntimeEnv>) -> SessionContext {
    let state = SessionStateBuilder::new()
        .with_config(config)
        .with_runtime_env(runtime)
        .with_default_features()
        .with_physical_optimizer_rule(Arc::new(super::row_number::StreamingRowNumber))
        .build();
    SessionContext::new_with_state(state)
}

fn session_config(target_partitions: usize) -> SessionConfig {
    let mut config = SessionConfig::new()
        .with_target_partitions(target_partitions.max(1))
        .with_information_schema(false);
    // A line's joins have small build sides (duplicates found, keys of another step, code
    // sets, groups): the build side is collected once and the rows stream past it in their
    // partitions, instead of every row being hashed into new partitions (at 10 M rows of
    // the unique rule's join, 1.4 GB moved).
    config.options_mut().optimizer.repartition_joins = false;
    config
}

fn with_functions(ctx: SessionContext, key: Option<&[u8]>) -> SessionContext {
    for f in crate::functions::udfs(key) {
        ctx.register_udf(f);
    }
    for f in crate::functions::udafs() {
        ctx.register_udaf(f);
    }
    ctx
}

/// Spilled runs a sort or grouping merges at once; more are merged in rounds. Unlimited, a
/// merge reads a batch of every run at once, and the runs grow with the input (the
/// per-value grouping of a distinct count spills ≈ 86 runs a partition at 50 M rows under
/// 512 MiB, against ≈ 18 at 10 M): the end of a 50 M run held ≈ 20 MiB more than with 16
/// (one run each, PROFILE.md, tenth round).
pub const SPILL_MERGE_FAN_IN: usize = 16;

/// The most a unique rule's filter may take: an eighth of the memory limit, from 1 to
/// 64 MiB; 16 MiB without a limit. Measured with the `ensihoito` benchmark's distinct keys
/// (PROFILE.md, eleventh round): 64 MiB flag 0.008 % of 10 M rows and 0.42 % of 50 M falsely; 32 MiB flag 2.6 % of
/// 50 M, whose exact grouping then spilled 1.1 GB and whose 1.3 M keys took 73 MB in the
/// join (64 MiB: 8 MB).
pub fn filter_bytes(memory_limit: Option<usize>) -> usize {
    match memory_limit {
        Some(limit) => (limit / 8).clamp(1 << 20, 64 << 20),
        None => 16 << 20,
    }
}

/// How large a unique rule's first-pass filter (`steps/validate/seen.rs`) is made, when
/// its first batch comes.
#[derive(Debug, Clone)]
pub struct FilterSize {
    /// The most bytes it may take (from the memory limit: [`filter_bytes`]).
    pub max: usize,
    /// The bytes of the objects each source upstream of the rule has listed (0 before its
    /// listing, `u64::MAX` for a source whose bytes do not bound its rows:
    /// `Parser::rows_within_bytes`); none when the run does not count them, or when a step
    /// that is not a source lies upstream and may multiply the rows (`run/step.rs`).
    pub input_bytes: Vec<Arc<AtomicU64>>,
}

/// Input bytes for each byte of filter: two bits of filter for each byte of input, so a
/// row of 32 bytes or more has 64 bits or more (`steps/validate/seen.rs`,
/// `false_positives_stay_few…`: a handful of 100 000 keys flagged at 84 bits a key).
const INPUT_BYTES_A_FILTER_BYTE: u64 = 4;

/// The smallest filter sized from the input.
const MIN_FILTER_BYTES: usize = 1 << 20;

impl FilterSize {
    /// Always `max` bytes.
    pub fn fixed(max: usize) -> Self {
        Self {
            max,
            input_bytes: Vec::new(),
        }
    }

    /// A quarter of the input's bytes, from 1 MiB up to `max`; `max` when no source has
    /// listed yet or one's bytes do not bound its rows. The rows reaching the filter came
    /// from sources listed by then: one listed later (the other side of a join) can only
    /// make the filter smaller than the whole input would, which costs the exact pass some
    /// false positives, never a result (`steps/validate/seen.rs`). At 100 000 rows (6 MiB)
    /// the 16 MiB of pages faulted in were 3.5 % of the run's CPU time (PROFILE.md,
    /// twenty-fifth round).
    pub fn bytes(&self) -> usize {
        let input = (self.input_bytes.iter())
            .map(|b| b.load(Ordering::Relaxed))
            .fold(0u64, u64::saturating_add);
        if input == 0 {
            return self.max;
        }
        let share = usize::try_from(input / INPUT_BYTES_A_FILTER_BYTE).unwrap_or(usize::MAX);
        share.max(MIN_FILTER_BYTES).min(self.max)
    }
}
