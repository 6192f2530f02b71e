//! The sets of cells that values occur in, for exact distinct counts over a cube (internal
//! to the planner, see `plan::distinct_counts`).
//!
//! - `__cell_lanes(code, …, name, …)`: a cell's number from the dense codes of its
//!   dimension values (`0, 1, …` per dimension, NULL values included; the dimensions' names
//!   follow the codes, for errors): lane `i` of the 128-bit number holds the code of
//!   dimension `i`. A NULL code fills its lane with ones, the code of "every
//!   value": the same function numbers the groups of a grouping set, whose left-out
//!   dimensions are NULL. Numbers are exact (no hash) and below 2^124.
//! - `__cell_set(cell)`, an aggregate: per group (one value), the distinct cell numbers of
//!   its rows, ascending, as one binary value of 16 bytes (little-endian) per cell. NULL
//!   cells are skipped; a group without cells is NULL. Grouped, it keeps a value's only
//!   cell inline (most values, identity codes, occur in one cell) and spills like any
//!   other grouping state.
//! - `__group_counts(set, dimensions, totals)`, an aggregate over all sets: per group, the
//!   number of sets with a cell in it, each set counted once in each of its groups: the
//!   cells themselves, and with `totals` the groups of every grouping set of the cube (a
//!   cell with some lanes filled). It holds a count per group (and per cell), not the sets.
//!
//! Values that occur in the same cells count alike in every grouping set, so a distinct
//! count groups the values by their set of cells and works on the few sets instead of
//! the many values.

use std::collections::BTreeSet;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, BinaryBuilder, BooleanArray, Decimal128Array};
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

/// `__cell_lanes(code, …, name, …)`: a cell's or a group's number (see the module
/// documentation).
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct CellLanes {
    signature: Signature,
}

impl Default for CellLanes {
    fn default() -> Self {
        CellLanes {
            signature: Signature::variadic_any(Volatility::Immutable),
        }
    }
}

pub fn cell_set() -> AggregateUDF {
    AggregateUDF::new_from_impl(CellSet::default())
}

pub fn cell_lanes() -> ScalarUDF {
    ScalarUDF::new_from_impl(CellLanes::default())
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

/// The grouping sets of a distinct count: with `totals` every subset of the dimensions,
/// otherwise only all of them (the cells).
#[derive(Debug, Clone)]
struct Cube {
    dims: usize,
    kept: Vec<u32>,
    /// Groups of one grouping set, sorted to drop repeats.
    buf: Vec<i128>,
}

impl Cube {
    fn new(dims: i64, totals: bool) -> Result<Cube> {
        let Some(dims) = usize::try_from(dims).ok().filter(|d| *d < 32) else {
            return exec_err!("a distinct count over {dims} dimensions");
        };
        let all = (1u32 << dims) - 1;
        let kept = if totals {
            (0..=all).collect()
        } else {
            vec![all]
        };
        Ok(Cube {
            dims,
            kept,
            buf: Vec::new(),
        })
    }

    /// Calls `each` once for every group that has one of `cells` (distinct, ascending).
    fn groups(&mut self, cells: &[i128], mut each: impl FnMut(i128)) {
        let all = (1u32 << self.dims) - 1;
        for &k in &self.kept {
            if k == all {
                cells.iter().for_each(|&c| each(c));
            } else if let [c] = cells {
                each(group_of(*c, k, self.dims));
            } else {
                // Distinct cells may share a group of a grouping set of totals.
                self.buf.clear();
                self.buf
                    .extend(cells.iter().map(|&c| group_of(c, k, self.dims)));
                self.buf.sort_unstable();
                self.buf.dedup();
                self.buf.iter().for_each(|&g| each(g));
            }
        }
    }
}

/// A fast hash of cell and group numbers (few keys, hashed very often).
#[derive(Default, Clone, Copy)]
struct NumberHash(u64);

impl std::hash::Hasher for NumberHash {
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(*b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }
    fn write_i128(&mut self, v: i128) {
        self.0 =
            (v as u64 ^ ((v >> 64) as u64).rotate_left(31)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
    fn finish(&self) -> u64 {
        self.0 ^ (self.0 >> 29)
    }
}

type Counts = std::collections::HashMap<i128, i64, std::hash::BuildHasherDefault<NumberHash>>;

/// `__group_counts(set, dimensions, totals)`: over all sets, per group the number of sets
/// with a cell in it (each set once), as a list of `{group, n}` ascending by group.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct GroupCounts {
    signature: Signature,
}

impl Default for GroupCounts {
    fn default() -> Self {
        GroupCounts {
            signature: Signature::exact(
                vec![DataType::Binary, DataType::Int64, DataType::Boolean],
                Volatility::Immutable,
            ),
        }
    }
}

pub fn group_counts() -> AggregateUDF {
    AggregateUDF::new_from_impl(GroupCounts::default())
}

fn counted_fields() -> arrow::datatypes::Fields {
    arrow::datatypes::Fields::from(vec![
        Field::new("group", CELL, false),
        Field::new("n", DataType::Int64, false),
    ])
}

impl AggregateUDFImpl for GroupCounts {
    fn name(&self) -> &str {
        "__group_counts"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(DataType::List(Arc::new(Field::new_list_field(
            DataType::Struct(counted_fields()),
            true,
        ))))
    }
    fn accumulator(&self, _: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        Ok(Box::new(SetCounter::default()))
    }
    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        let list = |t: DataType| DataType::List(Arc::new(Field::new_list_field(t, true)));
        Ok(vec![
            Arc::new(Field::new(
                format_state_name(args.name, "groups"),
                list(CELL),
                true,
            )),
            Arc::new(Field::new(
                format_state_name(args.name, "counts"),
                list(DataType::Int64),
                true,
            )),
        ])
    }
}

/// The counts of `__group_counts`: sets of one cell (most) are counted per cell and their
/// groups added at the end; larger sets add to their groups at once.
#[derive(Debug, Default)]
struct SetCounter {
    cube: Option<Cube>,
    cells: Counts,
    groups: Counts,
    one: Vec<i128>,
}

impl SetCounter {
    /// The counts per group, ascending (the one-cell sets' cells rolled into their groups).
    fn totals(&mut self) -> Vec<(i128, i64)> {
        if let Some(cube) = &mut self.cube {
            for (&cell, &n) in &self.cells {
                cube.groups(&[cell], |g| *self.groups.entry(g).or_default() += n);
            }
        }
        self.cells.clear();
        let mut out: Vec<(i128, i64)> = self.groups.iter().map(|(&g, &n)| (g, n)).collect();
        out.sort_unstable();
        out
    }

    /// The groups and their counts, ascending by group.
    fn columns(&mut self) -> Result<(Decimal128Array, arrow::array::Int64Array)> {
        let totals = self.totals();
        let groups = Decimal128Array::from_iter_values(totals.iter().map(|t| t.0))
            .with_precision_and_scale(38, 0)?;
        let counts = arrow::array::Int64Array::from_iter_values(totals.iter().map(|t| t.1));
        Ok((groups, counts))
    }
}

/// `values` as a list value of one row.
fn one_list(values: ArrayRef) -> ScalarValue {
    datafusion::common::utils::SingleRowListArrayBuilder::new(values).build_list_scalar()
}

impl Accumulator for SetCounter {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        let [sets, dims, totals] = values else {
            return exec_err!("__group_counts takes a set, a number of dimensions and a flag");
        };
        if sets.is_empty() {
            return Ok(());
        }
        if self.cube.is_none() {
            let dims = dims.as_primitive::<arrow::datatypes::Int64Type>();
            let totals = totals.as_boolean();
            if dims.is_null(0) || totals.is_null(0) {
                return exec_err!("__group_counts without its number of dimensions or flag");
            }
            self.cube = Some(Cube::new(dims.value(0), totals.value(0))?);
        }
        let Some(cube) = &mut self.cube else {
            return Ok(());
        };
        for set in sets.as_binary::<i32>().iter().flatten() {
            if set.len() == WIDTH {
                let cell = i128::from_le_bytes(set.try_into().expect("16 bytes"));
                *self.cells.entry(cell).or_default() += 1;
            } else {
                self.one.clear();
                self.one.extend(cells(set)?);
                cube.groups(&self.one, |g| *self.groups.entry(g).or_default() += 1);
            }
        }
        Ok(())
    }
    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        let [groups, counts] = states else {
            return exec_err!("__group_counts state of {} columns", states.len());
        };
        let (groups, counts) = (groups.as_list::<i32>(), counts.as_list::<i32>());
        for row in 0..groups.len() {
            if groups.is_null(row) {
                continue;
            }
            let g = groups.value(row);
            let n = counts.value(row);
            let (g, n) = (
                g.as_primitive::<Decimal128Type>(),
                n.as_primitive::<arrow::datatypes::Int64Type>(),
            );
            for (g, n) in g.values().iter().zip(n.values()) {
                *self.groups.entry(*g).or_default() += n;
            }
        }
        Ok(())
    }
    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        let (groups, counts) = self.columns()?;
        Ok(vec![one_list(Arc::new(groups)), one_list(Arc::new(counts))])
    }
    fn evaluate(&mut self) -> Result<ScalarValue> {
        let (groups, counts) = self.columns()?;
        let rows = arrow::array::StructArray::try_new(
            counted_fields(),
            vec![Arc::new(groups), Arc::new(counts)],
            None,
        )?;
        Ok(one_list(Arc::new(rows)))
    }
    fn size(&self) -> usize {
        let entry = WIDTH + 8 + 8;
        std::mem::size_of::<Self>()
            + (self.cells.capacity() + self.groups.capacity()) * entry
            + self.one.capacity() * WIDTH
            + self.cube.as_ref().map_or(0, |c| c.buf.capacity() * WIDTH)
    }
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
        let dims = args.args.len() / 2;
        let (codes, names) = args.args.split_at(dims);
        let bits = lane_bits(dims);
        let ones = (1u64 << bits) - 1;
        let mut out = vec![0i128; rows];
        for (i, (code, name)) in codes.iter().zip(names).enumerate() {
            let code = code.to_array(rows)?;
            let Some(code) = code.as_primitive_opt::<UInt64Type>() else {
                return exec_err!("__cell_lanes takes codes (UInt64), then the dimensions' names");
            };
            for (row, cell) in out.iter_mut().enumerate() {
                let lane = if code.is_null(row) {
                    ones
                } else {
                    let c = code.value(row);
                    if c >= ones {
                        let ColumnarValue::Scalar(ScalarValue::Utf8(Some(name))) = name else {
                            return exec_err!("__cell_lanes without the name of dimension {i}");
                        };
                        return exec_err!(
                            "a distinct count over {dims} dimensions takes at most {ones} \
                             distinct values in each; `{name}` has more"
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

#[cfg(test)]
mod tests;
