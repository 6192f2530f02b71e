#!/usr/bin/env python3
"""Reads a published release with real clients (pyarrow and DuckDB) and prints what they
see as JSON, so that the end-to-end test can compare it with the engine's own CSV."""
import json
import sys

import duckdb
import pyarrow.parquet as pq

release = sys.argv[1]
dataset = sys.argv[2]
table = pq.read_table(f"{release}/{dataset}.parquet")
meta = pq.read_metadata(f"{release}/{dataset}.parquet")
con = duckdb.connect()
parquet_rows = con.execute(f"SELECT * FROM read_parquet('{release}/{dataset}.parquet')").fetchall()
csv_rows = con.execute(f"SELECT * FROM read_csv('{release}/{dataset}.csv', header=true, all_varchar=true)").fetchall()
print(json.dumps({
    "columns": table.column_names,
    "rows": table.num_rows,
    "compression": meta.row_group(0).column(0).compression if meta.num_row_groups else None,
    "pyarrow": table.to_pylist(),
    "duckdb_parquet_rows": len(parquet_rows),
    "duckdb_csv": [[None if v is None else str(v) for v in r] for r in csv_rows],
}, default=str))
