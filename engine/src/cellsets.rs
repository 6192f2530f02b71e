//! The sets of cells that values occur in, for exact distinct counts over a cube (internal
//! to the planner, see `plan::distinct_counts`).
//!
//! - `__cell_lanes(code, …)`: a cell's number from the dense codes of its dimension values
//!   (`0, 1, …` per dimension, NULL values included): lane `i` of the 128-bit number holds
//!   the code of dimension `i`. A NULL code fills its lane with ones, the code of "every
//!   value": the same function numbers the groups of a grouping set, whose left-out
//!   dimensions are NULL. Numbers are exact (no hash) and below 2^124.
//! - `__cell_set(cell)`, an aggregate: per group (one value), the distinct cell numbers of
//!   its rows, ascending, as one binary value of 16 bytes (little-endian) per cell. NULL
//!   cells are skipped; a group without cells is NULL. Grouped, it keeps a value's only
//!   cell inline (most values, identity codes, occur in one cell) and spills like any
//!   other grouping state.
//! - `__groups_of(set, dimensions, totals)`: the groups that have a cell of such a set, as
//!   a list of group numbers: the cells themselves, and with `totals` the groups of every
//!   grouping set of the cube (each cell with some lanes filled), each group once.
//!
//! Values that occur in the same cells count alike in every grouping set, so a distinct
//! count groups the values by their set of cells and works on the few sets instead of
//! the many values.

use std::collections::BTreeSet;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, BinaryBuilder, BooleanArray, Decimal128Array, ListArray,
};
use arrow::buffer::OffsetBuffer;
use arrow::datatypes::{DataType, Decimal128Type, Field, FieldRef, UInt64Type};
use datafusion::common::{Result, ScalarValue, exec_err};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::utils::format_state_name;
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, ColumnarValue, EmitTo, GroupsAccumulator,
    ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};

/// The type of a cell key.
const CELL: DataType = DataType::Decimal128(38, 0);
/// Bytes of one cell in a set.
const WIDTH: usize = 16;

/// `__cell_set(cell)`: the distinct cells of a group (see the module documentation).
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct CellSet {
    signature: Signature,
}

impl Default for CellSet {
    fn default() -> Self {
        CellSet {
            signature: Signature::exact(vec![CELL], Volatility::Immutable),
        }
    }
}

/// `__cell_lanes(code, …)`: a cell's or a group's number (see the module documentation).
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct CellLanes {
    signature: Signature,
}

impl Default for CellLanes {
    fn default() -> Self {
        CellLanes {
            signature: Signature::variadic(vec![DataType::UInt64], Volatility::Immutable),
        }
    }
}

/// `__groups_of(set, dimensions, totals)`: the groups of a set's cells (see the module
/// documentation).
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct GroupsOf {
    signature: Signature,
}

impl Default for GroupsOf {
    fn default() -> Self {
        GroupsOf {
            signature: Signature::exact(
                vec![DataType::Binary, DataType::Int64, DataType::Boolean],
                Volatility::Immutable,
            ),
        }
    }
}

pub fn cell_set() -> AggregateUDF {
    AggregateUDF::new_from_impl(CellSet::default())
}

pub fn cell_lanes() -> ScalarUDF {
    ScalarUDF::new_from_impl(CellLanes::default())
}

pub fn groups_of() -> ScalarUDF {
    ScalarUDF::new_from_impl(GroupsOf::default())
}

/// Bits of one lane for `dims` dimensions: at most 32, and 124 bits in all.
pub fn lane_bits(dims: usize) -> u32 {
    match dims {
        0 => 0,
        d => (124 / d as u32).min(32),
    }
}

/// The group of `cell` in the grouping set `kept` (bit `i`: dimension `i` is kept): the
/// lanes of the other dimensions filled with ones.
fn group_of(cell: i128, kept: u32, dims: usize) -> i128 {
    let bits = lane_bits(dims);
    let ones = (1i128 << bits) - 1;
    (0..dims)
        .filter(|i| kept & (1 << i) == 0)
        .fold(cell, |g, i| g | ones << (bits * i as u32))
}

/// The cells of one group: most groups have one, kept inline.
#[derive(Debug, Default, Clone)]
enum Cells {
    #[default]
    Empty,
    One(i128),
    /// Two or more, ascending.
    Many(Vec<i128>),
}

impl Cells {
    /// Adds `cell`; returns the bytes this added on the heap.
    fn insert(&mut self, cell: i128) -> usize {
        match self {
            Cells::Empty => *self = Cells::One(cell),
            Cells::One(c) if *c == cell => {}
            Cells::One(c) => {
                let c = *c;
                let v = if c < cell {
                    vec![c, cell]
                } else {
                    vec![cell, c]
                };
                let added = v.capacity() * WIDTH;
                *self = Cells::Many(v);
                return added;
            }
            Cells::Many(v) => {
                if let Err(i) = v.binary_search(&cell) {
                    let before = v.capacity();
                    v.insert(i, cell);
                    return (v.capacity() - before) * WIDTH;
                }
            }
        }
        0
    }

    fn heap(&self) -> usize {
        match self {
            Cells::Many(v) => v.capacity() * WIDTH,
            _ => 0,
        }
    }

    /// Appends the set to `out` (NULL when empty).
    fn append_to(&self, out: &mut BinaryBuilder) {
        match self {
            Cells::Empty => out.append_null(),
            Cells::One(c) => out.append_value(c.to_le_bytes()),
            Cells::Many(v) => {
                let mut bytes = Vec::with_capacity(v.len() * WIDTH);
                for c in v {
                    bytes.extend_from_slice(&c.to_le_bytes());
                }
                out.append_value(bytes);
            }
        }
    }
}

/// The cells of a binary set (its length checked to be a multiple of 16).
fn cells(bytes: &[u8]) -> Result<impl Iterator<Item = i128> + '_> {
    if !bytes.len().is_multiple_of(WIDTH) {
        return exec_err!("a cell set of {} bytes is not whole cells", bytes.len());
    }
    Ok(bytes
        .chunks_exact(WIDTH)
        .map(|c| i128::from_le_bytes(c.try_into().expect("chunks of 16 bytes"))))
}

fn binary(sets: &[Cells]) -> ArrayRef {
    let mut out = BinaryBuilder::with_capacity(sets.len(), sets.len() * WIDTH);
    for s in sets {
        s.append_to(&mut out);
    }
    Arc::new(out.finish())
}

impl AggregateUDFImpl for CellSet {
    fn name(&self) -> &str {
        "__cell_set"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(DataType::Binary)
    }
    fn accumulator(&self, _: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        Ok(Box::new(OneCellSet::default()))
    }
    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        Ok(vec![Arc::new(Field::new(
            format_state_name(args.name, "cells"),
            DataType::Binary,
            true,
        ))])
    }
    fn groups_accumulator_supported(&self, _: AccumulatorArgs) -> bool {
        true
    }
    fn create_groups_accumulator(&self, _: AccumulatorArgs) -> Result<Box<dyn GroupsAccumulator>> {
        Ok(Box::new(CellSets::default()))
    }
}

/// The cell sets of many groups.
#[derive(Debug, Default)]
struct CellSets {
    sets: Vec<Cells>,
    /// Bytes of the sets of two or more cells.
    heap: usize,
}

impl CellSets {
    fn take(&mut self, emit_to: EmitTo) -> Vec<Cells> {
        let taken = emit_to.take_needed(&mut self.sets);
        self.heap -= taken.iter().map(Cells::heap).sum::<usize>();
        taken
    }
}

impl GroupsAccumulator for CellSets {
    fn update_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        opt_filter: Option<&BooleanArray>,
        total_num_groups: usize,
    ) -> Result<()> {
        let cells = values[0].as_primitive::<Decimal128Type>();
        self.sets.resize(total_num_groups, Cells::Empty);
        for (row, &g) in group_indices.iter().enumerate() {
            if cells.is_null(row) || opt_filter.is_some_and(|f| !f.value(row) || f.is_null(row)) {
                continue;
            }
            self.heap += self.sets[g].insert(cells.value(row));
        }
        Ok(())
    }

    fn evaluate(&mut self, emit_to: EmitTo) -> Result<ArrayRef> {
        Ok(binary(&self.take(emit_to)))
    }

    fn state(&mut self, emit_to: EmitTo) -> Result<Vec<ArrayRef>> {
        Ok(vec![binary(&self.take(emit_to))])
    }

    fn merge_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        total_num_groups: usize,
    ) -> Result<()> {
        let sets = values[0].as_binary::<i32>();
        self.sets.resize(total_num_groups, Cells::Empty);
        for (row, &g) in group_indices.iter().enumerate() {
            if sets.is_null(row) {
                continue;
            }
            for c in cells(sets.value(row))? {
                self.heap += self.sets[g].insert(c);
            }
        }
        Ok(())
    }

    fn convert_to_state(
        &self,
        values: &[ArrayRef],
        opt_filter: Option<&BooleanArray>,
    ) -> Result<Vec<ArrayRef>> {
        let cells = values[0].as_primitive::<Decimal128Type>();
        let mut out = BinaryBuilder::with_capacity(cells.len(), cells.len() * WIDTH);
        for row in 0..cells.len() {
            if cells.is_null(row) || opt_filter.is_some_and(|f| !f.value(row) || f.is_null(row)) {
                out.append_null();
            } else {
                out.append_value(cells.value(row).to_le_bytes());
            }
        }
        Ok(vec![Arc::new(out.finish())])
    }

    fn size(&self) -> usize {
        self.sets.capacity() * std::mem::size_of::<Cells>() + self.heap
    }
}

/// The cell set of one group (an aggregate without grouping).
#[derive(Debug, Default)]
struct OneCellSet(BTreeSet<i128>);

impl OneCellSet {
    fn value(&self) -> ScalarValue {
        if self.0.is_empty() {
            return ScalarValue::Binary(None);
        }
        let mut bytes = Vec::with_capacity(self.0.len() * WIDTH);
        for c in &self.0 {
            bytes.extend_from_slice(&c.to_le_bytes());
        }
        ScalarValue::Binary(Some(bytes))
    }
}

impl Accumulator for OneCellSet {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        let cells = values[0].as_primitive::<Decimal128Type>();
        self.0.extend(cells.iter().flatten());
        Ok(())
    }
    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        for set in states[0].as_binary::<i32>().iter().flatten() {
            self.0.extend(cells(set)?);
        }
        Ok(())
    }
    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        Ok(vec![self.value()])
    }
    fn evaluate(&mut self) -> Result<ScalarValue> {
        Ok(self.value())
    }
    fn size(&self) -> usize {
        std::mem::size_of::<Self>() + self.0.len() * (WIDTH + 16)
    }
}

impl ScalarUDFImpl for CellLanes {
    fn name(&self) -> &str {
        "__cell_lanes"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(CELL)
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        let dims = args.args.len();
        let bits = lane_bits(dims);
        let ones = (1u64 << bits) - 1;
        let mut out = vec![0i128; rows];
        for (i, code) in args.args.iter().enumerate() {
            let code = code.to_array(rows)?;
            let code = code.as_primitive::<UInt64Type>();
            for (row, cell) in out.iter_mut().enumerate() {
                let lane = if code.is_null(row) {
                    ones
                } else {
                    let c = code.value(row);
                    if c >= ones {
                        return exec_err!(
                            "a distinct count over {dims} dimensions takes at most {ones} \
                             distinct values in each; dimension {} has more",
                            i + 1
                        );
                    }
                    c
                };
                *cell |= (lane as i128) << (bits * i as u32);
            }
        }
        Ok(ColumnarValue::Array(Arc::new(
            Decimal128Array::from(out).with_precision_and_scale(38, 0)?,
        )))
    }
}

impl ScalarUDFImpl for GroupsOf {
    fn name(&self) -> &str {
        "__groups_of"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(DataType::List(Arc::new(Field::new_list_field(CELL, true))))
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let [
            set,
            ColumnarValue::Scalar(ScalarValue::Int64(Some(dims))),
            totals,
        ] = args.args.as_slice()
        else {
            return exec_err!("__groups_of takes a set, a number of dimensions and a flag");
        };
        let totals = matches!(
            totals,
            ColumnarValue::Scalar(ScalarValue::Boolean(Some(true)))
        );
        let dims = usize::try_from(*dims)
            .ok()
            .filter(|d| *d == 0 || (*d < 32 && lane_bits(*d) > 0))
            .ok_or_else(|| {
                datafusion::error::DataFusionError::Execution(format!(
                    "__groups_of of {dims} dimensions"
                ))
            })?;
        let all = (1u32 << dims) - 1;
        // Every grouping set of the cube, or only the cells.
        let kept: Vec<u32> = if totals {
            (0..=all).collect()
        } else {
            vec![all]
        };
        let sets = set.to_array(args.number_rows)?;
        let sets = sets.as_binary::<i32>();
        let mut values = Vec::with_capacity(sets.value_data().len() / WIDTH * kept.len());
        let mut lengths = Vec::with_capacity(sets.len());
        let (mut one, mut groups) = (Vec::new(), Vec::new());
        for set in sets.iter() {
            let before = values.len();
            if let Some(set) = set {
                one.clear();
                one.extend(cells(set)?);
                for &k in &kept {
                    groups.clear();
                    groups.extend(one.iter().map(|&c| group_of(c, k, dims)));
                    // Cells are distinct; their groups in a grouping set of totals may not be.
                    if k != all {
                        groups.sort_unstable();
                        groups.dedup();
                    }
                    values.extend_from_slice(&groups);
                }
            }
            lengths.push(values.len() - before);
        }
        let list = ListArray::try_new(
            Arc::new(Field::new_list_field(CELL, true)),
            OffsetBuffer::from_lengths(lengths),
            Arc::new(Decimal128Array::from(values).with_precision_and_scale(38, 0)?),
            sets.nulls().cloned(),
        )?;
        Ok(ColumnarValue::Array(Arc::new(list)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decimals(v: &[Option<i128>]) -> ArrayRef {
        Arc::new(
            Decimal128Array::from(v.to_vec())
                .with_precision_and_scale(38, 0)
                .unwrap(),
        )
    }

    fn sets(a: &ArrayRef) -> Vec<Option<Vec<i128>>> {
        a.as_binary::<i32>()
            .iter()
            .map(|s| s.map(|s| cells(s).unwrap().collect()))
            .collect()
    }

    /// Cells inserted in any order, repeated, and merged from partial states (also after
    /// emitting the first groups) give each group its distinct cells, ascending.
    #[test]
    fn groups_collect_their_distinct_cells_in_order() {
        let mut a = CellSets::default();
        let cells = decimals(&[Some(5), Some(-3), None, Some(5), Some(9), Some(-3), Some(7)]);
        a.update_batch(
            std::slice::from_ref(&cells),
            &[0, 1, 0, 0, 1, 1, 2],
            None,
            4,
        )
        .unwrap();
        assert!(a.heap > 0);
        let filter = BooleanArray::from(vec![true, true, true, true, false, true, true]);
        let mut b = CellSets::default();
        b.update_batch(&[cells], &[3, 3, 3, 0, 3, 2, 2], Some(&filter), 4)
            .unwrap();
        let state = b.state(EmitTo::All).unwrap();
        assert_eq!(b.size(), 0);
        assert_eq!(
            sets(&state[0]),
            vec![Some(vec![5]), None, Some(vec![-3, 7]), Some(vec![-3, 5])]
        );
        a.merge_batch(&state, &[0, 1, 2, 3], 4).unwrap();
        let first = a.evaluate(EmitTo::First(2)).unwrap();
        assert_eq!(sets(&first), vec![Some(vec![5]), Some(vec![-3, 9])]);
        // The remaining groups move down by two.
        a.update_batch(&[decimals(&[Some(1)])], &[0], None, 2)
            .unwrap();
        let rest = a.evaluate(EmitTo::All).unwrap();
        assert_eq!(sets(&rest), vec![Some(vec![-3, 1, 7]), Some(vec![-3, 5])]);
        assert_eq!((a.heap, a.sets.len()), (0, 0));
        let converted = a
            .convert_to_state(&[decimals(&[Some(4), None])], None)
            .unwrap();
        assert_eq!(sets(&converted[0]), vec![Some(vec![4]), None]);
    }

    /// Calls `f` on `args` (arrays or scalars) of `rows` rows.
    fn call(f: &dyn ScalarUDFImpl, args: Vec<ColumnarValue>, rows: usize) -> Result<ArrayRef> {
        let arg_fields = args
            .iter()
            .map(|a| Arc::new(Field::new("a", a.data_type(), true)))
            .collect();
        let types: Vec<DataType> = args.iter().map(|a| a.data_type()).collect();
        f.invoke_with_args(ScalarFunctionArgs {
            args,
            arg_fields,
            number_rows: rows,
            return_field: Arc::new(Field::new("r", f.return_type(&types)?, true)),
            config_options: Arc::new(Default::default()),
        })?
        .to_array(rows)
    }

    fn groups(sets: ArrayRef, dims: i64, totals: bool) -> Result<Vec<Option<Vec<i128>>>> {
        let rows = sets.len();
        let args = vec![
            ColumnarValue::Array(sets),
            ColumnarValue::Scalar(ScalarValue::Int64(Some(dims))),
            ColumnarValue::Scalar(ScalarValue::Boolean(Some(totals))),
        ];
        let list = call(&GroupsOf::default(), args, rows)?;
        Ok(list
            .as_list::<i32>()
            .iter()
            .map(|l| l.map(|l| l.as_primitive::<Decimal128Type>().values().to_vec()))
            .collect())
    }

    /// `__cell_lanes` of rows of codes, one `Vec` per dimension.
    fn lanes(codes: Vec<Vec<Option<u64>>>) -> Result<Vec<i128>> {
        let rows = codes[0].len();
        let args = codes
            .into_iter()
            .map(|c| ColumnarValue::Array(Arc::new(arrow::array::UInt64Array::from(c))))
            .collect();
        let out = call(&CellLanes::default(), args, rows)?;
        let out = out.as_primitive::<Decimal128Type>();
        assert_eq!(out.null_count(), 0);
        Ok(out.values().to_vec())
    }

    #[test]
    fn one_group_and_the_groups_of_its_cells() {
        let mut one = OneCellSet::default();
        one.update_batch(&[decimals(&[Some(2), Some(1), Some(2), None])])
            .unwrap();
        let ScalarValue::Binary(Some(set)) = one.evaluate().unwrap() else {
            panic!("no set")
        };
        let binary: ArrayRef = Arc::new(arrow::array::BinaryArray::from(vec![
            Some(set.as_slice()),
            None,
            Some(&[0u8; 3][..]),
        ]));
        // Without totals a set's groups are its cells.
        let got = groups(binary.slice(0, 2), 1, false).unwrap();
        assert_eq!(got, vec![Some(vec![1, 2]), None]);
        // A set that is not whole cells is an error that says so, not a panic.
        let err = groups(binary, 1, false).unwrap_err().to_string();
        assert!(err.contains("3 bytes is not whole cells"), "{err}");
    }

    /// Cells numbered from their codes, and the groups of a set over a cube of two
    /// dimensions: each group once, numbered as `__cell_lanes` numbers it with NULL codes
    /// for the dimensions a grouping set leaves out.
    #[test]
    fn cells_and_groups_are_numbered_by_lanes() {
        // Cells (a, b): (0, 0), (0, 1), (1, 1).
        let cells = lanes(vec![
            vec![Some(0), Some(0), Some(1)],
            vec![Some(0), Some(1), Some(1)],
        ])
        .unwrap();
        assert_eq!(cells, vec![0, 1 << 32, 1 | 1 << 32]);
        // The groups: (a, *), (*, b) and (*, *) with their NULL codes.
        let any = lanes(vec![
            vec![Some(0), Some(1), None, None, None],
            vec![None, None, Some(0), Some(1), None],
        ])
        .unwrap();
        let set = |cells: &[i128]| -> Option<Vec<u8>> {
            Some(cells.iter().flat_map(|c| c.to_le_bytes()).collect())
        };
        let sets: ArrayRef = Arc::new(arrow::array::BinaryArray::from_iter(vec![
            set(&[cells[0], cells[1]]),
            set(&[cells[1], cells[2]]),
        ]));
        let mut got = groups(sets, 2, true).unwrap();
        for g in got.iter_mut().flatten() {
            g.sort();
        }
        let mut want = vec![
            // (0, 0) and (0, 1): a = 0 once; b = 0, b = 1; the total once.
            vec![cells[0], cells[1], any[0], any[2], any[3], any[4]],
            // (0, 1) and (1, 1): a = 0, a = 1; b = 1 once; the total.
            vec![cells[1], cells[2], any[0], any[1], any[3], any[4]],
        ];
        for w in &mut want {
            w.sort();
        }
        assert_eq!(got, want.into_iter().map(Some).collect::<Vec<_>>());
        // All numbers differ: no group is taken for another.
        let all: BTreeSet<i128> = cells.iter().chain(&any).copied().collect();
        assert_eq!(all.len(), 8);
        // A code too large for its lane is an error, not a wrong number.
        let err = lanes(vec![vec![Some(u32::MAX as u64)]])
            .unwrap_err()
            .to_string();
        assert!(err.contains("at most 4294967295 distinct values"), "{err}");
        assert_eq!(
            lanes(vec![vec![Some(u32::MAX as u64 - 1)]]).unwrap().len(),
            1
        );
    }
}
