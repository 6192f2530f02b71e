"""Plumbing shared by the DuckDB pipelines of the benchmark: arguments, the connection (two
threads, like the machine the benchmark runs on), SQL macros for the rules several lines
apply (a Finnish identity code, a Finnish local time that names one instant), the cube of
totals and primary suppression, and the CSV written for comparison.

Nothing here imports the engine: the pipelines are an independent implementation of the
lines' data definitions (LINES.md, lines/*.yaml), written as plain DuckDB SQL."""
import datetime
import os
import sys
from pathlib import Path

import duckdb

ROOT = Path(__file__).resolve().parents[3]
# The shared reference files beside the repository (VALTAVA_SHARED overrides, as in tests/independent.py).
REFERENCE = Path(os.environ.get("VALTAVA_SHARED", ROOT.parent / "shared")) / "reference"
KUNNAT = REFERENCE / "kunta_hyvinvointialue_2023.csv"
ALUEET = REFERENCE / "hyvinvointialueet.csv"

MACROS = [
    # An identity code by DOMAIN.md: date (with the century of its sign), individual number
    # 002–999, check character. TRY_CAST throughout: SQL does not promise short-circuiting.
    """CREATE MACRO hetu_ok(h) AS length(h) = 11
         AND substr(h, 7, 1) IN ('+', '-', 'Y', 'X', 'W', 'V', 'U', 'A', 'B', 'C', 'D', 'E', 'F')
         AND regexp_full_match(substr(h, 1, 6) || substr(h, 8, 3), '[0-9]{9}')
         AND TRY_CAST(printf('%04d-%s-%s',
               CASE WHEN substr(h, 7, 1) = '+' THEN 1800 WHEN substr(h, 7, 1) IN ('A', 'B', 'C', 'D', 'E', 'F') THEN 2000 ELSE 1900 END
                 + TRY_CAST(substr(h, 5, 2) AS INTEGER), substr(h, 3, 2), substr(h, 1, 2)) AS DATE) IS NOT NULL
         AND TRY_CAST(substr(h, 8, 3) AS INTEGER) >= 2
         AND substr('0123456789ABCDEFHJKLMNPRSTUVWXY',
               (TRY_CAST(substr(h, 1, 6) || substr(h, 8, 3) AS BIGINT) % 31)::INTEGER + 1, 1) = substr(h, 11, 1)""",
    # round() as the engine computes it for a double: scaled, rounded half away from zero,
    # scaled back (DuckDB's round rounds the exact binary value: 2.05 → 2.0, not 2.1).
    "CREATE MACRO sql_round(x, d) AS sign(x) * floor(abs(x * pow(10, d)) + 0.5) / pow(10, d)",
    # Finnish local time <-> instant.
    "CREATE MACRO instant(t) AS timezone('Europe/Helsinki', t)",
    "CREATE MACRO wall(i) AS timezone('Europe/Helsinki', i)",
    # A local time the clocks skipped (spring) or showed twice (autumn) names no one instant.
    """CREATE MACRO one_instant(t) AS wall(instant(t)) = t
         AND wall(instant(t) + INTERVAL 1 HOUR) <> t AND wall(instant(t) - INTERVAL 1 HOUR) <> t""",
    # A code-set row valid on a day (empty bounds are open).
    """CREATE MACRO valid_on(valid_from, valid_to, day) AS
         (valid_from IS NULL OR CAST(valid_from AS DATE) <= day) AND (valid_to IS NULL OR day <= CAST(valid_to AS DATE))""",
]


def args():
    """STORE PERIOD OUT_DIR from the command line."""
    store, period, out = sys.argv[1:4]
    Path(out).mkdir(parents=True, exist_ok=True)
    return Path(store), period, Path(out)


def connect():
    con = duckdb.connect()
    con.execute("SET threads TO 2")
    for m in MACROS:
        con.execute(m)
    return con


def text(value):
    """A SQL string literal."""
    return "'" + str(value).replace("'", "''") + "'"


def key():
    """The pseudonymisation key as a SQL literal (the same environment variable Valtava reads)."""
    return text(os.environ.get("VALTAVA_PSEUDONYM_KEY", ""))


def csv_files(store, line, period):
    """read_csv of every CSV file of the line's inbox for the period, all text, with each
    row's position (file name order, then row order): uniqueness keeps the first. A row
    with the wrong number of fields is left out (the line quarantines it)."""
    glob = text(Path(store) / f"inbox/{line}/{period}/*.csv")
    return f"(SELECT *, row_number() OVER () AS nr FROM read_csv({glob}, delim=';', header=true, all_varchar=true, ignore_errors=true))"


def period_days(period):
    """(first day, last day) of a month YYYY-MM, quarter YYYY-Qn, half-year YYYY-Hn or year YYYY."""
    year = int(period[:4])
    if len(period) == 4:
        first_month, months = 1, 12
    elif period[5] == "Q":
        first_month, months = 3 * int(period[6]) - 2, 3
    elif period[5] == "H":
        first_month, months = 6 * int(period[6]) - 5, 6
    else:
        first_month, months = int(period[5:7]), 1
    first = datetime.date(year, first_month, 1)
    after_month = first_month + months
    after = datetime.date(year + (after_month - 1) // 12, (after_month - 1) % 12 + 1, 1)
    return first, after - datetime.timedelta(days=1)


def cube(dims, area):
    """The dimension columns of a GROUP BY CUBE, totals coded as Valtava publishes them:
    SSS for the area, YHT for the others."""
    return ", ".join(
        f"CASE WHEN grouping({d}) = 1 THEN '{'SSS' if d == area else 'YHT'}' ELSE {d} END AS {d}" for d in dims)


def publish(con, cells, out, dataset, dims, measures, deciding, own=None, min_count=5):
    """Writes OUT/<dataset>.csv from the query `cells` (dimensions, measures and deciding
    counts): primary suppression as the line's publish step does it. A cell where any
    `deciding` count is 1 … min_count − 1 has every measure empty and status `suppressed`;
    a measure of `own` ({measure: its count}) is emptied, and its status_<measure> marked,
    also where its own (unpublished) count is small. `deciding=None`: disclosure off, no
    status column."""
    own = own or {}
    small = lambda c: f"({c} BETWEEN 1 AND {min_count - 1})"
    cols = list(dims)
    if deciding is None:
        cols += measures
    else:
        whole = " OR ".join(small(c) for c in deciding)
        for m in measures:
            hide = f"{whole} OR {small(own[m])}" if m in own else whole
            cols.append(f"CASE WHEN {hide} THEN NULL ELSE {m} END AS {m}")
        cols.append(f"CASE WHEN {whole} THEN 'suppressed' END AS status")
        cols += [f"CASE WHEN {whole} OR {small(c)} THEN 'suppressed' END AS status_{m}" for m, c in own.items()]
    target = text(Path(out) / f"{dataset}.csv")
    con.execute(f"COPY (SELECT {', '.join(cols)} FROM ({cells}) ORDER BY {', '.join(dims)}) "
                f"TO {target} (FORMAT csv, HEADER)")
