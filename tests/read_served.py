#!/usr/bin/env python3
"""Reads a dataset from the daemon's indicator API as a client would and checks it against
the published files, independently of the engine.

    read_served.py BASE_URL DATASET STORE LINE SCHEMA_DIR

Fetches /api/v1/datasets/DATASET (JSON-stat 2.0), validates it against the official
JSON-stat 2.0 schema (jsonschema), reads it with pyjstat, and compares every cell with the
CSV of each period's current release in STORE (releases/LINE/<period>/latest.json names
the run): each published number is served, each empty (suppressed) cell is empty, and
nothing else is. Prints one JSON line: schema_errors, periods, cells (non-empty cells
compared), empty (empty cells compared), mismatches (the first few), extra (served cells
that no CSV has)."""
import csv
import json
import math
import sys
import urllib.request
from pathlib import Path

import jsonschema
from pyjstat import pyjstat

base, dataset, store, line, schema_dir = sys.argv[1:6]
store = Path(store)

with urllib.request.urlopen(f"{base}/api/v1/datasets/{dataset}", timeout=60) as r:
    text = r.read().decode("utf-8")
doc = json.loads(text)
schema = json.loads((Path(schema_dir) / "dataset.json").read_text(encoding="utf-8"))
schema_errors = sorted(e.message for e in jsonschema.Draft202012Validator(schema).iter_errors(doc))

# pyjstat's table by ids: one row per cell, the dimensions' codes, then `value`.
frame = pyjstat.Dataset.read(text).write("dataframe", naming="id")
dims = [d for d in doc["id"] if d not in ("jakso", "tiedot")]
measures = list(doc["dimension"]["tiedot"]["category"]["index"])
# The status of each cell by its index in the cube (JSON-stat `status` is an object, an
# array, or one string for all).
sizes = doc["size"]
status = doc.get("status", {})


def status_of(index):
    if isinstance(status, str):
        return status
    if isinstance(status, list):
        return status[index] if index < len(status) else None
    return status.get(str(index))


def cell_index(codes):
    i = 0
    for d, code, size in zip(doc["id"], codes, sizes):
        idx = doc["dimension"][d]["category"]["index"]
        pos = idx.index(code) if isinstance(idx, list) else idx[code]
        i = i * size + pos
    return i


served = {}
for rec in frame.to_dict(orient="records"):
    key = (rec["jakso"],) + tuple(str(rec[d]) for d in dims) + (rec["tiedot"],)
    v = rec["value"]
    served[key] = None if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)

published = {}
statuses = {}
periods = []
for pointer in sorted((store / "releases" / line).glob("*/latest.json")):
    period = pointer.parent.name
    run = json.loads(pointer.read_text(encoding="utf-8"))["run_id"]
    path = pointer.parent / run / f"{dataset}.csv"
    if not path.exists():
        continue
    periods.append(period)
    with path.open(encoding="utf-8", newline="") as f:
        for row in csv.DictReader(f):
            for m in measures:
                key = (period,) + tuple(row[d] for d in dims) + (m,)
                raw = row.get(m)
                if raw is None:
                    # A measure this release does not publish: served empty, status `missing`.
                    published[key] = ("missing",)
                else:
                    published[key] = float(raw) if raw != "" else None
                # A measure decided by a count of its own has its own status (`status_<m>`),
                # else the row's.
                row_status = row.get(f"status_{m}") or row.get("status")
                if row_status:
                    statuses[key] = row_status

mismatches, cells, empty = [], 0, 0
for key, want in published.items():
    got = served.get(key, "absent")
    served_status = status_of(cell_index(key)) if got != "absent" else None
    if want == ("missing",):
        empty += 1
        ok = got is None and served_status == "missing"
    elif want is None:
        empty += 1
        # An empty published cell is served empty with the row's status (suppressed).
        ok = got is None and served_status == statuses.get(key)
    else:
        cells += 1
        ok = (isinstance(got, float) and abs(got - want) <= 1e-9 * max(1.0, abs(want))
              and served_status == statuses.get(key))
    if not ok and len(mismatches) < 10:
        mismatches.append({"cell": list(key), "published": want, "served": got})
extra = [list(k) for k, v in served.items() if v is not None and k not in published][:10]
print(json.dumps({
    "schema_errors": schema_errors,
    "periods": periods,
    "served_periods": sorted(doc["dimension"]["jakso"]["category"]["index"]),
    "cells": cells,
    "empty": empty,
    "mismatches": mismatches,
    "extra": extra,
}, ensure_ascii=False))
