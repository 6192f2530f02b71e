//! Disclosure control of published tables: small cells and the cells that would reveal them.
//!
//! # Method
//!
//! A published table has dimension columns and measures; the *deciding counts* decide: the
//! dataset's first count and every count of persons (a `count(DISTINCT …)` of a personal
//! column, see [`crate::plan::personal`]), since a cell of many events can still be about one to
//! four persons.
//! The table holds total rows: a dimension's total code (`SSS` for the whole country, `YHT`
//! for other dimensions) stands for the sum over its other categories. Every such sum is a
//! *relation*: fix all dimensions but one; the row with that dimension's total equals the
//! sum of the rows with its other categories (a missing row counts as a published 0).
//!
//! 1. **Primary suppression.** A cell any of whose deciding counts is 1 … `min_count − 1` is
//!    suppressed: its
//!    count and every other measure of the row are left empty and its status is
//!    `suppressed`. A count of 0 is published.
//! 2. **Secondary suppression.** Until nothing changes, for every relation with suppressed
//!    cells `S` (their true counts summing to `s`):
//!    - if `S` has one cell, it could be recovered by subtraction;
//!    - if `s < min_count + |S| − 1`, a reader who knows that each suppressed count is at
//!      least 1 could bound one of them below `min_count` (or pin it exactly);
//!
//!    in either case the smallest published non-zero cell of the relation is suppressed too
//!    (ties by table order, so the result is deterministic). Each deciding count is tested in
//!    turn, the first count first; the first that is weak chooses the cell. A count of
//!    persons is not additive (one person in two categories counts once in their total), so
//!    its hidden sum is also bounded by the published total less the published parts.
//! 3. **Verification.** The suppressed counts are then treated as unknowns of the linear
//!    system of all relations; if elimination determines any of them uniquely, the smallest
//!    published cell of a relation that holds it is suppressed and step 2 runs again.
//!
//! The end state: no suppressed count can be computed from the published table by any
//! combination of its sums, and no relation narrows a suppressed count below the threshold.
//!
//! # Measures decided by a count of their own
//!
//! A measure may be decided by a count of its own (`disclosure: { measures: … }`): a
//! question's share of positive answers by the number who answered it. Its cell may be
//! published, the respondents being many, while the question was answered by few: then
//! the share is about those few, and it alone is emptied, its status `suppressed` in the
//! column `status_<measure>` ([`suppress_own`]). A cell suppressed whole empties it too. A
//! count of 0 is published, as in step 1: a share over no answers is empty anyway, and there
//! is nothing to hide.
//!
//! Secondary suppression follows what is published. A share is not additive: the total's
//! share is not a sum of its parts' shares, so no relation recovers a hidden share from
//! published ones, and a deciding count that is *not published* (`unpublished`: it decides,
//! then is dropped from every format) needs no secondary suppression. A deciding count that
//! *is* published is a count like the others: a small one is emptied with its measure (and
//! marked in its own `status_<count>`), and steps 2–3 run over it, starting from the cells
//! already suppressed whole, so that it cannot be recovered from its total either.

use std::collections::BTreeMap;

/// Codes that mark total rows.
pub const TOTAL_CODES: [&str; 2] = ["SSS", "YHT"];

/// One sum of the table: `total` = Σ `parts` (rows absent from the table are zeros).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relation {
    pub total: usize,
    pub parts: Vec<usize>,
}

impl Relation {
    fn cells(&self) -> impl Iterator<Item = usize> + '_ {
        std::iter::once(self.total).chain(self.parts.iter().copied())
    }
}

/// The relations of a table: `keys[row][dim]` are its dimension values.
pub fn relations(keys: &[Vec<String>]) -> Vec<Relation> {
    let dims = keys.first().map_or(0, Vec::len);
    let mut out = Vec::new();
    for d in 0..dims {
        let mut groups: BTreeMap<Vec<&str>, (Option<usize>, Vec<usize>)> = BTreeMap::new();
        for (row, key) in keys.iter().enumerate() {
            let rest: Vec<&str> = key
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != d)
                .map(|(_, v)| v.as_str())
                .collect();
            let g = groups.entry(rest).or_default();
            if TOTAL_CODES.contains(&key[d].as_str()) {
                g.0 = Some(row);
            } else {
                g.1.push(row);
            }
        }
        for (_, (total, parts)) in groups {
            if let Some(total) = total
                && !parts.is_empty()
            {
                out.push(Relation { total, parts });
            }
        }
    }
    out
}

/// Which cells to suppress, given each row's deciding counts: `counts[k][row]`, the first
/// count first, then the counts of persons (None: no count, never suppressed by itself). A
/// cell is primary when any of its deciding counts is 1 to `min_count − 1`; secondary
/// suppression protects every count. Returns (suppressed, primary) flags.
pub fn suppress(
    keys: &[Vec<String>],
    counts: &[Vec<Option<i64>>],
    min_count: i64,
) -> (Vec<bool>, Vec<bool>) {
    suppress_from(keys, counts, min_count, &vec![false; keys.len()])
}

/// The cells of a measure decided by its own `count` to empty, given the cells suppressed
/// whole (`rows`): those and the cells whose count is 1 to `min_count − 1`; with secondary
/// suppression over the count when it is `published` (see the module doc).
pub fn suppress_own(
    keys: &[Vec<String>],
    count: &[Option<i64>],
    (min_count, published): (i64, bool),
    rows: &[bool],
) -> Vec<bool> {
    if published {
        return suppress_from(keys, &[count.to_vec()], min_count, rows).0;
    }
    (0..keys.len())
        .map(|i| rows[i] || count[i].is_some_and(|c| c >= 1 && c < min_count))
        .collect()
}

/// [`suppress`], with the cells `already` hidden (by other counts) hidden from the start.
fn suppress_from(
    keys: &[Vec<String>],
    counts: &[Vec<Option<i64>>],
    min_count: i64,
    already: &[bool],
) -> (Vec<bool>, Vec<bool>) {
    let n = keys.len();
    let primary: Vec<bool> = (0..n)
        .map(|i| {
            counts
                .iter()
                .any(|c| c[i].is_some_and(|c| c >= 1 && c < min_count))
        })
        .collect();
    let mut hidden: Vec<bool> = (0..n).map(|i| primary[i] || already[i]).collect();
    if min_count <= 1 || counts.is_empty() || !hidden.iter().any(|h| *h) {
        return (hidden, primary);
    }
    let rels = relations(keys);
    let deciding = Deciding { counts, min_count };
    loop {
        if deciding.secondary_pass(&rels, &mut hidden) {
            continue;
        }
        let determined = determined_cells(&rels, &hidden);
        let Some(&cell) = determined.first() else {
            break;
        };
        let fix = rels
            .iter()
            .filter(|r| r.cells().any(|i| i == cell))
            .find_map(|r| deciding.candidate(r, 0, &hidden));
        match fix {
            Some(c) => hidden[c] = true,
            None => break, // nothing left to hide around it
        }
    }
    debug_assert_eq!(hidden.len(), n);
    (hidden, primary)
}

/// The deciding counts of a table and the threshold, for secondary suppression.
struct Deciding<'a> {
    counts: &'a [Vec<Option<i64>>],
    min_count: i64,
}

impl Deciding<'_> {
    /// Count `k` of row `i`, 0 where the row has none.
    fn value(&self, k: usize, i: usize) -> i64 {
        self.counts[k][i].unwrap_or(0)
    }

    /// The smallest published cell of a relation that is non-zero in count `k` (and in the
    /// first count, so that a hidden cell's first count is at least 1), parts before the
    /// total.
    fn candidate(&self, r: &Relation, k: usize, hidden: &[bool]) -> Option<usize> {
        let usable = |i: usize| !hidden[i] && self.value(k, i) > 0 && self.value(0, i) > 0;
        r.parts
            .iter()
            .copied()
            .filter(|&i| usable(i))
            .min_by_key(|&i| (self.value(k, i), i))
            .or_else(|| usable(r.total).then_some(r.total))
    }

    /// The count of a relation whose hidden cells could be narrowed down too far: the first
    /// such in order. A person count's total is not the sum of its parts (one person in two
    /// parts counts once in the total), so what a reader can infer of the hidden sum is also
    /// bounded by the published total less the published parts.
    fn weak(&self, r: &Relation, s: &[usize], hidden: &[bool]) -> Option<usize> {
        (0..self.counts.len()).find(|&k| {
            let mut sum: i64 = s.iter().map(|&i| self.value(k, i)).sum();
            if !hidden[r.total] {
                let shown: i64 = r
                    .parts
                    .iter()
                    .filter(|&&i| !hidden[i])
                    .map(|&i| self.value(k, i))
                    .sum();
                sum = sum.min(self.value(k, r.total) - shown);
            }
            s.len() == 1 || sum < self.min_count + s.len() as i64 - 1
        })
    }

    /// One pass of secondary suppression over every relation; whether it hid a cell.
    fn secondary_pass(&self, rels: &[Relation], hidden: &mut [bool]) -> bool {
        let mut changed = false;
        for r in rels {
            let s: Vec<usize> = r.cells().filter(|&i| hidden[i]).collect();
            if s.is_empty() {
                continue;
            }
            if let Some(k) = self.weak(r, &s, hidden)
                && let Some(c) = self.candidate(r, k, hidden)
            {
                hidden[c] = true;
                changed = true;
            }
        }
        changed
    }
}

/// Suppressed cells whose counts the published table determines uniquely, by Gaussian
/// elimination over the relations (exact in rationals for these 0/±1 systems).
pub fn determined_cells(rels: &[Relation], hidden: &[bool]) -> Vec<usize> {
    let unknowns: Vec<usize> = (0..hidden.len()).filter(|&i| hidden[i]).collect();
    let col: BTreeMap<usize, usize> = unknowns.iter().enumerate().map(|(j, &i)| (i, j)).collect();
    let m = unknowns.len();
    // Rows of coefficients for the unknowns (the known cells only move the right side,
    // which does not matter for whether a cell is determined).
    let mut rows: Vec<Vec<i64>> = Vec::new();
    for r in rels {
        let mut row = vec![0i64; m];
        let mut any = false;
        if let Some(&j) = col.get(&r.total) {
            row[j] += 1;
            any = true;
        }
        for p in &r.parts {
            if let Some(&j) = col.get(p) {
                row[j] -= 1;
                any = true;
            }
        }
        if any {
            rows.push(row);
        }
    }
    // Fraction-free elimination to reduced row echelon form.
    let mut pivots: Vec<(usize, usize)> = Vec::new();
    let mut r = 0;
    for c in 0..m {
        let Some(p) = (r..rows.len()).find(|&i| rows[i][c] != 0) else {
            continue;
        };
        rows.swap(r, p);
        for i in 0..rows.len() {
            if i != r && rows[i][c] != 0 {
                let (a, b) = (rows[r][c], rows[i][c]);
                let pivot = rows[r].clone();
                for (x, p) in rows[i].iter_mut().zip(&pivot) {
                    *x = *x * a - p * b;
                }
                let g = rows[i].iter().fold(0i64, |g, &x| gcd(g, x.abs()));
                if g > 1 {
                    for x in rows[i].iter_mut() {
                        *x /= g;
                    }
                }
            }
        }
        pivots.push((r, c));
        r += 1;
        if r == rows.len() {
            break;
        }
    }
    pivots
        .into_iter()
        .filter(|&(row, c)| rows[row].iter().enumerate().all(|(k, &x)| k == c || x == 0))
        .map(|(_, c)| unknowns[c])
        .collect()
}

fn gcd(a: i64, b: i64) -> i64 {
    if b == 0 { a } else { gcd(b, a % b) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(parts: &[&str]) -> Vec<String> {
        parts.iter().map(|s| s.to_string()).collect()
    }

    /// A 2-D table: areas × classes with totals.
    fn table(cells: &[(&str, &str, i64)]) -> (Vec<Vec<String>>, Vec<Option<i64>>) {
        (
            cells.iter().map(|(a, b, _)| key(&[a, b])).collect(),
            cells.iter().map(|(_, _, c)| Some(*c)).collect(),
        )
    }

    #[test]
    fn a_lone_small_cell_takes_a_partner_in_every_direction() {
        let (keys, counts) = table(&[
            ("01", "A", 2),
            ("01", "B", 10),
            ("01", "YHT", 12),
            ("02", "A", 7),
            ("02", "B", 9),
            ("02", "YHT", 16),
            ("SSS", "A", 9),
            ("SSS", "B", 19),
            ("SSS", "YHT", 28),
        ]);
        let (hidden, primary) = suppress(&keys, std::slice::from_ref(&counts), 5);
        assert!(primary[0] && primary.iter().filter(|p| **p).count() == 1);
        // Every relation holding a hidden cell holds at least two, and nothing is determined.
        for r in relations(&keys) {
            let h = r.cells().filter(|&i| hidden[i]).count();
            assert!(h == 0 || h >= 2, "{r:?} {hidden:?}");
        }
        assert!(determined_cells(&relations(&keys), &hidden).is_empty());
        // The classic rectangle: 01/A, 01/B, 02/A, 02/B.
        assert_eq!(
            hidden,
            vec![true, true, false, true, true, false, false, false, false]
        );
    }

    #[test]
    fn two_ones_in_a_line_are_not_enough() {
        // 01/A = 1 and 01/B = 1 hide each other, but their sum 2 tells both are 1.
        let (keys, counts) = table(&[
            ("01", "A", 1),
            ("01", "B", 1),
            ("01", "C", 30),
            ("01", "YHT", 32),
        ]);
        let (hidden, _) = suppress(&keys, std::slice::from_ref(&counts), 5);
        let sum: i64 = (0..4)
            .filter(|&i| hidden[i])
            .map(|i| counts[i].unwrap())
            .sum();
        let n = hidden.iter().filter(|h| **h).count() as i64;
        assert!(sum >= 5 + n - 1, "{hidden:?}");
    }

    #[test]
    fn elimination_finds_cells_recoverable_through_several_sums() {
        // x + y = known and x − y = known determine both, though each sum has two unknowns.
        let rels = vec![
            Relation {
                total: 0,
                parts: vec![1, 2],
            },
            Relation {
                total: 3,
                parts: vec![1, 4],
            },
            Relation {
                total: 5,
                parts: vec![2, 4],
            },
        ];
        let hidden = vec![false, true, true, false, true, false];
        let mut d = determined_cells(&rels, &hidden);
        d.sort();
        assert_eq!(d, vec![1, 2, 4]);
        let hidden = vec![true, true, true, false, false, false];
        assert!(determined_cells(&rels[..1], &hidden).is_empty());
    }

    #[test]
    fn a_small_count_of_persons_decides_like_the_first_count() {
        // 01/A has 10 missions but 3 patients: suppressed for its patients, and a partner in
        // each direction is hidden so that neither count of 01/A can be recovered.
        let (keys, missions) = table(&[
            ("01", "A", 10),
            ("01", "B", 12),
            ("01", "YHT", 22),
            ("02", "A", 8),
            ("02", "B", 9),
            ("02", "YHT", 17),
            ("SSS", "A", 18),
            ("SSS", "B", 21),
            ("SSS", "YHT", 39),
        ]);
        let (_, patients) = table(&[
            ("01", "A", 3),
            ("01", "B", 9),
            ("01", "YHT", 12),
            ("02", "A", 6),
            ("02", "B", 7),
            ("02", "YHT", 13),
            ("SSS", "A", 9),
            ("SSS", "B", 16),
            ("SSS", "YHT", 25),
        ]);
        let (alone, _) = suppress(&keys, std::slice::from_ref(&missions), 5);
        assert!(alone.iter().all(|h| !h), "missions alone decide nothing");
        let (hidden, primary) = suppress(&keys, &[missions, patients.clone()], 5);
        assert_eq!(
            primary.iter().filter(|p| **p).count(),
            1,
            "only 01/A is primary"
        );
        assert!(primary[0] && hidden[0]);
        for r in relations(&keys) {
            let h = r.cells().filter(|&i| hidden[i]).count();
            assert!(h == 0 || h >= 2, "{r:?} {hidden:?}");
            // The patients hidden in a relation sum to at least the threshold.
            let s: i64 = r
                .cells()
                .filter(|&i| hidden[i])
                .map(|i| patients[i].unwrap())
                .sum();
            assert!(h == 0 || s >= 5 + h as i64 - 1, "{r:?} {hidden:?}");
        }
        assert!(determined_cells(&relations(&keys), &hidden).is_empty());
    }

    #[test]
    fn an_unpublished_count_empties_its_measure_alone() {
        // 01/A has 12 respondents but 3 answers to the question: its share alone is hidden,
        // and with the count unpublished no partner is needed; 02/B is hidden whole.
        let (keys, answers) = table(&[
            ("01", "A", 3),
            ("01", "B", 10),
            ("01", "YHT", 13),
            ("02", "A", 8),
            ("02", "B", 2),
            ("02", "YHT", 10),
        ]);
        let rows = vec![false, false, false, false, true, false];
        let hidden = suppress_own(&keys, &answers, (5, false), &rows);
        assert_eq!(hidden, vec![true, false, false, false, true, false]);
        let none = suppress_own(
            &keys[..3],
            &[Some(0), Some(5), Some(5)],
            (5, false),
            &rows[..3],
        );
        assert_eq!(
            none,
            vec![false; 3],
            "0 answers and 5 answers are published"
        );
    }

    #[test]
    fn a_published_count_is_protected_like_the_first_count() {
        let (keys, answers) = table(&[
            ("01", "A", 3),
            ("01", "B", 10),
            ("01", "YHT", 13),
            ("02", "A", 7),
            ("02", "B", 9),
            ("02", "YHT", 16),
            ("SSS", "A", 10),
            ("SSS", "B", 19),
            ("SSS", "YHT", 29),
        ]);
        let rows = vec![false; 9];
        let hidden = suppress_own(&keys, &answers, (5, true), &rows);
        assert!(hidden[0]);
        for r in relations(&keys) {
            let h = r.cells().filter(|&i| hidden[i]).count();
            assert!(h == 0 || h >= 2, "{r:?} {hidden:?}");
        }
        assert!(determined_cells(&relations(&keys), &hidden).is_empty());
        // Cells already hidden whole stay hidden.
        let mut rows = vec![false; 9];
        rows[8] = true;
        assert!(suppress_own(&keys, &answers, (5, true), &rows)[8]);
    }

    #[test]
    fn no_small_cells_no_suppression() {
        let (keys, counts) = table(&[("01", "A", 5), ("01", "B", 0), ("01", "YHT", 5)]);
        let (hidden, _) = suppress(&keys, std::slice::from_ref(&counts), 5);
        assert!(hidden.iter().all(|h| !h));
    }
}
