#!/usr/bin/env python3
"""Validates OpenLineage events against the specification's JSON schemas (the event, and each
facet against the schema its _schemaURL names). Prints a JSON list of problems."""
import json
import sys
from pathlib import Path

import jsonschema
from referencing import Registry, Resource

spec_dir = Path(sys.argv[1])
registry = Registry()
for f in [spec_dir / "OpenLineage.json", *sorted((spec_dir / "facets").glob("*.json"))]:
    doc = json.loads(f.read_text(encoding="utf-8"))
    registry = registry.with_resource(doc["$id"], Resource.from_contents(doc))

problems = []


def check(instance, ref, where):
    schema = {"$ref": ref}
    validator = jsonschema.Draft202012Validator(schema, registry=registry, format_checker=jsonschema.FormatChecker())
    for e in validator.iter_errors(instance):
        problems.append(f"{where}: {e.message}")


def facets(obj, where):
    for name, f in (obj or {}).items():
        url = f.get("_schemaURL", "")
        if "#" in url:
            check(f, url, f"{where}.{name}")


for path in sys.argv[2:]:
    event = json.loads(Path(path).read_text(encoding="utf-8"))
    check(event, "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent", path)
    facets(event["run"].get("facets"), f"{path} run")
    facets(event["job"].get("facets"), f"{path} job")
    for i, d in enumerate(event.get("inputs", [])):
        facets(d.get("facets"), f"{path} input {i}")
        facets(d.get("inputFacets"), f"{path} input {i}")
    for i, d in enumerate(event.get("outputs", [])):
        facets(d.get("facets"), f"{path} output {i}")
print(json.dumps(problems))
