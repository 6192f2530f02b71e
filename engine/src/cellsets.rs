//! The sets of cells that values occur in, for exact distinct counts over a cube (internal
//! to the planner, see `plan::distinct_counts`).
//!
//! - `__cell_set(cell)`, an aggregate: per group (one value), the distinct cell keys
//!   (`functions::CellKey`, 128-bit numbers) of its rows, ascending, as one binary value of
//!   16 bytes (little-endian) per cell. NULL cells are skipped; a group without cells is
//!   NULL. Grouped, it keeps a value's only cell inline (most values, identity codes,
//!   occur in one cell) and spills like any other grouping state.
//! - `__cells_of(set)`: the cells of such a binary value, as a list.
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
use arrow::datatypes::{DataType, Decimal128Type, Field, FieldRef};
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

/// `__cells_of(set)`: the cells of a set made by `__cell_set`, as a list.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct CellsOf {
    signature: Signature,
}

impl Default for CellsOf {
    fn default() -> Self {
        CellsOf {
            signature: Signature::exact(vec![DataType::Binary], Volatility::Immutable),
        }
    }
}

pub fn cell_set() -> AggregateUDF {
    AggregateUDF::new_from_impl(CellSet::default())
}

pub fn cells_of() -> ScalarUDF {
    ScalarUDF::new_from_impl(CellsOf::default())
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

impl ScalarUDFImpl for CellsOf {
    fn name(&self) -> &str {
        "__cells_of"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(DataType::List(Arc::new(Field::new_list_field(CELL, true))))
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let [arg] = args.args.as_slice() else {
            return exec_err!("__cells_of takes one argument");
        };
        let sets = arg.to_array(args.number_rows)?;
        let sets = sets.as_binary::<i32>();
        let mut values = Vec::with_capacity(sets.value_data().len() / WIDTH);
        let mut lengths = Vec::with_capacity(sets.len());
        for set in sets.iter() {
            let before = values.len();
            if let Some(set) = set {
                values.extend(cells(set)?);
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

    #[test]
    fn one_group_and_the_list_of_its_cells() {
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
        let invoke = |sets: ArrayRef| {
            let rows = sets.len();
            CellsOf::default().invoke_with_args(ScalarFunctionArgs {
                args: vec![ColumnarValue::Array(sets)],
                arg_fields: vec![Arc::new(Field::new("s", DataType::Binary, true))],
                number_rows: rows,
                return_field: Arc::new(Field::new(
                    "c",
                    CellsOf::default().return_type(&[]).unwrap(),
                    true,
                )),
                config_options: Arc::new(Default::default()),
            })
        };
        let ColumnarValue::Array(list) = invoke(binary.slice(0, 2)).unwrap() else {
            panic!("no array")
        };
        let list = list.as_list::<i32>();
        assert!(list.is_null(1));
        let first = list.value(0);
        let first: Vec<i128> = first.as_primitive::<Decimal128Type>().values().to_vec();
        assert_eq!(first, vec![1, 2]);
        // A set that is not whole cells is an error that says so, not a panic.
        let err = invoke(binary).unwrap_err().to_string();
        assert!(err.contains("3 bytes is not whole cells"), "{err}");
    }
}
