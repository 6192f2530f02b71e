#!/usr/bin/env python3
"""Benchmark: the ensihoito line in Valtava against the same pipeline in DuckDB and pandas,
the FHIR views of the vaccination line against DuckDB read_json, and `valtava check`; or
(`--lines`) every shipped line at national volume against an independent DuckDB pipeline
(pipelines/<line>.py), the published numbers compared cell for cell.

    python3 examples/benchmark/bench.py --rows 1000000 10000000 --memory-limit 1G
    python3 examples/benchmark/bench.py --rows 50000000 --skip duckdb pandas --fhir --check-runs 0
    python3 examples/benchmark/bench.py --lines all [--scale 0.01] [--memory-limit 1G]

Builds nothing: expects `target/release/valtava` (cargo build --release). For each size it
generates input with `valtava generate` (1 % bad rows), then runs, each in a fresh process:
  valtava  the whole line (parse, rules, county mapping, HMAC pseudonyms, cube aggregation,
           disclosure control, Parquet/CSV/JSON-stat, quarantine, reports),
  duckdb   pipelines/ensihoito.py, SQL over the same CSV: the same rules (identity-code check
           in SQL), county mapping, a keyed hash of the identity code, the cube of totals,
           primary suppression, CSV out,
  pandas   the same in pandas.
and prints wall time, rows per second, peak memory (max RSS) and the ratios. Before each
tool its input files are read once, so that each starts with them in the page cache.

`--lines` generates each line's input once into one store (1 % bad rows), runs the line in
Valtava and then its DuckDB pipeline in a fresh process, alternating, `--runs` times (3;
valvonta last: it reads the other lines' releases), prints the medians of wall time, CPU
time (user + sys) and peak memory, the ratios
Valtava/DuckDB, checks that every published cell agrees (Valtava's suppressed cells aside:
the pipelines apply primary suppression only), and writes everything to <out>/lines.json.
"""
import argparse
import csv
import importlib.util
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PIPELINES = ROOT / "examples/benchmark/pipelines"
KEY = "benchmark-key-0123456789abcdef"

PANDAS = r"""
import hashlib, hmac, sys
import pandas as pd
src, out, kunnat, key = sys.argv[1:5]
CHECK = "0123456789ABCDEFHJKLMNPRSTUVWXY"
df = pd.read_csv(src, sep=";", dtype=str, keep_default_na=False, na_values=[""], on_bad_lines="skip")
# Finnish local times as instants; a time the clocks skipped or showed twice is NaT (the
# line quarantines it).
def finnish(s):
    t = pd.to_datetime(s, errors="coerce", format="%Y-%m-%dT%H:%M:%S")
    return t, t.dt.tz_localize("Europe/Helsinki", ambiguous="NaT", nonexistent="NaT")
_, df["h"] = finnish(df["halytys_aika"])
k0, df["k"] = finnish(df["kohteessa_aika"])
df["kulj"] = pd.to_numeric(df["kuljetettu"], errors="coerce")
df = df[df["tehtava_id"].notna() & df["h"].notna() & (k0.isna() | df["k"].notna())]
df = df[~df.duplicated("tehtava_id")]
def hetu_ok(h):
    if not isinstance(h, str):
        return True
    if len(h) != 11 or not (h[:6] + h[7:10]).isdigit():
        return False
    return CHECK[int(h[:6] + h[7:10]) % 31] == h[10]
m = pd.read_csv(kunnat, dtype=str)[["kunta", "hyvinvointialue"]]
df = df.merge(m, on="kunta", how="inner")
df = df[df["kiireellisyys"].isin(list("ABCD")) & (df["kuljetettu"].isna() | df["kulj"].isin([0, 1]))]
first, after = (pd.Timestamp(d, tz="Europe/Helsinki") for d in ("2025-03-01", "2025-04-01"))
df = df[(df["k"].isna() | (df["k"] >= df["h"])) & (df["h"] >= first) & (df["h"] < after)]
df = df[df["hetu"].map(hetu_ok)]
k = key.encode()
df["pseudonym"] = df["hetu"].map(lambda h: hmac.new(k, h.encode(), hashlib.sha256).hexdigest() if isinstance(h, str) else None)
df["minutes"] = (df["k"] - df["h"]).dt.total_seconds() // 60
df["kuukausi"] = df["h"].dt.strftime("%Y-%m")
df["kuljetettu1"] = (df["kulj"] == 1).astype(float)
dims = ["hyvinvointialue", "kuukausi", "kiireellisyys"]
parts = []
for mask in range(8):
    keep = [d for i, d in enumerate(dims) if not mask & (1 << i)]
    g = df.groupby(keep) if keep else df.assign(_all=1).groupby("_all")
    r = g.agg(tehtavat=("tehtava_id", "size"), potilaat=("pseudonym", "nunique"), mediaani=("minutes", "median"),
              kuljetettu_osuus=("kuljetettu1", "mean")).reset_index()
    for i, d in enumerate(dims):
        if mask & (1 << i):
            r[d] = "SSS" if d == "hyvinvointialue" else "YHT"
    parts.append(r[dims + ["tehtavat", "potilaat", "mediaani", "kuljetettu_osuus"]])
res = pd.concat(parts).sort_values(dims)
res["kuljetettu_osuus"] = (100 * res["kuljetettu_osuus"]).round(1)
res.to_parquet(out)
"""


DUCKDB_FHIR = r"""
import duckdb, sys
inbox, out = sys.argv[1:3]
con = duckdb.connect()
con.execute("SET threads TO 2")
MUNICIPALITY = "https://hl7.fi/fhir/finnish-base-profiles/StructureDefinition/municipality-code"
con.execute(f'''
COPY (
  SELECT id, TRY_CAST(birthDate AS DATE) AS syntymapaiva, deceasedDateTime AS kuollut,
         deceasedBoolean AS kuollut_tieto,
         list_filter(extension, lambda e: e.url = '{MUNICIPALITY}')[1].valueCoding.code AS kunta
  FROM read_json('{inbox}/Patient*.ndjson', format = 'newline_delimited', ignore_errors = true, columns = {{
    id: 'VARCHAR', birthDate: 'VARCHAR', deceasedDateTime: 'VARCHAR', deceasedBoolean: 'BOOLEAN',
    extension: 'STRUCT(url VARCHAR, valueCoding STRUCT(system VARCHAR, code VARCHAR))[]'}})
  WHERE id IS NOT NULL AND TRY_CAST(birthDate AS DATE) IS NOT NULL
) TO '{out}/duckdb_potilaat.parquet' (FORMAT parquet)''')
con.execute(f'''
COPY (
  SELECT replace(patient.reference, 'Patient/', '') AS potilas, status AS tila,
         occurrenceDateTime AS pvm, c.code AS koodi
  FROM read_json('{inbox}/Immunization*.ndjson', format = 'newline_delimited', ignore_errors = true, columns = {{
    patient: 'STRUCT(reference VARCHAR)', status: 'VARCHAR', occurrenceDateTime: 'VARCHAR',
    vaccineCode: 'STRUCT(coding STRUCT(system VARCHAR, code VARCHAR)[])'}}),
    unnest(vaccineCode.coding) AS t(c)
  WHERE patient.reference IS NOT NULL AND status IS NOT NULL AND c.code IS NOT NULL
) TO '{out}/duckdb_rokotukset.parquet' (FORMAT parquet)''')
"""


def warm(files):
    """Reads the input files once, so that every tool starts with them in the page cache:
    the tool measured first would otherwise read from disk what the next one finds cached
    (after the pandas run of 10 M rows the FHIR files were no longer cached: 5.6 s for
    Valtava, the first to read them, and 3.5-3.7 s once cached)."""
    for f in files:
        with open(f, "rb") as fh:
            while fh.read(8 << 20):
                pass


def measure(cmd, env=None, inputs=()):
    """Wall time, CPU time (user + sys) and peak RSS (MiB) of one command in a fresh
    process, its inputs cached."""
    warm(inputs)
    wrapper = (
        "import resource, subprocess, sys, time, json\n"
        "t = time.perf_counter()\n"
        "r = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)\n"
        "dt = time.perf_counter() - t\n"
        "u = resource.getrusage(resource.RUSAGE_CHILDREN)\n"
        "print(json.dumps({'seconds': dt, 'cpu_s': u.ru_utime + u.ru_stime, 'rss_mib': u.ru_maxrss / 1024, 'rc': r.returncode, 'err': r.stderr.decode()[-800:]}))\n"
    )
    out = subprocess.run([sys.executable, "-c", wrapper, *cmd], capture_output=True, text=True, env=env)
    return json.loads(out.stdout)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, nargs="*", default=[1_000_000, 10_000_000])
    ap.add_argument("--out", default="/tmp/valtava-bench")
    ap.add_argument("--skip", nargs="*", default=[], help="tools to skip: valtava duckdb pandas")
    ap.add_argument("--memory-limit", default=None, help="passed to valtava as VALTAVA_MEMORY_LIMIT")
    ap.add_argument("--fhir", type=int, nargs="*", default=[200_000],
                    help="patients of the FHIR flattening benchmark (about 5 immunisations each)")
    ap.add_argument("--check-runs", type=int, default=10, help="fresh-process runs of `valtava check`")
    ap.add_argument("--lines", nargs="*", default=None,
                    help="instead: these lines (or `all`) at national volume against their DuckDB pipelines")
    ap.add_argument("--scale", type=float, default=1.0, help="multiplies the rows of --lines (0.01: a smoke test)")
    ap.add_argument("--runs", type=int, default=3,
                    help="alternating runs of each tool per line with --lines; the medians are reported")
    ap.add_argument("--binary", default=str(ROOT / "target/release/valtava"))
    a = ap.parse_args()
    binary = Path(a.binary)
    if not binary.exists():
        sys.exit("build first: cargo build --release")
    if a.lines is not None:
        bench_lines(a, binary)
        return
    results = {"ensihoito": [], "fhir": [], "check": None}
    bench_ensihoito(a, binary, results["ensihoito"])
    bench_fhir(a, binary, results["fhir"])
    if a.check_runs > 0:
        results["check"] = bench_check(a, binary)
    (Path(a.out) / "results.json").write_text(json.dumps(results, indent=2))


def table(n, row, tools, unit="rows"):
    print(f"  {'tool':<8} {'seconds':>9} {unit + '/s':>12} {'peak MiB':>9}  vs valtava")
    base = row.get("valtava", {}).get("seconds")
    for tool in tools:
        r = row.get(tool)
        if not r:
            continue
        ratio = f"{r['seconds'] / base:.2f}×" if base else ""
        status = "" if r["rc"] == 0 else f"  FAILED: {r['err'].strip()[-200:]}"
        print(f"  {tool:<8} {r['seconds']:>9.2f} {n / r['seconds']:>12,.0f} {r['rss_mib']:>9,.0f}  {ratio}{status}")


def bench_fhir(a, binary, results):
    """SQL-on-FHIR views over bulk NDJSON: Valtava against DuckDB read_json."""
    for n in a.fhir:
        store = Path(a.out) / f"fhir-{n}"
        inbox = store / "inbox/rokotukset/2025"
        if not (inbox / "Immunization.000.ndjson").exists():
            subprocess.run([binary, "generate", "rokotukset", "--period", "2025", "--rows", str(n), "--seed", "1",
                            "--bad-share", "0.01", "--out", store], check=True, stdout=subprocess.DEVNULL)
        files = sorted(inbox.glob("*.ndjson"))
        size = sum(f.stat().st_size for f in files)
        resources = 0
        for f in files:
            with open(f, "rb") as fh:
                resources += sum(1 for _ in fh)
        row = {"patients": n, "resources": resources, "bytes": size}
        env = dict(os.environ, RUST_LOG="warn")
        if a.memory_limit:
            env["VALTAVA_MEMORY_LIMIT"] = a.memory_limit
        if "valtava" not in a.skip:
            row["valtava"] = measure([str(binary), "run", str(ROOT / "examples/benchmark/fhir-views.yaml"),
                                      "--param", "period=2025", "--store", str(store)], env, files)
        if "duckdb" not in a.skip:
            row["duckdb"] = measure([sys.executable, "-c", DUCKDB_FHIR, str(inbox), str(store)], inputs=files)
        results.append(row)
        print(f"\nFHIR views: {resources:,} resources ({size / 2**20:,.0f} MiB of NDJSON)")
        table(resources, row, ("valtava", "duckdb"), "res")


def bench_check(a, binary):
    """`valtava check` of every line, each run a fresh process."""
    lines = sorted(str(p) for p in (ROOT / "lines").glob("*.yaml"))
    times = []
    for _ in range(a.check_runs):
        t = time.perf_counter()
        subprocess.run([binary, "check", *lines], check=True, stdout=subprocess.DEVNULL)
        times.append(time.perf_counter() - t)
    times.sort()
    r = {"lines": len(lines), "runs": len(times), "min_ms": times[0] * 1000,
         "median_ms": times[len(times) // 2] * 1000, "max_ms": times[-1] * 1000}
    print(f"\nvaltava check of {len(lines)} lines, {len(times)} fresh processes: "
          f"median {r['median_ms']:.0f} ms, max {r['max_ms']:.0f} ms")
    return r


def bench_ensihoito(a, binary, results):
    for n in a.rows:

        store = Path(a.out) / f"store-{n}"
        if not (store / "inbox/ensihoito/2025-03/tehtavat.csv").exists():
            subprocess.run([binary, "generate", "ensihoito", "--period", "2025-03", "--rows", str(n), "--seed", "1",
                            "--bad-share", "0.01", "--out", store], check=True, stdout=subprocess.DEVNULL)
        src = store / "inbox/ensihoito/2025-03/tehtavat.csv"
        size = src.stat().st_size
        row = {"rows": n, "bytes": size}
        env = dict(os.environ, VALTAVA_PSEUDONYM_KEY=KEY, RUST_LOG="warn")
        if a.memory_limit:
            env["VALTAVA_MEMORY_LIMIT"] = a.memory_limit
        if "valtava" not in a.skip:
            row["valtava"] = measure([str(binary), "run", str(ROOT / "lines/ensihoito.yaml"), "--param", "period=2025-03",
                                      "--store", str(store)], env, [src])
        if "duckdb" not in a.skip:
            row["duckdb"] = measure([sys.executable, str(PIPELINES / "ensihoito.py"), str(store), "2025-03",
                                     str(store / "duckdb")], dict(os.environ, VALTAVA_PSEUDONYM_KEY=KEY), [src])
        if "pandas" not in a.skip:
            row["pandas"] = measure([sys.executable, "-c", PANDAS, str(src), str(store / "pandas.parquet"),
                                     str(ROOT.parent / "shared/reference/kunta_hyvinvointialue_2023.csv"), KEY],
                                    inputs=[src])
        results.append(row)
        print(f"\nensihoito: {n:,} rows ({size / 2**20:,.0f} MiB of CSV)")
        table(n, row, ("valtava", "duckdb", "pandas"))



# line: (period, rows at national volume). Rows are what `valtava generate --rows` means for
# the line: missions, visits, unit-weeks, employments, assessments, answers, cases, patients
# (FHIR), documents (CDA); for talous the rows of one year's workbooks (22 counties × 13).
LINES = {
    "ensihoito": ("2025-03", 1_000_000),
    "hoitoonpaasy": ("2025-03", 2_000_000),
    "henkilostomitoitus": ("2025-Q1", 200_000),
    "henkilosto": ("2025-Q1", 200_000),
    "rai": ("2025-H1", 300_000),
    "asiakaskokemus": ("2025", 500_000),
    "rokotukset": ("2025", 300_000),
    "diabetes": ("2025", 300_000),
    "sosiaalihuolto": ("2025-H1", 50_000),
    "talous": ("2025", 286),
    "valvonta": ("2025-Q1", 100_000),
}
FIXED_SIZE = {"talous"}  # a year is 286 rows by definition: --scale does not change it
# Lines whose releases valvonta reads (valvonta_poikkeamat), with the periods it reads.
UPSTREAM = [("ensihoito", "2025-03"), ("hoitoonpaasy", "2025-03"), ("henkilostomitoitus", "2025-Q1")]


def bench_lines(a, binary):
    """Every line asked for, valvonta after its upstream lines; results to <out>/lines.json."""
    names = list(LINES) if a.lines in ([], ["all"]) else a.lines
    unknown = [n for n in names if n not in LINES]
    if unknown:
        sys.exit(f"unknown lines: {', '.join(unknown)}; lines: {', '.join(LINES)}")
    names.sort(key=list(LINES).index)
    store = Path(a.out) / f"lines-x{a.scale:g}"
    results = []
    for line in names:
        row = bench_line(a, binary, store, line)
        results.append(row)
        print_line(row)
    Path(a.out).mkdir(parents=True, exist_ok=True)
    (Path(a.out) / "lines.json").write_text(json.dumps(results, indent=2))
    print_summary(results)
    # The shipped binary is to stay under 100 MiB (issue 33).
    print(f"\nbinary {binary}: {Path(binary).stat().st_size / 2**20:.1f} MiB")


def line_rows(line, scale):
    rows = LINES[line][1]
    return rows if line in FIXED_SIZE else max(1, round(rows * scale))


def generate(binary, store, line, period, rows):
    """The line's input in the store, unless it is there already (the same seed makes the
    same bytes); returns its files."""
    inbox = store / "inbox" / line / period
    if not inbox.exists() or not any(inbox.iterdir()):
        subprocess.run([binary, "generate", line, "--period", period, "--rows", str(rows), "--seed", "1",
                        "--bad-share", "0.01", "--out", store], check=True, stdout=subprocess.DEVNULL)
    return sorted(f for f in inbox.rglob("*") if f.is_file())


def valtava_env(a):
    env = dict(os.environ, VALTAVA_PSEUDONYM_KEY=KEY, RUST_LOG="warn")
    if a.memory_limit:
        env["VALTAVA_MEMORY_LIMIT"] = a.memory_limit
    return env


def valtava_run(binary, store, line, period):
    return [str(binary), "run", str(ROOT / f"lines/{line}.yaml"), "--param", f"period={period}", "--store", str(store)]


def publish_upstream(a, binary, store):
    """valvonta reads the current releases of these lines: publish those missing (not measured)."""
    for line, period in UPSTREAM:
        if not (store / f"releases/{line}/{period}/latest.json").exists():
            generate(binary, store, line, period, line_rows(line, a.scale))
            subprocess.run(valtava_run(binary, store, line, period), env=valtava_env(a), check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def pipeline(line):
    """The DuckDB pipeline module of a line (DATASETS, DIMS), or None when there is none yet."""
    path = PIPELINES / f"{line}.py"
    if not path.exists():
        return None
    spec = importlib.util.spec_from_file_location(f"pipeline_{line}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def bench_line(a, binary, store, line):
    """One line against its DuckDB pipeline: `--runs` alternating fresh-process runs of each
    (the machine's load varies from minute to minute; alternating spreads it over both),
    their medians, and the published cells compared."""
    period, _ = LINES[line]
    rows = line_rows(line, a.scale)
    if line == "valvonta":
        publish_upstream(a, binary, store)
    files = generate(binary, store, line, period, rows)
    row = {"line": line, "period": period, "rows": rows, "bytes": sum(f.stat().st_size for f in files)}
    module = pipeline(line)
    out = store / "duckdb" / line / period
    commands = {}
    if "valtava" not in a.skip:
        commands["valtava"] = (valtava_run(binary, store, line, period), valtava_env(a))
    if module is not None and "duckdb" not in a.skip:
        commands["duckdb"] = ([sys.executable, str(PIPELINES / f"{line}.py"), str(store), period, str(out)],
                              dict(os.environ, VALTAVA_PSEUDONYM_KEY=KEY))
    runs = {tool: [] for tool in commands}
    for _ in range(max(1, a.runs)):
        for tool, (cmd, env) in commands.items():
            runs[tool].append(measure(cmd, env, files))
    row.update({tool: median_of(r) for tool, r in runs.items()})
    if module is None:
        row["agree"] = "no DuckDB pipeline yet"
        return row
    if row.get("valtava", {}).get("rc") == 0 and row.get("duckdb", {}).get("rc") == 0:
        row["datasets"] = {d: compare(release_csv(store, line, period, d), out / f"{d}.csv", module.DIMS[d])
                           for d in module.DATASETS}
        row["agree"] = all(r["agree"] for r in row["datasets"].values())
    else:
        row["agree"] = "not compared: a run failed"
    return row


def median_of(runs):
    """Each measure's median over the runs (with an odd count, one run's own value), and
    every run's; the first failed run instead if one failed."""
    failed = [r for r in runs if r["rc"] != 0]
    if failed:
        return failed[0]
    medians = {k: statistics.median(r[k] for r in runs) for k in ("seconds", "cpu_s", "rss_mib")}
    return {**medians, "rc": 0, "err": "", "runs": runs}


def release_csv(store, line, period, dataset):
    """Valtava's published CSV of the dataset in the current release (latest.json)."""
    pointer = store / f"releases/{line}/{period}/latest.json"
    manifest = store / json.loads(pointer.read_text(encoding="utf-8"))["manifest"]
    return manifest.parent / f"{dataset}.csv"


def same(a, b):
    """Two published cells agree: both empty, numbers within 1e-6, or equal text."""
    if a == b:
        return True
    try:
        return abs(float(a) - float(b)) <= 1e-6
    except (TypeError, ValueError):
        return False


def compare(valtava_csv, duckdb_csv, dims, shown=5):
    """Every cell of Valtava's published CSV against DuckDB's, keyed by the leading `dims`
    columns. A cell Valtava suppressed whole (primary or secondary) is skipped and may be
    missing from DuckDB's; every other cell must be in both with every column equal."""
    with open(valtava_csv, encoding="utf-8", newline="") as f:
        v_rows = list(csv.reader(f))
    with open(duckdb_csv, encoding="utf-8", newline="") as f:
        d_rows = list(csv.reader(f))
    header, d_header = v_rows[0], d_rows[0]
    diffs = [] if header == d_header else [f"header: valtava {header}, duckdb {d_header}"]
    ours = {tuple(r[:dims]): dict(zip(d_header, r)) for r in d_rows[1:]}
    status = header.index("status") if "status" in header else None
    cells, seen = 0, set()
    for r in v_rows[1:]:
        k = tuple(r[:dims])
        seen.add(k)
        if status is not None and r[status] == "suppressed":
            continue
        other = ours.get(k)
        if other is None:
            diffs.append(f"{'|'.join(k)}: not in DuckDB's")
            continue
        for name, value in zip(header[dims:], r[dims:]):
            cells += 1
            if not same(value, other.get(name)):
                diffs.append(f"{'|'.join(k)} {name}: valtava {value!r}, duckdb {other.get(name)!r}")
    diffs += [f"{'|'.join(k)}: only in DuckDB's" for k in ours if k not in seen]
    return {"agree": not diffs, "cells": cells, "differences": len(diffs), "first": diffs[:shown]}


def ratio(row, what):
    v, d = row.get("valtava", {}).get(what), row.get("duckdb", {}).get(what)
    return f"{v / d:.2f}×" if v and d else "–"


def agreement(row):
    if isinstance(row["agree"], str):
        return row["agree"]
    cells = sum(d["cells"] for d in row["datasets"].values())
    return f"yes ({cells:,} cells)" if row["agree"] else "NO"


def print_line(row):
    print(f"\n{row['line']} {row['period']}: {row['rows']:,} rows ({row['bytes'] / 2**20:,.1f} MiB of input)")
    print(f"  {'tool':<8} {'seconds':>9} {'CPU s':>9} {'peak MiB':>9}")
    for tool in ("valtava", "duckdb"):
        r = row.get(tool)
        if r:
            failed = "" if r["rc"] == 0 else f"  FAILED: {r['err'].strip()[-300:]}"
            print(f"  {tool:<8} {r['seconds']:>9.2f} {r['cpu_s']:>9.2f} {r['rss_mib']:>9,.0f}{failed}")
    print(f"  valtava/duckdb: time {ratio(row, 'seconds')}, CPU {ratio(row, 'cpu_s')}, memory {ratio(row, 'rss_mib')}")
    print(f"  agree: {agreement(row)}")
    for name, d in row.get("datasets", {}).items():
        if not d["agree"]:
            print(f"    {name}: {d['differences']} differences, first:")
            for diff in d["first"]:
                print(f"      {diff}")


def print_summary(results):
    """The results as a Markdown table, to paste into README.md."""
    print("\n| line | period | input rows | input MiB | Valtava s | DuckDB s | time V/D | CPU V/D | memory V/D | agree |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---|")
    for row in results:
        secs = [f"{row[t]['seconds']:.2f}" if t in row else "–" for t in ("valtava", "duckdb")]
        print(f"| {row['line']} | {row['period']} | {row['rows']:,} | {row['bytes'] / 2**20:,.1f} | {secs[0]} | {secs[1]} "
              f"| {ratio(row, 'seconds')} | {ratio(row, 'cpu_s')} | {ratio(row, 'rss_mib')} | {agreement(row)} |")


if __name__ == "__main__":
    main()
