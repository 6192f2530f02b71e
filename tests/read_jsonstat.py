#!/usr/bin/env python3
"""Reads a published JSON-stat file with real clients: validates it against the official
JSON-stat 2.0 schema (jsonschema) and reads it with pyjstat into a pandas table. Prints a
JSON summary for the end-to-end test."""
import json
import sys
from pathlib import Path

import jsonschema
from pyjstat import pyjstat

path, schema_dir = Path(sys.argv[1]), Path(sys.argv[2])
doc = json.loads(path.read_text(encoding="utf-8"))
schema = json.loads((schema_dir / "dataset.json").read_text(encoding="utf-8"))
errors = sorted(e.message for e in jsonschema.Draft202012Validator(schema).iter_errors(doc))
dataset = pyjstat.Dataset.read(path.read_text(encoding="utf-8"))
frame = dataset.write("dataframe")
ids = pyjstat.Dataset.read(path.read_text(encoding="utf-8")).write("dataframe", naming="id")
print(json.dumps({
    "schema_errors": errors,
    "rows": len(frame),
    "columns": list(frame.columns),
    "id_columns": list(ids.columns),
    "records": json.loads(ids.to_json(orient="records", force_ascii=False)),
}, ensure_ascii=False))
