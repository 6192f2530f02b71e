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

/// Feeds `sets` to a `__group_counts` accumulator.
fn counter(sets: ArrayRef, dims: i64, totals: bool) -> Result<SetCounter> {
    let rows = sets.len();
    let mut a = SetCounter::default();
    a.update_batch(&[
        sets,
        Arc::new(arrow::array::Int64Array::from(vec![dims; rows])),
        Arc::new(BooleanArray::from(vec![totals; rows])),
    ])?;
    Ok(a)
}

/// The `{group, n}` list of an evaluated `__group_counts`.
fn counted(a: &mut SetCounter) -> Vec<(i128, i64)> {
    let ScalarValue::List(list) = a.evaluate().unwrap() else {
        panic!("not a list")
    };
    let rows = list.value(0);
    let rows = rows.as_struct();
    let g = rows.column(0).as_primitive::<Decimal128Type>();
    let n = rows.column(1).as_primitive::<arrow::datatypes::Int64Type>();
    g.values()
        .iter()
        .copied()
        .zip(n.values().iter().copied())
        .collect()
}

/// `__cell_lanes` of rows of codes, one `Vec` per dimension (named `a`, `b`, …).
fn lanes(codes: Vec<Vec<Option<u64>>>) -> Result<Vec<i128>> {
    let rows = codes[0].len();
    let names: Vec<ColumnarValue> = (0..codes.len())
        .map(|i| ColumnarValue::Scalar(ScalarValue::from(["a", "b", "c"][i])))
        .collect();
    let args = codes
        .into_iter()
        .map(|c| ColumnarValue::Array(Arc::new(arrow::array::UInt64Array::from(c))))
        .chain(names)
        .collect();
    let out = call(&CellLanes::default(), args, rows)?;
    let out = out.as_primitive::<Decimal128Type>();
    assert_eq!(out.null_count(), 0);
    Ok(out.values().to_vec())
}

#[test]
fn one_group_and_the_counts_of_its_cells() {
    let mut one = OneCellSet::default();
    one.update_batch(&[decimals(&[Some(2), Some(1), Some(2), None])])
        .unwrap();
    let ScalarValue::Binary(Some(set)) = one.evaluate().unwrap() else {
        panic!("no set")
    };
    let binary: ArrayRef = Arc::new(arrow::array::BinaryArray::from(vec![
        Some(set.as_slice()),
        None,
        Some(&2i128.to_le_bytes()[..]),
        Some(&[0u8; 3][..]),
    ]));
    // Without totals a set's groups are its cells; a NULL set counts nowhere.
    let mut a = counter(binary.slice(0, 3), 1, false).unwrap();
    assert_eq!(counted(&mut a), vec![(1, 1), (2, 2)]);
    // A set that is not whole cells is an error that says so, not a panic.
    let err = counter(binary, 1, false).err().unwrap().to_string();
    assert!(err.contains("3 bytes is not whole cells"), "{err}");
}

/// Cells numbered from their codes, and the counts of sets over a cube of two
/// dimensions: each set once in each of its groups, numbered as `__cell_lanes` numbers
/// them with NULL codes for the dimensions a grouping set leaves out; the same after
/// partial states are merged.
#[test]
fn cells_and_groups_are_numbered_by_lanes_and_counted_once_a_set() {
    // Cells (a, b): (0, 0), (0, 1), (1, 1).
    let cells = lanes(vec![
        vec![Some(0), Some(0), Some(1)],
        vec![Some(0), Some(1), Some(1)],
    ])
    .unwrap();
    assert_eq!(cells, vec![0, 1 << 32, 1 | 1 << 32]);
    // The groups: a = 0, a = 1, b = 0, b = 1 and the total, with their NULL codes.
    let any = lanes(vec![
        vec![Some(0), Some(1), None, None, None],
        vec![None, None, Some(0), Some(1), None],
    ])
    .unwrap();
    // All numbers differ: no group is taken for another.
    let all: BTreeSet<i128> = cells.iter().chain(&any).copied().collect();
    assert_eq!(all.len(), 8);
    let set = |cells: &[i128]| -> Option<Vec<u8>> {
        Some(cells.iter().flat_map(|c| c.to_le_bytes()).collect())
    };
    let sets: ArrayRef = Arc::new(arrow::array::BinaryArray::from_iter(vec![
        // (0, 0) and (0, 1): a = 0 once; b = 0, b = 1; the total once.
        set(&[cells[0], cells[1]]),
        // (0, 1) and (1, 1): a = 0, a = 1; b = 1 once; the total.
        set(&[cells[1], cells[2]]),
        // (1, 1) alone: a = 1, b = 1, the total.
        set(&[cells[2]]),
    ]));
    let mut want = vec![
        (cells[0], 1),
        (cells[1], 2),
        (cells[2], 2),
        (any[0], 2),
        (any[1], 2),
        (any[2], 1),
        (any[3], 3),
        (any[4], 3),
    ];
    want.sort();
    let mut whole = counter(sets.clone(), 2, true).unwrap();
    assert_eq!(counted(&mut whole), want);
    // Two partial counts (one of them with only the one-cell set) merged.
    let mut first = counter(sets.slice(0, 2), 2, true).unwrap();
    let mut second = counter(sets.slice(2, 1), 2, true).unwrap();
    let state: Vec<ArrayRef> = second
        .state()
        .unwrap()
        .iter()
        .map(|v| v.to_array().unwrap())
        .collect();
    first.merge_batch(&state).unwrap();
    assert_eq!(counted(&mut first), want);
    // A code too large for its lane is an error, not a wrong number.
    let err = lanes(vec![vec![Some(u32::MAX as u64)]])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("at most 4294967295 distinct values in each; `a` has more"),
        "{err}"
    );
    assert_eq!(
        lanes(vec![vec![Some(u32::MAX as u64 - 1)]]).unwrap().len(),
        1
    );
}
