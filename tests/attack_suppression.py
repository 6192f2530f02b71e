#!/usr/bin/env python3
"""An adversary for published tables: tries to recover every suppressed count.

Usage: attack_suppression.py TABLE.csv COUNT_COLUMN MIN_COUNT DIM [DIM ...]

Independent of the engine. It knows what any reader knows: the table, that `SSS` and
`YHT` rows are sums over the other categories of their dimension, that a missing row is 0,
and that a suppressed count is at least 1 (0 is published). It then
  1. solves every sum with one unknown, repeatedly (subtraction);
  2. runs exact Gaussian elimination (fractions) over all sums for uniquely determined cells;
  3. uses the lower bound 1: a sum whose unknowns add up to their number pins them all to 1,
     and a sum that caps an unknown below MIN_COUNT tells it is small.
Prints JSON: {"cells": n, "suppressed": n, "recovered": [...], "bounded_small": [...]}.
"""
import csv
import json
import sys
from fractions import Fraction

TOTALS = {"SSS", "YHT"}


def main():
    path, count_col, min_count, dims = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4:]
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
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
        if s == n:
            for k in coef:
                recovered[k] = Fraction(1)
        elif s - (n - 1) < min_count:
            bounded.update(coef)
    out = {
        "cells": len(cells),
        "suppressed": len(unknown),
        "recovered": sorted([list(k) + [str(v)] for k, v in recovered.items()]),
        "bounded_small": sorted([list(k) for k in bounded]),
    }
    print(json.dumps(out, ensure_ascii=False))


if __name__ == "__main__":
    main()
