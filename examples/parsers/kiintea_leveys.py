#!/usr/bin/env python3
"""An example external parser for Valtava: fixed-width text to an Arrow IPC stream.

Reads the object on standard input; each line is `YKSIKKO(6) KUNTA(3) ASIAKKAAT(6)`.
Lines starting with `#` are comments. A line of the wrong length stops the parser with a
message on standard error and exit status 2, so the engine quarantines the object.
"""
import sys

import pyarrow as pa

units, municipalities, clients = [], [], []
for number, raw in enumerate(sys.stdin.buffer.read().decode("utf-8").splitlines(), start=1):
    if not raw.strip() or raw.startswith("#"):
        continue
    if len(raw) != 15:
        print(f"line {number}: expected 15 characters, found {len(raw)}", file=sys.stderr)
        sys.exit(2)
    units.append(raw[0:6].strip())
    municipalities.append(raw[6:9])
    clients.append(raw[9:15].strip())

table = pa.table({"yksikko": units, "kunta": municipalities, "asiakkaat": clients})
with pa.ipc.new_stream(sys.stdout.buffer, table.schema) as writer:
    writer.write_table(table)
