#!/usr/bin/env python3
"""Reads one table of the daemon's PxWeb API 2.0 with real clients and checks it.

    read_pxweb.py BASE_URL TABLE_ID PUBLISHED_CSV [PUBLISHED_CSV …] [--spec PxAPI-2.yml]

BASE_URL is the daemon (`http://127.0.0.1:PORT`) or its API (`…/api/v2`); each
PUBLISHED_CSV is the table's CSV in a current release,
`<store>/releases/<line>/<period>/<run>/<dataset>.csv`, whose period the path gives.

1. Every answer (configuration, table list and search, table, metadata in fi/sv/en,
   default selection, data as JSON-stat 2.0 by GET and POST, code lists, a 400 and a 404)
   is validated with openapi-core against the PxWeb API 2.0 specification, the API's
   server being BASE_URL. Three defects of the specification that no answer could satisfy
   are corrected first (SPEC_FIXES, each with its reason).
2. The whole table is read with pxwebpy (`PxApi.get_table_data_all`, every variable `*`)
   and every cell of each CSV's period is compared with the CSV: the same non-empty cells,
   each value equal (within 1e-9), empty and suppressed cells empty, and no figure where
   the CSV has no row.
3. The csv, xlsx (openpyxl) and PX answers of each period carry the same numbers.

Prints one JSON line: {"table", "periods", "schema_errors", "cells", "empty",
"suppressed", "mismatches", "checked", "format_mismatches", "search_found", "errors"};
all lists empty and "cells" > 0 is a pass. Nothing is fatal before the line is printed:
an exception lands in "errors".
"""
import argparse
import copy
import csv
import io
import json
import math
import re
import sys
import traceback
from pathlib import Path

import requests
import yaml

SPEC = Path(__file__).resolve().parents[2] / "shared/conformance/pxweb-api2/PxAPI-2.yml"
TIMEOUT = 60
LIMIT = 50  # mismatches kept per list
SYMBOLS = {"", ".", "..", "...", "....", ".....", "......", "-"}

# Corrections of the specification (commit 264f16c of PxTools/PxApiSpecs), each a defect
# that no answer can satisfy; everything else is validated as written.
SPEC_FIXES = [
    "VariableSelection.required names `values`, a property the schema does not have: its "
    "property is `valueCodes` (what clients send and servers answer)",
    "Table.updated has a pattern admitting a date only beside `format: date-time`, which "
    "requires a time: no value but null satisfies both; the pattern is dropped",
    "the 200 answer of /tables/{id}/data is `type: string` for application/json; a "
    "json-stat2 answer is a JSON-stat object, validated against Dataset instead",
]


def fixed_spec(path, server):
    spec = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    spec = copy.deepcopy(spec)
    spec["servers"] = [{"url": server}]
    schemas = spec["components"]["schemas"]
    schemas["VariableSelection"]["required"] = [
        "valueCodes" if r == "values" else r for r in schemas["VariableSelection"]["required"]
    ]
    schemas["Table"]["properties"]["updated"].pop("pattern", None)
    for method in ("get", "post"):
        content = spec["paths"]["/tables/{id}/data"][method]["responses"]["200"]["content"]
        content["application/json"]["schema"] = {"$ref": "#/components/schemas/Dataset"}
    return spec


def validator(spec_path, server):
    from jsonschema_path import SchemaPath
    from openapi_core import Config, OpenAPI

    spec = fixed_spec(spec_path, server)
    config = Config(extra_media_type_deserializers={"application/problem+json": json.loads})
    return OpenAPI(SchemaPath.from_dict(spec, base_uri=Path(spec_path).resolve().as_uri()), config=config)


def describe(e):
    """A validation error with the schema errors under it, shortened."""
    parts = [f"{type(e).__name__}: {e}"]
    cause = e.__cause__
    while cause is not None:
        for s in getattr(cause, "schema_errors", []) or []:
            where = "/".join(str(p) for p in getattr(s, "absolute_path", []))
            parts.append(f"at /{where}: {getattr(s, 'message', s)}")
        cause = cause.__cause__
    return " | ".join(p[:300] for p in parts)


# ---- published and answered tables as cells ------------------------------------------


def number(text):
    """A cell as a float, None for empty cells and symbols; a decimal comma is read too."""
    if text is None:
        return None
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        return None if isinstance(text, float) and math.isnan(text) else float(text)
    text = str(text).strip().strip('"')
    if text in SYMBOLS:
        return None
    return float(text.replace(",", "."))


def period_of(path):
    parts = Path(path).parts
    if len(parts) < 5 or parts[-5] != "releases":
        raise ValueError(f"{path} is not releases/<line>/<period>/<run>/<dataset>.csv")
    return parts[-3]


def read_published(text, dims, measures):
    """The published CSV as cells {(dim codes…, measure): value}, with the rows
    suppressed and the measures it has."""
    first = text.splitlines()[0] if text else ""
    delimiter = ";" if first.count(";") > first.count(",") else ","
    rows = list(csv.DictReader(io.StringIO(text), delimiter=delimiter))
    header = rows[0].keys() if rows else next(csv.reader(io.StringIO(first), delimiter=delimiter), [])
    present = [m for m in measures if m in header]
    cells, suppressed = {}, 0
    for row in rows:
        key = tuple(row[d] for d in dims)
        suppressed += row.get("status") == "suppressed"
        for m in present:
            cells[key + (m,)] = number(row[m])
    return cells, suppressed, present


def compare(label, published, answered, present):
    """Mismatches between the published cells and the cells an answer gives for the same
    period ({(dim codes…, measure): value}); a cell the CSV has no row for must be empty,
    as must every cell of a measure the period's release lacks."""
    out = []
    for key, want in published.items():
        got = answered.get(key)
        if want is None and got is not None:
            out.append(f"{label} {key}: published empty, answered {got}")
        elif want is not None and (got is None or not math.isclose(want, got, rel_tol=1e-9, abs_tol=1e-9)):
            out.append(f"{label} {key}: published {want}, answered {got}")
    for key, got in answered.items():
        if key not in published and got is not None:
            why = "a measure the release lacks" if key[-1] not in present else "no published row"
            out.append(f"{label} {key}: {why}, answered {got}")
    filled = sum(v is not None for v in published.values())
    answered_filled = sum(v is not None for v in answered.values())
    if filled != answered_filled:
        out.append(f"{label}: {filled} published cells, {answered_filled} answered")
    return out


def parse_px(text):
    """A PX file: {keyword: [values]} (subkeys kept in the keyword, the parts of a long
    text joined) and the data tokens."""
    keys, data, i, n = {}, [], 0, len(text)

    def until(stop, j):
        quoted = False
        while j < n:
            c = text[j]
            if c == '"':
                quoted = not quoted
            elif c == stop and not quoted:
                return j
            j += 1
        return n

    while i < n:
        eq = until("=", i)
        key = text[i:eq].strip()
        end = until(";", eq + 1)
        value = text[eq + 1:end]
        i = end + 1
        if not key:
            continue
        if key == "DATA":
            data = re.findall(r'"[^"]*"|[^\s"]+', value)
            continue
        values, current = [], None
        for token in re.findall(r'"[^"]*"|,|[^\s,"]+', value):
            if token == ",":
                values.append(current or "")
                current = None
            elif token.startswith('"'):
                current = (current or "") + token[1:-1]
            else:
                current = (current or "") + token
        if current is not None:
            values.append(current)
        keys[key] = values
    return keys, data


def px_cells(text):
    """A PX answer as cells {(period, dim codes…, measure): value}."""
    keys, data = parse_px(text)
    names = keys.get("STUB", []) + keys.get("HEADING", [])
    code_of = {name: (keys.get(f'VARIABLECODE("{name}")') or [name])[0] for name in names}
    codes = [keys[f'CODES("{name}")'] for name in names]
    cells, sizes = {}, [len(c) for c in codes]
    for index, token in enumerate(data):
        position, rest = [], index
        for size in reversed(sizes):
            position.append(rest % size)
            rest //= size
        position.reverse()
        cells[tuple(codes[k][p] for k, p in enumerate(position))] = number(token)
    total = math.prod(sizes) if sizes else 0
    if len(data) != total:
        raise ValueError(f"PX: {len(data)} cells for {total}")
    order = [code_of[name] for name in names]
    return cells, order


def table_cells(header, rows, stub):
    """csv or xlsx rows laid out as published (the stub's codes down, measures across) as
    cells {(period, dim codes…, measure): value}."""
    header = [str(h) for h in header]
    if header[: len(stub)] != list(stub):
        raise ValueError(f"columns {header[: len(stub)]}, expected {stub}")
    cells = {}
    for row in rows:
        if not row or all(v in (None, "") for v in row):
            continue
        key = tuple(str(v) for v in row[: len(stub)])
        for j, h in enumerate(header[len(stub):], start=len(stub)):
            cells[key + (h,)] = number(row[j])
    return cells


# ---- the client side ------------------------------------------------------------------


class Run:
    def __init__(self, base, table, spec):
        self.base = base.rstrip("/")
        if not self.base.endswith("/api/v2"):
            self.base += "/api/v2"
        self.table = table
        self.spec = spec
        self.openapi = validator(spec, self.base)
        self.summary = {
            "table": table,
            "periods": [],
            "spec_fixes": SPEC_FIXES,
            "schema_errors": [],
            "cells": 0,
            "empty": 0,
            "suppressed": 0,
            "mismatches": [],
            "checked": {"csv": 0, "xlsx": 0, "px": 0},
            "format_mismatches": [],
            "search_found": False,
            "errors": [],
        }

    def call(self, name, method, path, expect=200, **kw):
        """One answer, validated against the specification."""
        from openapi_core.contrib.requests import RequestsOpenAPIRequest, RequestsOpenAPIResponse

        r = requests.request(method, self.base + path, timeout=TIMEOUT, **kw)
        if r.status_code != expect:
            self.summary["schema_errors"].append(f"{name}: status {r.status_code}, expected {expect}: {r.text[:200]}")
        try:
            self.openapi.validate_response(RequestsOpenAPIRequest(r.request), RequestsOpenAPIResponse(r))
        except Exception as e:  # noqa: BLE001 — every failure is reported, none stops the run
            self.summary["schema_errors"].append(f"{name}: {describe(e)}")
        return r

    def step(self, what, f, *args):
        try:
            return f(*args)
        except Exception as e:  # noqa: BLE001
            self.summary["errors"].append(f"{what}: {type(e).__name__}: {e} {traceback.format_exc(limit=2)[-300:]}")
            return None

    def answers(self):
        """Every kind of answer, validated; returns the metadata."""
        t = self.table
        self.call("config", "get", "/config")
        self.call("tables", "get", "/tables", params={"lang": "fi"})
        found = self.call("search", "get", "/tables", params={"lang": "fi", "query": t}).json()
        self.summary["search_found"] = any(x.get("id") == t for x in found.get("tables", []))
        self.call("table", "get", f"/tables/{t}", params={"lang": "sv"})
        for lang in ("sv", "en"):
            self.call(f"metadata {lang}", "get", f"/tables/{t}/metadata", params={"lang": lang})
        meta = self.call("metadata fi", "get", f"/tables/{t}/metadata", params={"lang": "fi"}).json()
        self.call("defaultselection", "get", f"/tables/{t}/defaultselection", params={"lang": "fi"})
        self.call("data default", "get", f"/tables/{t}/data", params={"lang": "fi"})
        for dim in meta.get("dimension", {}).values():
            for cl in dim.get("extension", {}).get("codelists", []):
                self.call(f"codelist {cl['id']}", "get", f"/codelists/{cl['id']}", params={"lang": "en"})
        self.call("bad language", "get", f"/tables/{t}/data", expect=400, params={"lang": "xx"})
        self.call("bad code", "get", f"/tables/{t}/data", expect=400, params={"valueCodes[jakso]": "1899-01"})
        self.call("no table", "get", "/tables/no_such_table_here", expect=404)
        return meta

    def period(self, meta, csv_path):
        """Checks one period: pxwebpy's cells (read once, `self.client_cells`), then the
        GET and POST JSON-stat, csv, xlsx and PX answers, against the published CSV."""
        period = period_of(csv_path)
        self.summary["periods"].append(period)
        time = meta["role"]["time"][0]
        metric = meta["role"]["metric"][0]
        dims = [d for d in meta["id"] if d not in (time, metric)]
        measures = list(meta["dimension"][metric]["category"]["index"])
        published, suppressed, present = read_published(Path(csv_path).read_text(encoding="utf-8"), dims, measures)
        published = {(period,) + k: v for k, v in published.items()}
        self.summary["suppressed"] += suppressed
        self.summary["cells"] += sum(v is not None for v in published.values())
        self.summary["empty"] += sum(v is None for v in published.values())
        mine = {k: v for k, v in self.client_cells.items() if k[0] == period}
        self.summary["mismatches"] += compare("pxwebpy", published, mine, present)[:LIMIT]
        selection = {time: [period], **{d: ["*"] for d in dims}, metric: ["*"]}
        query = {f"valueCodes[{k}]": ",".join(v) for k, v in selection.items()}
        got = self.call(f"data GET {period}", "get", f"/tables/{self.table}/data", params={"lang": "fi", **query})
        body = {"selection": [{"variableCode": k, "valueCodes": v} for k, v in selection.items()]}
        posted = self.call(
            f"data POST {period}", "post", f"/tables/{self.table}/data",
            params={"lang": "fi", "outputFormat": "json-stat2"}, json=body,
        )
        for name, r in (("GET", got), ("POST", posted)):
            cells = jsonstat_cells(r.json())
            self.summary["format_mismatches"] += compare(f"json-stat2 {name}", published, cells, present)[:LIMIT]
        for fmt in ("csv", "xlsx", "px"):
            r = requests.get(
                f"{self.base}/tables/{self.table}/data", timeout=TIMEOUT,
                params={"lang": "fi", "outputFormat": fmt, **query},
            )
            if r.status_code != 200:
                self.summary["format_mismatches"].append(f"{fmt}: status {r.status_code}: {r.text[:200]}")
                continue
            cells = self.step(f"read {fmt}", format_cells, fmt, r, [time] + dims)
            if cells is None:
                continue
            self.summary["checked"][fmt] += sum(v is not None for v in cells.values())
            self.summary["format_mismatches"] += compare(fmt, published, cells, present)[:LIMIT]

    def client(self, meta):
        """The whole table through pxwebpy, as cells {(period, dim codes…, measure): value}."""
        from pxweb import PxApi

        api = PxApi(self.base, language="fi", disable_cache=True)
        records = api.get_table_data_all(self.table, show="code")
        by_label = {dim["label"]: code for code, dim in meta["dimension"].items()}
        order = meta["id"]
        cells = {}
        for record in records:
            codes = {by_label[k]: v for k, v in record.items() if k != "value"}
            cells[tuple(str(codes[d]) for d in order)] = number(record["value"])
        # The key is (period, dims…, measure) when the metric is last, as the API orders it.
        self.client_cells = cells
        return cells


def jsonstat_cells(doc):
    """A JSON-stat 2.0 dataset as cells {(codes in `id` order): value}."""
    ids, sizes = doc["id"], doc["size"]
    codes = []
    for d in ids:
        index = doc["dimension"][d]["category"]["index"]
        codes.append(sorted(index, key=index.get) if isinstance(index, dict) else list(index))
    cells = {}
    values = doc["value"]
    for i, v in enumerate(values):
        position, rest = [], i
        for size in reversed(sizes):
            position.append(rest % size)
            rest //= size
        position.reverse()
        cells[tuple(codes[k][p] for k, p in enumerate(position))] = number(v)
    return cells


def format_cells(fmt, response, stub_codes):
    """A csv, xlsx or PX answer as cells {(period, dim codes…, measure): value}."""
    if fmt == "csv":
        rows = list(csv.reader(io.StringIO(response.content.decode("utf-8"))))
        return table_cells(rows[0], rows[1:], stub_codes)
    if fmt == "xlsx":
        import openpyxl

        book = openpyxl.load_workbook(io.BytesIO(response.content), read_only=True, data_only=True)
        rows = [list(r) for r in book["data"].iter_rows(values_only=True)]
        return table_cells(rows[0], rows[1:], stub_codes)
    cells, order = px_cells(response.content.decode("utf-8"))
    expected = stub_codes + [order[-1]]
    if order != expected:
        raise ValueError(f"PX variables {order}, expected {expected}")
    return cells


def self_test():
    """The parsing helpers on small fixtures (no daemon needed)."""
    published = "hyvinvointialue,kiireellisyys,tehtavat,osuus,status\n01,A,12,0.5,\n01,B,,,suppressed\nSSS,A,40,0.25,\n"
    cells, suppressed, present = read_published(published, ["hyvinvointialue", "kiireellisyys"], ["tehtavat", "osuus", "uusi"])
    assert cells[("01", "A", "tehtavat")] == 12.0 and cells[("01", "B", "osuus")] is None, cells
    assert suppressed == 1 and present == ["tehtavat", "osuus"]
    finnish, _, _ = read_published("alue;osuus;status\n01;0,5;\n", ["alue"], ["osuus"])
    assert finnish == {("01", "osuus"): 0.5}
    px = (
        'AXIS-VERSION="2013";\nSTUB="Jakso","Alue";\nHEADING="Tiedot";\n'
        'TITLE="pitkä"\n"otsikko; ei";\n'
        'CODES("Jakso")="2025-03";\nCODES("Alue")="01","SSS";\nCODES("Tiedot")="n","osuus";\n'
        'VARIABLECODE("Jakso")="jakso";\nVARIABLECODE("Alue")="alue";\nVARIABLECODE("Tiedot")="tiedot";\n'
        'TIMEVAL("Jakso")=TLIST(M1),"202503";\n'
        'DATA=\n12 0.5 \n".." "..." \n;\n'
    )
    keys, data = parse_px(px)
    assert keys["TITLE"] == ["pitkäotsikko; ei"], keys["TITLE"]
    assert keys['TIMEVAL("Jakso")'] == ["TLIST(M1)", "202503"], keys
    assert data == ["12", "0.5", '".."', '"..."'], data
    cells, order = px_cells(px)
    assert order == ["jakso", "alue", "tiedot"]
    assert cells == {("2025-03", "01", "n"): 12.0, ("2025-03", "01", "osuus"): 0.5,
                     ("2025-03", "SSS", "n"): None, ("2025-03", "SSS", "osuus"): None}, cells
    got = table_cells(["jakso", "alue", "n"], [["2025-03", "01", 3], ["2025-03", "SSS", ".."]], ["jakso", "alue"])
    assert got == {("2025-03", "01", "n"): 3.0, ("2025-03", "SSS", "n"): None}
    doc = {"id": ["jakso", "tiedot"], "size": [1, 2], "value": [1, None],
           "dimension": {"jakso": {"category": {"index": {"2025": 0}}},
                         "tiedot": {"category": {"index": {"b": 1, "a": 0}}}}}
    assert jsonstat_cells(doc) == {("2025", "a"): 1.0, ("2025", "b"): None}
    want = {("2025", "a"): 1.0, ("2025", "b"): None}
    assert compare("x", want, {("2025", "a"): 1.0 + 1e-12, ("2025", "b"): None}, ["a", "b"]) == []
    assert compare("x", want, {("2025", "a"): 2.0, ("2025", "b"): None}, ["a", "b"])
    assert compare("x", want, {("2025", "a"): 1.0, ("2025", "b"): 0.0}, ["a", "b"])
    assert compare("x", want, {**want, ("2026", "a"): 5.0}, ["a", "b"])
    # A measure the period's release lacks must be empty in the answer.
    assert compare("x", want, {**want, ("2025", "c"): 1.0}, ["a", "b"])[0].endswith("a measure the release lacks, answered 1.0")
    spec = fixed_spec(SPEC, "http://127.0.0.1:1/api/v2") if SPEC.exists() else None
    if spec:
        assert "valueCodes" in spec["components"]["schemas"]["VariableSelection"]["required"]
    print("self-test passed")


def main():
    if sys.argv[1:] == ["--self-test"]:
        self_test()
        return
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("base_url")
    p.add_argument("table")
    p.add_argument("published_csv", nargs="+")
    p.add_argument("--spec", default=str(SPEC))
    a = p.parse_args()
    run = None
    try:
        run = Run(a.base_url, a.table, a.spec)
        run.client_cells = {}
        meta = run.step("answers", run.answers)
        if meta is not None:
            run.step("pxwebpy", run.client, meta)
            for path in a.published_csv:
                run.step(f"period of {path}", run.period, meta, path)
        summary = run.summary
    except Exception as e:  # noqa: BLE001 — the summary line is printed whatever happens
        summary = run.summary if run else {"table": a.table, "schema_errors": [], "mismatches": [], "errors": []}
        summary["errors"].append(f"{type(e).__name__}: {e}")
    for k in ("mismatches", "format_mismatches"):
        if k in summary and len(summary[k]) > LIMIT:
            summary[k] = summary[k][:LIMIT] + [f"… {len(summary[k]) - LIMIT} more"]
    print(json.dumps(summary, ensure_ascii=False))


if __name__ == "__main__":
    main()
