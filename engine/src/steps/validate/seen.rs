//! The first pass of the unique rule: which rows' keys were seen before in the same scan.
//!
//! `__seen_before(k1, k2, …)` is a Bloom filter shared by every partition of the scan it
//! filters. A row's keys are hashed to one 64-bit word of the filter and four bits in it,
//! set with one atomic `fetch_or`; the row was seen before when all four bits were already
//! set. Because one atomic operation both tests and sets, of two rows with the same key the
//! later one in that operation's order is always flagged, whichever partition each is in:
//! the filter never misses a repeated key. It also flags some rows whose bits other keys
//! set (false positives, more as it fills); the rule's second pass groups the flagged keys'
//! rows by the keys themselves, which drops them. So the rows that are grouped are the
//! repeated keys and a few others, not every row (grouping every row's key spilled 0.4 GB
//! at 10 M rows and 3.1 GB at 50 M; the 50 M run under 512 MiB took 84 s instead of 123).
//!
//! The filter is needed only during its pass: `__seen_done(x)` (made by [`SeenBefore::done`])
//! passes its argument through and gives the filter back to the pool the first time it is
//! evaluated. The planner puts it on the rule's second scan, which a join starts only after
//! its build side — the first pass — is complete; a filter used after that is an error, not
//! a silently empty filter. (Held until its step ended, the 64 MiB filter lay under the
//! whole of a 50 M row run's longest phase: PROFILE.md, twelfth round.)
//!
//! The functions have state and are volatile: the optimiser neither pushes them into a scan
//! nor evaluates them twice. The filter must live in one process: a cluster's executors would
//! each build their own and miss repeats that meet in none of them (the planner uses the
//! exact grouping there).

use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use arrow::array::{Array, BooleanArray};
use arrow::datatypes::DataType;
use datafusion::common::{Result, exec_datafusion_err, exec_err};
use datafusion::execution::memory_pool::{MemoryConsumer, MemoryPool, MemoryReservation};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};

use crate::plan::FilterSize;

/// See the module's documentation.
#[derive(Debug)]
pub struct SeenBefore {
    signature: Signature,
    state: Arc<State>,
}

struct State {
    size: FilterSize,
    pool: Arc<dyn MemoryPool>,
    filter: Mutex<Slot>,
}

/// Where the filter is in its life.
enum Slot {
    /// Not yet used: made at the first batch, so that a plan only displayed costs nothing.
    Unmade,
    Made(Arc<Filter>),
    /// It could not be reserved.
    Failed(String),
    /// Its pass is over and its memory given back.
    Released,
}

impl std::fmt::Debug for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("State")
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

struct Filter {
    words: Box<[AtomicU64]>,
    _reservation: MemoryReservation,
}

impl SeenBefore {
    /// A filter of about `bytes`, reserved from `pool` when it is first used.
    #[cfg(test)]
    pub fn new(bytes: usize, pool: Arc<dyn MemoryPool>) -> Self {
        Self::sized(FilterSize::fixed(bytes), pool)
    }

    /// A filter of the size `size` gives when it is first used, reserved from `pool` then.
    pub fn sized(size: FilterSize, pool: Arc<dyn MemoryPool>) -> Self {
        SeenBefore {
            signature: Signature::variadic_any(Volatility::Volatile),
            state: Arc::new(State {
                size,
                pool,
                filter: Mutex::new(Slot::Unmade),
            }),
        }
    }

    /// `__seen_done(x)`: `x`, and the end of this filter's pass (see the module).
    pub fn done(&self) -> SeenDone {
        SeenDone {
            signature: Signature::any(1, Volatility::Volatile),
            state: self.state.clone(),
        }
    }

    fn filter(&self) -> Result<Arc<Filter>> {
        let mut slot = self
            .state
            .filter
            .lock()
            .map_err(|_| exec_datafusion_err!("the unique rule's filter lock is poisoned"))?;
        match &*slot {
            Slot::Made(f) => return Ok(f.clone()),
            Slot::Failed(e) => return exec_err!("{e}"),
            Slot::Released => {
                return exec_err!(
                    "the unique rule's filter was used after its pass had ended (a plan that reads the rows before the candidate keys)"
                );
            }
            Slot::Unmade => {}
        }
        let words = (self.state.size.bytes() / 8).max(1);
        let bytes = words * 8;
        let reservation = MemoryConsumer::new("unique rule's filter").register(&self.state.pool);
        if let Err(e) = reservation.try_grow(bytes) {
            let e = format!("the unique rule's filter of {bytes} bytes: {e}");
            *slot = Slot::Failed(e.clone());
            return exec_err!("{e}");
        }
        let filter = Arc::new(Filter {
            words: zeroed(words),
            _reservation: reservation,
        });
        *slot = Slot::Made(filter.clone());
        Ok(filter)
    }
}

/// `words` zero words, asked of the allocator as zeroed memory instead of written word by
/// word: fresh pages from the system are zero already, so the filter's bytes (up to
/// 64 MiB) are not first written in one pass before the first row (its pages are still
/// faulted in as rows set bits in them: PROFILE.md, twenty-fifth round).
fn zeroed(words: usize) -> Box<[AtomicU64]> {
    // SAFETY: all-zero bytes are a valid `AtomicU64` (it has the representation of `u64`).
    unsafe { Box::<[AtomicU64]>::new_zeroed_slice(words).assume_init() }
}

/// `__seen_done(x)`: see [`SeenBefore::done`].
#[derive(Debug)]
pub struct SeenDone {
    signature: Signature,
    state: Arc<State>,
}

impl ScalarUDFImpl for SeenDone {
    fn name(&self) -> &str {
        "__seen_done"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        match arg_types {
            [t] => Ok(t.clone()),
            _ => exec_err!("__seen_done takes one argument"),
        }
    }
    /// Its argument, unchanged; the filter's memory goes back to the pool (once the last
    /// batch of its pass still using it is done).
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        if let Ok(mut slot) = self.state.filter.lock()
            && !matches!(*slot, Slot::Failed(_))
        {
            *slot = Slot::Released;
        }
        match <[ColumnarValue; 1]>::try_from(args.args) {
            Ok([x]) => Ok(x),
            Err(_) => exec_err!("__seen_done takes one argument"),
        }
    }
}

/// Each filter is its own: two functions are equal only when they share one filter.
macro_rules! equal_by_filter {
    ($($t:ty),*) => {$(
        impl PartialEq for $t {
            fn eq(&self, other: &Self) -> bool {
                Arc::ptr_eq(&self.state, &other.state)
            }
        }

        impl Eq for $t {}

        impl Hash for $t {
            fn hash<H: Hasher>(&self, state: &mut H) {
                (Arc::as_ptr(&self.state) as usize).hash(state);
            }
        }
    )*};
}

equal_by_filter!(SeenBefore, SeenDone);

impl Filter {
    /// The word and the four bits of `hash`: the word by the high half (multiply-shift into
    /// 0..len), the bits by the low.
    fn slot(&self, hash: u128) -> (usize, u64) {
        let low = hash as u64;
        let high = (hash >> 64) as u64;
        let word = ((high as u128 * self.words.len() as u128) >> 64) as usize;
        let mask = (0..4).fold(0u64, |m, i| m | 1 << ((low >> (6 * i)) & 63));
        (word, mask)
    }

    /// Tests and sets the bits; true when they were all set already.
    fn seen(&self, (word, mask): (usize, u64)) -> bool {
        self.words[word].fetch_or(mask, Ordering::Relaxed) & mask == mask
    }

    /// Reads the words into the processor's cache: plain loads overlap (the atomic tests
    /// after them each wait for the memory before them).
    fn fetch(&self, words: impl Iterator<Item = usize>) {
        let any = words.fold(0u64, |a, w| a | self.words[w].load(Ordering::Relaxed));
        std::hint::black_box(any);
    }
}

impl ScalarUDFImpl for SeenBefore {
    fn name(&self) -> &str {
        "__seen_before"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(DataType::Boolean)
    }
    /// True when the row's keys were probably seen before; false when they certainly were
    /// not, and for a row with a NULL key (which is not recorded).
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        if args.args.is_empty() {
            return exec_err!("__seen_before takes the key's columns");
        }
        let keys = args
            .args
            .iter()
            .map(|a| crate::functions::value_keys(&a.to_array(rows)?))
            .collect::<Result<Vec<_>>>()?;
        let filter = self.filter()?;
        let slots: Vec<Option<(usize, u64)>> = (0..rows)
            .map(|r| {
                let mut bytes = [0u8; 16];
                let mut hash = 0u128;
                for k in &keys {
                    if k.is_null(r) {
                        return None;
                    }
                    bytes.copy_from_slice(&k.value(r).to_le_bytes());
                    // Chained: the columns' order matters, as in the rule's key.
                    hash = xxhash_rust::xxh3::xxh3_128_with_seed(
                        &bytes,
                        hash as u64 ^ (hash >> 64) as u64,
                    );
                }
                Some(filter.slot(hash))
            })
            .collect();
        // The batch's words are fetched before any is tested.
        filter.fetch(slots.iter().flatten().map(|(word, _)| *word));
        let seen: BooleanArray = slots
            .iter()
            .map(|s| Some(s.is_some_and(|s| filter.seen(s))))
            .collect();
        Ok(ColumnarValue::Array(Arc::new(seen)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{ArrayRef, Int64Array, StringArray};
    use datafusion::execution::memory_pool::GreedyMemoryPool;

    /// `f` over whole columns.
    fn invoke(f: &dyn ScalarUDFImpl, columns: Vec<ArrayRef>) -> Result<ArrayRef> {
        use arrow::datatypes::Field;
        let rows = columns[0].len();
        let types: Vec<DataType> = columns.iter().map(|c| c.data_type().clone()).collect();
        let out = f.invoke_with_args(ScalarFunctionArgs {
            args: columns.into_iter().map(ColumnarValue::Array).collect(),
            arg_fields: types
                .iter()
                .map(|t| Arc::new(Field::new("k", t.clone(), true)))
                .collect(),
            number_rows: rows,
            return_field: Arc::new(Field::new("out", f.return_type(&types)?, true)),
            config_options: Arc::new(Default::default()),
        })?;
        out.to_array(rows)
    }

    fn call(f: &SeenBefore, columns: Vec<ArrayRef>) -> Result<Vec<bool>> {
        let a = invoke(f, columns)?;
        let a = a.as_any().downcast_ref::<BooleanArray>().expect("booleans");
        Ok(a.iter().map(|v| v.expect("no NULL")).collect())
    }

    fn pool(bytes: usize) -> Arc<dyn MemoryPool> {
        Arc::new(GreedyMemoryPool::new(bytes))
    }

    #[test]
    fn a_repeated_key_is_seen_and_a_null_key_never() {
        let f = SeenBefore::new(1 << 20, pool(2 << 20));
        let ids: ArrayRef = Arc::new(StringArray::from(vec![
            Some("a"),
            Some("b"),
            None,
            Some("a"),
            None,
            Some("c"),
            Some("b"),
            Some("a"),
        ]));
        assert_eq!(
            call(&f, vec![ids]).unwrap(),
            [false, false, false, true, false, false, true, true]
        );
    }

    #[test]
    fn composite_keys_are_seen_whole_and_in_order() {
        let f = SeenBefore::new(1 << 20, pool(2 << 20));
        let a: ArrayRef = Arc::new(StringArray::from(vec!["x", "x", "y", "x"]));
        let b: ArrayRef = Arc::new(Int64Array::from(vec![1, 2, 1, 1]));
        assert_eq!(call(&f, vec![a, b]).unwrap(), [false, false, false, true]);
        // ("1", "x") is not ("x", "1").
        let g = SeenBefore::new(1 << 20, pool(2 << 20));
        let a: ArrayRef = Arc::new(StringArray::from(vec!["x", "1"]));
        let b: ArrayRef = Arc::new(StringArray::from(vec!["1", "x"]));
        assert_eq!(call(&g, vec![a, b]).unwrap(), [false, false]);
    }

    /// Threads inserting the same keys at once: every key is seen by all but one of its
    /// occurrences, in any interleaving (one atomic test-and-set per row).
    #[test]
    fn partitions_at_once_never_miss_a_repeat() {
        let f = Arc::new(SeenBefore::new(1 << 20, pool(2 << 20)));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let f = f.clone();
                std::thread::spawn(move || {
                    (0..20)
                        .map(|chunk| {
                            let ids: ArrayRef = Arc::new(Int64Array::from_iter_values(
                                chunk * 1000..(chunk + 1) * 1000,
                            ));
                            call(&f, vec![ids]).unwrap().iter().filter(|s| **s).count()
                        })
                        .sum::<usize>()
                })
            })
            .collect();
        let seen: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
        // 20 000 keys, each four times: three repeats each, and a filter of 131 072 words
        // with room for them (a false positive would only add to the count, never take away).
        assert!(seen >= 60_000, "{seen}");
        assert!(seen < 60_100, "{seen}");
    }

    #[test]
    fn the_filter_is_reserved_in_the_pool_and_a_full_pool_is_an_error() {
        let p = pool(3 << 20);
        let f = SeenBefore::new(2 << 20, p.clone());
        assert_eq!(p.reserved(), 0, "nothing before the first batch");
        let ids: ArrayRef = Arc::new(Int64Array::from(vec![1, 2, 1]));
        call(&f, vec![ids.clone()]).unwrap();
        assert_eq!(p.reserved(), 2 << 20);
        let g = SeenBefore::new(2 << 20, p.clone());
        let e = call(&g, vec![ids]).unwrap_err().to_string();
        assert!(e.contains("unique rule's filter"), "{e}");
        drop(f);
        assert_eq!(p.reserved(), 0);
    }

    /// `__seen_done` passes its argument through and gives the filter's memory back; the
    /// filter used after that is an error, never an empty filter that sees nothing.
    #[test]
    fn done_gives_the_filter_back_and_a_later_use_is_an_error() {
        let p = pool(3 << 20);
        let f = SeenBefore::new(2 << 20, p.clone());
        let ids: ArrayRef = Arc::new(Int64Array::from(vec![1, 2, 1]));
        assert_eq!(call(&f, vec![ids.clone()]).unwrap(), [false, false, true]);
        assert_eq!(p.reserved(), 2 << 20);
        let done = f.done();
        let out = invoke(&done, vec![ids.clone()]).unwrap();
        assert_eq!(&out, &ids);
        assert_eq!(done.return_type(&[DataType::Utf8]).unwrap(), DataType::Utf8);
        // Given back while the plan (here `f`) still exists.
        assert_eq!(p.reserved(), 0);
        let e = call(&f, vec![ids]).unwrap_err().to_string();
        assert!(e.contains("after its pass had ended"), "{e}");
        assert_eq!(p.reserved(), 0);
    }

    #[test]
    fn false_positives_stay_few_while_the_filter_has_room() {
        // 100 000 distinct keys in 1 MiB (84 bits a key): none or a handful flagged.
        let f = SeenBefore::new(1 << 20, pool(2 << 20));
        let ids: ArrayRef = Arc::new(Int64Array::from_iter_values(0..100_000));
        let flagged = call(&f, vec![ids]).unwrap().iter().filter(|s| **s).count();
        assert!(flagged < 10, "{flagged}");
    }

    /// Sized from the input when it is known: a quarter of its bytes, from 1 MiB up to the
    /// bound; the bound before any source is listed. The pool holds what was made.
    #[test]
    fn sized_from_the_input_within_the_bound() {
        let input = Arc::new(AtomicU64::new(0));
        let other = Arc::new(AtomicU64::new(0));
        let size = |max| FilterSize {
            max,
            input_bytes: vec![input.clone(), other.clone()],
        };
        assert_eq!(size(16 << 20).bytes(), 16 << 20, "nothing listed yet");
        input.store(6 << 20, Ordering::Relaxed);
        assert_eq!(size(16 << 20).bytes(), 3 << 19);
        assert_eq!(size(1 << 20).bytes(), 1 << 20);
        input.store(1000, Ordering::Relaxed);
        assert_eq!(size(16 << 20).bytes(), 1 << 20);
        input.store(u64::MAX, Ordering::Relaxed);
        assert_eq!(size(16 << 20).bytes(), 16 << 20);
        assert_eq!(FilterSize::fixed(2 << 20).bytes(), 2 << 20);
        // A source whose bytes do not bound its rows (Parquet): the bound.
        input.store(6 << 20, Ordering::Relaxed);
        other.store(u64::MAX, Ordering::Relaxed);
        assert_eq!(size(16 << 20).bytes(), 16 << 20);
        // Made at the first batch, from what was listed by then: 4 + 4 MiB of input.
        input.store(0, Ordering::Relaxed);
        other.store(0, Ordering::Relaxed);
        let p = pool(32 << 20);
        let f = SeenBefore::sized(size(16 << 20), p.clone());
        input.store(4 << 20, Ordering::Relaxed);
        other.store(4 << 20, Ordering::Relaxed);
        let ids: ArrayRef = Arc::new(Int64Array::from(vec![1, 2, 1]));
        assert_eq!(call(&f, vec![ids]).unwrap(), [false, false, true]);
        assert_eq!(p.reserved(), 2 << 20);
    }

    #[test]
    fn sized_from_the_memory_limit() {
        assert_eq!(crate::plan::filter_bytes(Some(256 << 20)), 32 << 20);
        assert_eq!(crate::plan::filter_bytes(Some(512 << 20)), 64 << 20);
        assert_eq!(crate::plan::filter_bytes(Some(4 << 30)), 64 << 20);
        assert_eq!(crate::plan::filter_bytes(Some(1 << 20)), 1 << 20);
        assert_eq!(crate::plan::filter_bytes(None), 16 << 20);
    }
}
