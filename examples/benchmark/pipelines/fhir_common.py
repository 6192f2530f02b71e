"""What the hand-written DuckDB pipelines of rokotukset, diabetes, sosiaalihuolto and talous
share: the command line (STORE PERIOD OUT_DIR), the reference files, a DuckDB connection
with the engine's functions as SQL macros (identity-code check, keyed pseudonym, FHIR
reference, a date-time's day, rounding), the FHIRPath first-value helper, and the
publishing of a cube of totals with primary suppression.

Each pipeline does the work its line does (the same rules, maps, pseudonyms, cube and
disclosure control), so that timing it against Valtava is fair; secondary suppression is
left out (Valtava may hide more cells, never fewer: the benchmark skips the cells Valtava
marks suppressed)."""
import os
import sys
from pathlib import Path

import duckdb

ROOT = Path(__file__).resolve().parents[3]
# The shared reference files beside the repository (VALTAVA_SHARED overrides, as for the
# tests: a work tree elsewhere has none beside it).
REFERENCE = Path(os.environ.get("VALTAVA_SHARED", ROOT.parent / "shared")) / "reference"
KUNNAT = REFERENCE / "kunta_hyvinvointialue_2023.csv"
CODESETS = ROOT / "lines/codesets"
MUNICIPALITY = "https://hl7.fi/fhir/finnish-base-profiles/StructureDefinition/municipality-code"
HETU_SYSTEM = "urn:oid:1.2.246.21"

# The identity-code check of the `hetu` rule (DOMAIN.md): 11 ASCII characters, a real date
# DDMMYY with the century sign, individual number 002-999 (the lines' rules accept the
# temporary codes 900-999) and the check character. NULL passes (the rule checks a code
# when present).
HETU_MACRO = """
CREATE OR REPLACE MACRO hetu_ok(h) AS h IS NULL OR (
  regexp_full_match(h, '[0-9]{6}[-+YXWVUABCDEF][0-9]{3}.')
  AND TRY_CAST(printf('%04d-%s-%s',
        CASE WHEN substr(h, 7, 1) = '+' THEN 1800
             WHEN substr(h, 7, 1) IN ('A', 'B', 'C', 'D', 'E', 'F') THEN 2000 ELSE 1900 END
        + TRY_CAST(substr(h, 5, 2) AS INTEGER), substr(h, 3, 2), substr(h, 1, 2)) AS DATE) IS NOT NULL
  AND TRY_CAST(substr(h, 8, 3) AS INTEGER) BETWEEN 2 AND 999
  AND substr('0123456789ABCDEFHJKLMNPRSTUVWXY',
             CAST(TRY_CAST(substr(h, 1, 6) || substr(h, 8, 3) AS BIGINT) % 31 AS INTEGER) + 1, 1)
      = substr(h, 11, 1))
"""

# The birth date a valid identity code names.
HETU_BIRTH_MACRO = """
CREATE OR REPLACE MACRO hetu_birth(h) AS TRY_CAST(printf('%04d-%s-%s',
    CASE WHEN substr(h, 7, 1) = '+' THEN 1800
         WHEN substr(h, 7, 1) IN ('A', 'B', 'C', 'D', 'E', 'F') THEN 2000 ELSE 1900 END
    + TRY_CAST(substr(h, 5, 2) AS INTEGER), substr(h, 3, 2), substr(h, 1, 2)) AS DATE)
"""

# The keyed pseudonym of the harmonise step (the identifier trimmed and upper-cased).
PSEUDONYM_MACRO = "CREATE OR REPLACE MACRO pseudonym(h) AS sha256(getvariable('pseudonym_key') || upper(trim(h)))"

# FHIRPath `x.getReferenceKey(Patient)`: the id of a reference to a Patient, else NULL.
REFERENCE_MACRO = "CREATE OR REPLACE MACRO patient_key(r) AS nullif(regexp_extract(r, '(?:^|/)Patient/([^/]+)$', 1), '')"

# round(x, d) as the engine (DataFusion) computes it for a double: x scaled by 10^d, rounded
# half away from zero, scaled back. DuckDB's own round(x, d) rounds the double's exact
# decimal value (1227.05 is a little less: 1227.0, where the engine gives 1227.1).
SQL_ROUND_MACRO = "CREATE OR REPLACE MACRO sql_round(x, d) AS round(x * pow(10.0, d)) / pow(10.0, d)"

# A FHIR date-time as the day a code set's validity window is checked against: the engine
# casts the text to a date through UTC (a bare date is that day).
EVENT_DAY_MACRO = "CREATE OR REPLACE MACRO event_day(t) AS CAST(TRY_CAST(t AS TIMESTAMPTZ) AS DATE)"


def args():
    """STORE PERIOD OUT_DIR from the command line; OUT_DIR is made."""
    if len(sys.argv) != 4:
        sys.exit(f"usage: {sys.argv[0]} STORE PERIOD OUT_DIR")
    store, period, out = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
    out.mkdir(parents=True, exist_ok=True)
    return store, period, out


def connect():
    """A DuckDB connection of two threads, UTC, with the macros above."""
    con = duckdb.connect()
    con.execute("SET threads TO 2")
    con.execute("SET TimeZone = 'UTC'")
    con.execute("SET enable_progress_bar = false")
    con.execute("SET VARIABLE pseudonym_key = ?", [os.environ.get("VALTAVA_PSEUDONYM_KEY", "")])
    for macro in (HETU_MACRO, HETU_BIRTH_MACRO, PSEUDONYM_MACRO, REFERENCE_MACRO, EVENT_DAY_MACRO,
                  SQL_ROUND_MACRO):
        con.execute(macro)
    return con


def first_where(items, condition, value):
    """SQL of FHIRPath `items.where(<condition>).<value>.first()`: the first non-null `value`
    of the elements `e` of list `items` for which `condition` (SQL over `e`) holds."""
    return (f"list_filter(list_transform(list_filter({items}, lambda e: {condition}), "
            f"lambda e: e.{value}), lambda v: v IS NOT NULL)[1]")


def cube(dims, area, measures, source):
    """SQL of the cube of totals over `source`: every combination of `dims`, the area's
    total `SSS` and the others' `YHT`; `measures` are SQL aggregates by name."""
    cols = [f"CASE WHEN grouping({d}) = 1 THEN '{'SSS' if d == area else 'YHT'}' ELSE CAST({d} AS VARCHAR) END AS {d}"
            for d in dims]
    cols += [f"{sql} AS {name}" for name, sql in measures.items()]
    return f"SELECT {', '.join(cols)} FROM {source} GROUP BY CUBE ({', '.join(dims)})"


def publish(con, cells, dims, measures, out, min_count=5, deciding=()):
    """Writes the cells (SQL with columns `dims` + `measures`) as `out`, sorted by the
    dimensions: where a deciding count is 1 ... min_count - 1 every measure is empty and
    `status` is `suppressed` (with disclosure control on, i.e. `deciding` given, as
    Valtava's CSV has the `status` column then)."""
    if deciding:
        hidden = " OR ".join(f"{c} BETWEEN 1 AND {min_count - 1}" for c in deciding)
        cols = dims + [f"CASE WHEN hidden THEN NULL ELSE {m} END AS {m}" for m in measures]
        cols.append("CASE WHEN hidden THEN 'suppressed' END AS status")
        query = f"SELECT {', '.join(cols)} FROM (SELECT *, {hidden} AS hidden FROM ({cells}))"
    else:
        query = f"SELECT {', '.join(dims + measures)} FROM ({cells})"
    con.execute(f"COPY ({query} ORDER BY {', '.join(dims)}) TO '{out}' (FORMAT csv, HEADER true)")
