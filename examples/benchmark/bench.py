#!/usr/bin/env python3
"""Benchmark: the ensihoito line in Valtava against the same pipeline in DuckDB and pandas,
the FHIR views of the vaccination line against DuckDB read_json, and `valtava check`.

    python3 examples/benchmark/bench.py --rows 1000000 10000000 --memory-limit 1G
    python3 examples/benchmark/bench.py --rows 50000000 --skip duckdb pandas --fhir --check-runs 0

Builds nothing: expects `target/release/valtava` (cargo build --release). For each size it
generates input with `valtava generate` (1 % bad rows), then runs, each in a fresh process:
  valtava  the whole line (parse, rules, county mapping, HMAC pseudonyms, cube aggregation,
           disclosure control, Parquet/CSV/JSON-stat, quarantine, reports),
  duckdb   SQL over the same CSV: the same rules (identity-code check in SQL), county
           mapping, a keyed hash of the identity code, the cube of totals, Parquet out,
  pandas   the same in pandas.
and prints wall time, rows per second, peak memory (max RSS) and the ratios. Before each
tool its input files are read once, so that each starts with them in the page cache.
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
KUNNAT = ROOT.parent / "shared/reference/kunta_hyvinvointialue_2023.csv"
KEY = "benchmark-key-0123456789abcdef"

DUCKDB = r"""
import duckdb, sys
src, out, kunnat, key = sys.argv[1:5]
con = duckdb.connect()
con.execute("SET threads TO 2")
con.execute(f'''
COPY (
WITH raw AS (SELECT * FROM read_csv('{src}', delim=';', header=true, all_varchar=true)),
w AS (
  SELECT *, TRY_CAST(halytys_aika AS TIMESTAMP) AS h0, TRY_CAST(kohteessa_aika AS TIMESTAMP) AS k0,
         TRY_CAST(kuljetettu AS INTEGER) AS kulj,
         row_number() OVER (PARTITION BY tehtava_id) AS kerta
  FROM raw),
-- Finnish local times as instants; a time the clocks skipped does not come back the same
-- (the line quarantines it; a March has no repeated hour).
t AS (
  SELECT *, timezone('Europe/Helsinki', h0) AS h, timezone('Europe/Helsinki', k0) AS k FROM w
  WHERE h0 IS NULL OR timezone('Europe/Helsinki', timezone('Europe/Helsinki', h0)) = h0),
ok AS (
  SELECT t.*, m.hyvinvointialue FROM t JOIN read_csv('{kunnat}', header=true, all_varchar=true) m USING (kunta)
  WHERE tehtava_id IS NOT NULL AND h IS NOT NULL AND kerta = 1
    AND (k0 IS NULL OR timezone('Europe/Helsinki', k) = k0)
    AND kiireellisyys IN ('A','B','C','D') AND (kuljetettu IS NULL OR kulj IN (0, 1))
    AND (k IS NULL OR k >= h)
    AND h >= timezone('Europe/Helsinki', TIMESTAMP '2025-03-01')
    AND h < timezone('Europe/Helsinki', TIMESTAMP '2025-04-01')
    AND (hetu IS NULL OR (length(hetu) = 11
         AND substr('0123456789ABCDEFHJKLMNPRSTUVWXY',
                    (TRY_CAST(substr(hetu,1,6) || substr(hetu,8,3) AS BIGINT) % 31)::INT + 1, 1) = substr(hetu, 11, 1)))
),
h AS (SELECT *, sha256('{key}' || hetu) AS pseudonym,
             date_diff('minute', h, k) AS minutes,
             strftime(timezone('Europe/Helsinki', h), '%Y-%m') AS kuukausi FROM ok)
SELECT coalesce(hyvinvointialue, 'SSS') AS hyvinvointialue, coalesce(kuukausi, 'YHT') AS kuukausi,
       coalesce(kiireellisyys, 'YHT') AS kiireellisyys, count(*) AS tehtavat, count(DISTINCT pseudonym) AS potilaat,
       median(minutes::DOUBLE) AS mediaani, round(100.0 * avg(CASE WHEN kulj = 1 THEN 1.0 ELSE 0.0 END), 1) AS kuljetettu_osuus
FROM h GROUP BY CUBE (hyvinvointialue, kuukausi, kiireellisyys) ORDER BY ALL
) TO '{out}' (FORMAT parquet)''')
"""

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
    """Wall time and peak RSS (MiB) of one command in a fresh process, its inputs cached."""
    warm(inputs)
    wrapper = (
        "import resource, subprocess, sys, time, json\n"
        "t = time.perf_counter()\n"
        "r = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)\n"
        "dt = time.perf_counter() - t\n"
        "print(json.dumps({'seconds': dt, 'rss_mib': resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 'rc': r.returncode, 'err': r.stderr.decode()[-800:]}))\n"
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
    a = ap.parse_args()
    binary = ROOT / "target/release/valtava"
    if not binary.exists():
        sys.exit("build first: cargo build --release")
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
            row["duckdb"] = measure([sys.executable, "-c", DUCKDB, str(src), str(store / "duckdb.parquet"), str(KUNNAT), KEY],
                                    inputs=[src])
        if "pandas" not in a.skip:
            row["pandas"] = measure([sys.executable, "-c", PANDAS, str(src), str(store / "pandas.parquet"), str(KUNNAT), KEY],
                                    inputs=[src])
        results.append(row)
        print(f"\nensihoito: {n:,} rows ({size / 2**20:,.0f} MiB of CSV)")
        table(n, row, ("valtava", "duckdb", "pandas"))


if __name__ == "__main__":
    main()
