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
LOCAL = "urn:oid:1.2.246.10.9999.1"  # a local code system (synthetic)
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
    special_rokotukset(patients, immunizations)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "Patient.000.ndjson").write_text("".join(json.dumps(p, ensure_ascii=False) + "\n" for p in patients) + "{\"resourceType\": \"Patient\", broken\n", encoding="utf-8")
    (OUT / "Immunization.000.ndjson").write_text("".join(json.dumps(i) + "\n" for i in immunizations), encoding="utf-8")


def invalid_hetu(year, month, day):
    """An identity code with a wrong check character."""
    good = hetu(random.Random(7), year, month, day)
    return good[:-1] + CHECK[(CHECK.index(good[-1]) + 1) % 31]


def special_rokotukset(patients, immunizations):
    """Appended after the random rows (which stay as they were): a child whose identity code
    is invalid (quarantined, not counted), and a local code `03` of another code system
    given to a child without MPR (not MPR: codes map by system and code)."""
    patients.append({"resourceType": "Patient", "id": "p0161",
                     "identifier": [{"system": "urn:oid:1.2.246.21", "value": invalid_hetu(2016, 3, 15)}],
                     "birthDate": "2016-03-15",
                     "extension": [{"url": MUNICIPALITY, "valueCoding": {"system": "urn:oid:1.2.246.537.6.21", "version": "2003", "code": "091"}}]})
    immunizations.append({"resourceType": "Immunization", "id": "i99998", "status": "completed",
                          "vaccineCode": {"coding": [{"system": CVX, "code": "03"}]},
                          "patient": {"reference": "Patient/p0161"}, "occurrenceDateTime": "2017-06-01T09:00:00+02:00"})
    with_mpr = {i["patient"]["reference"] for i in immunizations
                if i["vaccineCode"]["coding"][0]["code"] in ("03", "94", "J07BD52")}
    child = next(p for p in patients if f"Patient/{p['id']}" not in with_mpr
                 and p["birthDate"] >= "2008" and "deceasedDateTime" not in p)
    immunizations.append({"resourceType": "Immunization", "id": "i99997", "status": "completed",
                          "vaccineCode": {"coding": [{"system": LOCAL, "code": "03"}]},
                          "patient": {"reference": f"Patient/{child['id']}"}, "occurrenceDateTime": "2025-03-03T09:00:00+02:00"})


def special_diabetes(patients, conditions, observations):
    """Appended after the random rows: a diabetic whose identity code is invalid
    (quarantined, not counted) and an HbA1c-like code `4648` of another code system for a
    diabetic (not an HbA1c: codes map by system and code)."""
    icd = "urn:oid:1.2.246.537.6.1.1999"
    patients.append({"resourceType": "Patient", "id": "d0121",
                     "identifier": [{"system": "urn:oid:1.2.246.21", "value": invalid_hetu(1960, 7, 20)}],
                     "birthDate": "1960-07-20",
                     "extension": [{"url": MUNICIPALITY, "valueCoding": {"system": "urn:oid:1.2.246.537.6.21", "version": "2003", "code": "091"}}]})
    conditions.append({"resourceType": "Condition", "id": "c0121",
                       "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]},
                       "code": {"coding": [{"system": icd, "code": "E11.9"}]}, "subject": {"reference": "Patient/d0121"}})
    observations.append({"resourceType": "Observation", "id": "o01210", "status": "final",
                         "code": {"coding": [{"system": "http://loinc.org", "code": "4548-4"}]},
                         "subject": {"reference": "Patient/d0121"}, "effectiveDateTime": "2025-04-01T08:00:00+02:00",
                         "valueQuantity": {"value": 6.1, "unit": "%"}})
    measured = {o["subject"]["reference"] for o in observations}
    diabetic = next(c["subject"]["reference"] for c in conditions
                    if c["code"]["coding"][0]["code"] in ("E11.9", "E10.9", "E11", "44054006")
                    and c["clinicalStatus"]["coding"][0]["code"] == "active" and c["subject"]["reference"] not in measured)
    observations.append({"resourceType": "Observation", "id": "o-toinen-koodisto", "status": "final",
                         "code": {"coding": [{"system": LOCAL, "code": "4648"}]},
                         "subject": {"reference": diabetic}, "effectiveDateTime": "2025-04-02T08:00:00+02:00",
                         "valueQuantity": {"value": 45, "unit": "mmol/mol"}})


def diabetes():
    """Patients, Conditions and HbA1c Observations for the diabetes line (2025)."""
    rng = random.Random(1999)
    out = OUT.parent.parent / "diabetes" / "2025"
    patients, conditions, observations = [], [], []
    icd = "urn:oid:1.2.246.537.6.1.1999"
    for i in range(1, 121):
        year, month, day = rng.randint(1935, 2010), rng.randint(1, 12), rng.randint(1, 28)
        p = {"resourceType": "Patient", "id": f"d{i:04d}",
             "identifier": [{"system": "urn:oid:1.2.246.21", "value": hetu(rng, year, month, day)}],
             "birthDate": f"{year:04d}-{month:02d}-{day:02d}",
             "extension": [{"url": MUNICIPALITY, "valueCoding": {"system": "urn:oid:1.2.246.537.6.21", "version": "2003", "code": rng.choice(KUNNAT)}}]}
        patients.append(p)
        kind = rng.random()
        if kind < 0.55:
            coding = rng.choice([{"system": icd, "code": "E11.9"}, {"system": icd, "code": "E10.9"},
                                 {"system": "http://hl7.org/fhir/sid/icd-10", "code": "E11"},
                                 {"system": "http://snomed.info/sct", "code": "44054006"}])
        elif kind < 0.7:
            coding = {"system": icd, "code": "I10"}  # hypertension, not diabetes
        else:
            coding = None
        if coding:
            status = "active" if rng.random() > 0.1 else "resolved"
            conditions.append({"resourceType": "Condition", "id": f"c{i:04d}",
                               "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": status}]},
                               "code": {"coding": [coding]}, "subject": {"reference": f"Patient/{p['id']}"}})
        for n in range(rng.randint(0, 3)):
            date = rng.choice(["2024-06-10", "2025-02-03", "2025-05-20", "2025-11-30"])
            which = rng.random()
            if which < 0.4:
                code, system, value, unit = "4548-4", "http://loinc.org", round(rng.uniform(5.5, 9.5), 1), "%"
            elif which < 0.8:
                code, system, value, unit = "59261-8", "http://loinc.org", rng.randint(38, 80), "mmol/mol"
            else:
                code, system, value, unit = "4648", "urn:oid:1.2.246.537.6.3", rng.randint(38, 80), "mmol/mol"
            observations.append({"resourceType": "Observation", "id": f"o{i:04d}{n}", "status": "final",
                                 "code": {"coding": [{"system": system, "code": code}]},
                                 "subject": {"reference": f"Patient/{p['id']}"},
                                 "effectiveDateTime": f"{date}T08:{n:02d}:00+02:00",
                                 "valueQuantity": {"value": value, "unit": unit}})
        if rng.random() < 0.2:  # an unrelated observation
            observations.append({"resourceType": "Observation", "id": f"o{i:04d}x", "status": "final",
                                 "code": {"coding": [{"system": "http://loinc.org", "code": "8480-6"}]},
                                 "subject": {"reference": f"Patient/{p['id']}"},
                                 "effectiveDateTime": "2025-03-01T08:00:00+02:00", "valueQuantity": {"value": 130, "unit": "mm[Hg]"}})
    special_diabetes(patients, conditions, observations)
    out.mkdir(parents=True, exist_ok=True)
    for name, rows in [("Patient", patients), ("Condition", conditions), ("Observation", observations)]:
        text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
        if name == "Observation":
            text += '{"resourceType": "Observation", "id": "rikki", "valueQuantity": \n'  # cut off: quarantined
        if name == "Condition":
            # A Condition without a subject: its rows lack the required patient.
            text += json.dumps({"resourceType": "Condition", "id": "c-ilman-potilasta", "clinicalStatus": {"coding": [{"code": "active"}]},
                                "code": {"coding": [{"system": icd, "code": "E11.9"}]}}) + "\n"
        (out / f"{name}.000.ndjson").write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
    diabetes()
