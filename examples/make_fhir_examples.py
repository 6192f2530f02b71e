#!/usr/bin/env python3
"""Writes small synthetic FHIR R4 bulk NDJSON for the rokotukset line (SYNTHETIC DATA: no
real persons). Patients follow the Finnish base profile: the personal identity code as an
identifier with system urn:oid:1.2.246.21 and the home municipality as the
municipality-code extension. Deterministic."""
import json
import random
from pathlib import Path

CHECK = "0123456789ABCDEFHJKLMNPRSTUVWXY"
OUT = Path(__file__).parent / "store" / "inbox" / "rokotukset" / "2025"
KUNNAT = ["091"] * 7 + ["049"] * 3 + ["837"] * 3 + ["564"] * 2 + ["297"] * 2 + ["148"]
MUNICIPALITY = "https://hl7.fi/fhir/finnish-base-profiles/StructureDefinition/municipality-code"
CVX, ATC = "http://hl7.org/fhir/sid/cvx", "urn:oid:1.2.246.537.6.32.2007"
GROUPS = {
    "MPR": [(CVX, "03"), (CVX, "94"), (ATC, "J07BD52")],
    "DTaP-IPV-Hib": [(CVX, "120"), (ATC, "J07CA06")],
    "PCV": [(CVX, "133"), (ATC, "J07AL02")],
    "HPV": [(CVX, "165"), (ATC, "J07BM03")],
    "INFLUENSSA": [(CVX, "140"), (ATC, "J07BB02")],
    "COVID-19": [(CVX, "208"), (ATC, "J07BN01")],
}


def hetu(rng, year, month, day):
    sign = "-" if year < 2000 else "A"
    n = rng.randint(2, 899)
    number = int(f"{day:02d}{month:02d}{year % 100:02d}{n:03d}")
    return f"{day:02d}{month:02d}{year % 100:02d}{sign}{n:03d}{CHECK[number % 31]}"


def main():
    rng = random.Random(2025)
    patients, immunizations = [], []
    for i in range(1, 161):
        year, month, day = rng.randint(2006, 2025), rng.randint(1, 12), rng.randint(1, 28)
        p = {
            "resourceType": "Patient",
            "id": f"p{i:04d}",
            "meta": {"profile": ["https://hl7.fi/fhir/finnish-base-profiles/StructureDefinition/fi-base-patient"]},
            "identifier": [{"system": "urn:oid:1.2.246.21", "value": hetu(rng, year, month, day)}],
            "birthDate": f"{year:04d}-{month:02d}-{day:02d}",
        }
        if rng.random() > 0.05:
            p["extension"] = [{"url": MUNICIPALITY, "valueCoding": {"system": "urn:oid:1.2.246.537.6.21", "version": "2003", "code": rng.choice(KUNNAT)}}]
        if rng.random() < 0.03:
            p["deceasedDateTime"] = "2024-05-01T10:00:00+03:00"
        patients.append(p)
        for group, codes in GROUPS.items():
            if rng.random() < 0.7:
                system, code = rng.choice(codes)
                when = rng.choice(["2020-05-04", "2023-09-12", "2025-06-01", "2026-01-10"])
                status = "completed" if rng.random() > 0.08 else "not-done"
                immunizations.append({
                    "resourceType": "Immunization",
                    "id": f"i{len(immunizations) + 1:05d}",
                    "status": status,
                    "vaccineCode": {"coding": [{"system": system, "code": code}]},
                    "patient": {"reference": f"Patient/{p['id']}"},
                    "occurrenceDateTime": f"{when}T09:00:00+02:00",
                })
    # A code outside the groups (counted as unmapped), and a broken line.
    immunizations.append({"resourceType": "Immunization", "id": "i99999", "status": "completed",
                          "vaccineCode": {"coding": [{"system": CVX, "code": "88"}]},
                          "patient": {"reference": "Patient/p0001"}, "occurrenceDateTime": "2025-02-01T09:00:00+02:00"})
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "Patient.000.ndjson").write_text("".join(json.dumps(p, ensure_ascii=False) + "\n" for p in patients) + "{\"resourceType\": \"Patient\", broken\n", encoding="utf-8")
    (OUT / "Immunization.000.ndjson").write_text("".join(json.dumps(i) + "\n" for i in immunizations), encoding="utf-8")


if __name__ == "__main__":
    main()
