#!/usr/bin/env python3
"""An adversary for published tables: tries to recover every suppressed count.

Usage: attack_suppression.py TABLE.csv COUNT[,COUNT ...] MIN_COUNT DIM [DIM ...]

COUNT lists the dataset's deciding counts, the first count first (e.g. `tehtavat,potilaat`).
Independent of the engine. It knows what any reader knows: the table, that `SSS` and
`YHT` rows are sums over the other categories of their dimension, that a missing row is 0,
and that a suppressed cell's first count is at least 1 (0 is published; further counts,
such as distinct persons, may be 0 there). For each deciding count it then
  1. solves every sum with one unknown, repeatedly (subtraction);
  2. runs exact Gaussian elimination (fractions) over all sums for uniquely determined cells;
  3. uses the lower bound: a sum whose unknowns add up to their bound pins them all to it,
     and a sum that caps an unknown below MIN_COUNT tells it is small.
A distinct count of persons is not exactly additive (one person can be in several
categories), so treating its totals as sums credits the reader with more than it knows.
It also lists published cells whose deciding count is 1 … MIN_COUNT − 1.
Prints JSON: {"cells": n, "suppressed": n, "recovered": [...], "bounded_small": [...],
"published_small": [...]}; entries are a cell's dimension values, then the value (not in
bounded_small), then, with several counts, the count's name.
"""
import csv
import json
import sys
from fractions import Fraction

TOTALS = {"SSS", "YHT"}


def attack(rows, dims, count_col, min_count, lower):
    """Cells, suppressed cells, recovered {cell: value} and cells bounded below MIN_COUNT
    for one count; `lower` is what a reader knows a suppressed count to be at least."""
    cells = {}
    for r in rows:
        key = tuple(r[d] for d in dims)
        v = r[count_col]
        cells[key] = None if v == "" else Fraction(v)
    unknown = {k for k, v in cells.items() if v is None}
    # Every sum: for each dimension, fix the others; the total row = Σ other rows.
    sums = []
    for d in range(len(dims)):
        groups = {}
        for k in cells:
            rest = k[:d] + k[d + 1:]
            g = groups.setdefault(rest, {"total": None, "parts": []})
            if k[d] in TOTALS:
                g["total"] = k
            else:
                g["parts"].append(k)
        for g in groups.values():
            if g["total"] is not None and g["parts"]:
                sums.append((g["total"], g["parts"]))
    known = {k: v for k, v in cells.items() if v is not None}
    recovered = {}

    def equation(total, parts):
        """Coefficients over unknowns and the constant: Σ coef·x = rhs."""
        coef, rhs = {}, Fraction(0)
        for k, c in [(total, 1)] + [(p, -1) for p in parts]:
            if k in known:
                rhs -= c * known[k]
            elif k in recovered:
                rhs -= c * recovered[k]
            else:
                coef[k] = coef.get(k, 0) + c
        return coef, rhs

    # 1. Subtraction, repeated.
    changed = True
    while changed:
        changed = False
        for total, parts in sums:
            coef, rhs = equation(total, parts)
            if len(coef) == 1:
                (k, c), = coef.items()
                recovered[k] = rhs / c
                changed = True
    # 2. Exact elimination.
    remaining = sorted(unknown - recovered.keys())
    index = {k: i for i, k in enumerate(remaining)}
    matrix = []
    for total, parts in sums:
        coef, rhs = equation(total, parts)
        if coef:
            row = [Fraction(0)] * (len(remaining) + 1)
            for k, c in coef.items():
                row[index[k]] = Fraction(c)
            row[-1] = rhs
            matrix.append(row)
    pivot_row = 0
    pivots = []
    for col in range(len(remaining)):
        p = next((i for i in range(pivot_row, len(matrix)) if matrix[i][col] != 0), None)
        if p is None:
            continue
        matrix[pivot_row], matrix[p] = matrix[p], matrix[pivot_row]
        pv = matrix[pivot_row][col]
        matrix[pivot_row] = [x / pv for x in matrix[pivot_row]]
        for i in range(len(matrix)):
            if i != pivot_row and matrix[i][col] != 0:
                f = matrix[i][col]
                matrix[i] = [a - f * b for a, b in zip(matrix[i], matrix[pivot_row])]
        pivots.append((pivot_row, col))
        pivot_row += 1
    for r, c in pivots:
        if all(x == 0 for j, x in enumerate(matrix[r][:-1]) if j != c):
            recovered[remaining[c]] = matrix[r][-1]
    # 3. Bounds from "each suppressed count is at least 1".
    bounded = set()
    for total, parts in sums:
        coef, rhs = equation(total, parts)
        if not coef or any(abs(c) != 1 for c in coef.values()):
            continue
        if total in coef:  # total − Σ parts = rhs; bound the parts only when the total is known
            continue
        s = -rhs  # Σ unknown parts
        n = len(coef)
        if s == n * lower:
            for k in coef:
                recovered[k] = Fraction(lower)
        elif s - (n - 1) * lower < min_count:
            bounded.update(coef)
    return cells, unknown, recovered, bounded


def main():
    path, counts, min_count, dims = sys.argv[1], sys.argv[2].split(","), int(sys.argv[3]), sys.argv[4:]
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    out = {"cells": 0, "suppressed": 0, "recovered": [], "bounded_small": [], "published_small": []}
    for i, count_col in enumerate(counts):
        cells, unknown, recovered, bounded = attack(rows, dims, count_col, min_count, 1 if i == 0 else 0)
        name = [count_col] if len(counts) > 1 else []
        if i == 0:
            out["cells"], out["suppressed"] = len(cells), len(unknown)
        out["recovered"] += [list(k) + [str(v)] + name for k, v in recovered.items()]
        out["bounded_small"] += [list(k) + name for k in bounded]
        out["published_small"] += [list(k) + [str(v)] + name for k, v in cells.items()
                                   if v is not None and 1 <= v < min_count]
    for key in ("recovered", "bounded_small", "published_small"):
        out[key].sort()
    print(json.dumps(out, ensure_ascii=False))


if __name__ == "__main__":
    main()
