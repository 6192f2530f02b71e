#!/usr/bin/env python3
"""Independent computations of the national lines' published figures, straight from the
example input and LINES.md, without the engine. Prints JSON: {key: {measure: value}} for the
line named as the argument, with keys "area|dim2|dim3" over the full cube of totals (SSS /
YHT). Primary suppression is applied (see `DISCLOSURE`): in a cell where any deciding count
is 1 … min_count − 1 every measure is null and "status" is "suppressed". Secondary
suppression is not computed here (the engine may hide more cells, never fewer).

hoitoonpaasy is computed in DuckDB SQL; henkilostomitoitus, henkilosto, asiakaskokemus and talous
(from the workbooks, read with openpyxl) in plain Python;
`sosiaalihuolto DATASET [STORE PERIOD]` (two datasets) from the raw CDA XML with xml.etree;
`rai [STORE [PERIOD]]` (each client's latest assessment) from the raw CSV. `ensihoito-vuosi
STORE PERIOD` computes the yearly roll-up test line (tests/lines/ensihoito-vuosi.yaml) from the
raw monthly CSV files of a store. `valvonta [STORE PERIOD]` computes valvonta_neljannes
from the raw case register; `valvonta-poikkeamat STORE PERIOD` the funnel plot of
valvonta_poikkeamat from the published CSV files of the other lines' current releases in
STORE (releases/<line>/<period>/latest.json), as the public reads them."""
import calendar
import csv
import datetime
import decimal
import json
import math
import os
import re
import statistics
import sys
import zoneinfo
import xml.etree.ElementTree as ET
from itertools import product
from pathlib import Path

import duckdb

ROOT = Path(__file__).resolve().parent.parent
REFERENCE = ROOT.parent / "shared" / "reference"
KUNNAT = REFERENCE / "kunta_hyvinvointialue_2023.csv"


HELSINKI = zoneinfo.ZoneInfo("Europe/Helsinki")

def hoitoonpaasy():
    src = ROOT / "examples/store/inbox/hoitoonpaasy/2025-03/avohilmo.csv"
    con = duckdb.connect()
    rows = con.execute(f"""
        WITH raw AS (
            SELECT *, row_number() OVER () AS nr
            FROM read_csv('{src}', delim=';', header=true, all_varchar=true)
        ), typed AS (
            SELECT *, TRY_CAST(yhteydenotto_pvm AS DATE) AS y, TRY_CAST(hoidon_tarve_pvm AS DATE) AS h,
                   TRY_CAST(kaynti_pvm AS DATE) AS k,
                   row_number() OVER (PARTITION BY kaynti_id ORDER BY nr) AS kerta
            FROM raw
        ), ok AS (
            SELECT t.*, m.hyvinvointialue, strftime(k, '%Y-%m') AS kuukausi, (k - h) AS odotus
            FROM typed t JOIN read_csv('{KUNNAT}', header=true, all_varchar=true) m ON m.kunta = t.kunta
            WHERE kaynti_id IS NOT NULL AND hetu IS NOT NULL AND y IS NOT NULL AND h IS NOT NULL AND k IS NOT NULL
              AND kerta = 1
              AND kiireellisyys IN ('kiireellinen', 'kiireeton') AND ammattiryhma IN ('laakari', 'hoitaja', 'muu')
              AND y <= h AND h <= k AND k BETWEEN DATE '2025-03-01' AND DATE '2025-03-31'
        )
        SELECT CASE WHEN grouping(hyvinvointialue) = 1 THEN 'SSS' ELSE hyvinvointialue END,
               CASE WHEN grouping(kuukausi) = 1 THEN 'YHT' ELSE kuukausi END,
               CASE WHEN grouping(ammattiryhma) = 1 THEN 'YHT' ELSE ammattiryhma END,
               count(*),
               round(100.0 * avg(CASE WHEN odotus <= 7 THEN 1.0 ELSE 0.0 END), 1),
               round(100.0 * avg(CASE WHEN odotus <= 14 THEN 1.0 ELSE 0.0 END), 1),
               round(100.0 * avg(CASE WHEN odotus > 90 THEN 1.0 ELSE 0.0 END), 1),
               median(odotus::DOUBLE)
        FROM ok WHERE kiireellisyys = 'kiireeton'
        GROUP BY CUBE (hyvinvointialue, kuukausi, ammattiryhma)
    """).fetchall()
    names = ["kaynnit", "odotus_0_7_osuus", "odotus_0_14_osuus", "odotus_yli_90_osuus", "odotus_mediaani"]
    return {f"{a}|{b}|{c}": dict(zip(names, [float(x) for x in rest])) for a, b, c, *rest in rows}


def henkilostomitoitus():
    src = ROOT / "examples/store/inbox/henkilostomitoitus/2025-Q1/yksikot.csv"
    area = {r["kunta"]: r["hyvinvointialue"] for r in csv.DictReader(open(KUNNAT, encoding="utf-8"))}
    seen = set()
    kept = []
    for r in csv.DictReader(open(src, encoding="utf-8"), delimiter=";"):
        try:
            year, week = r["viikko"].split("-W")
            thursday = datetime.date.fromisocalendar(int(year), int(week), 4)
            clients, hours = float(r["asiakkaat"]), float(r["valiton_tyoaika_h"])
        except ValueError:
            continue
        key = (r["yksikko_id"], r["viikko"])
        if key in seen:
            continue
        seen.add(key)
        if r["kunta"] not in area or clients <= 0 or hours < 0:
            continue
        if not (datetime.date(2025, 1, 1) <= thursday <= datetime.date(2025, 3, 31)):
            continue
        q = f"{thursday.year}-Q{(thursday.month - 1) // 3 + 1}"
        kept.append((area[r["kunta"]], q, r["yksikko_id"], clients, hours))
    out = {}
    areas = sorted({k[0] for k in kept}) + ["SSS"]
    quarters = sorted({k[1] for k in kept}) + ["YHT"]
    for a, q in product(areas, quarters):
        rows = [k for k in kept if a in ("SSS", k[0]) and q in ("YHT", k[1])]
        if not rows:
            continue
        out[f"{a}|{q}"] = {
            "yksikot": float(len({k[2] for k in rows})),
            "mitoitus": round(sum(k[4] / 38.25 for k in rows) / sum(k[3] for k in rows), 2),
            "alle_065_osuus": round(100.0 * statistics.mean(1.0 if k[4] / 38.25 / k[3] < 0.65 else 0.0 for k in rows), 1),
        }
    return out


def valid_hetu(h):
    """An identity code by DOMAIN.md: date, century sign, number 002–999, check character."""
    centuries = {"+": 1800, "-": 1900, "Y": 1900, "X": 1900, "W": 1900, "V": 1900, "U": 1900,
                 "A": 2000, "B": 2000, "C": 2000, "D": 2000, "E": 2000, "F": 2000}
    if not isinstance(h, str) or len(h) != 11 or h[6] not in centuries or not (h[:6] + h[7:10]).isdigit():
        return False
    try:
        datetime.date(centuries[h[6]] + int(h[4:6]), int(h[2:4]), int(h[:2]))
    except ValueError:
        return False
    return int(h[7:10]) >= 2 and "0123456789ABCDEFHJKLMNPRSTUVWXY"[int(h[:6] + h[7:10]) % 31] == h[10]


def patient_hetu(p):
    return next((i["value"] for i in p.get("identifier", []) if i.get("system") == "urn:oid:1.2.246.21"), None)


def in_window(r, day):
    """A code set row applies on `day` (YYYY-MM-DD) within its valid_from–valid_to."""
    return (not r["valid_from"] or r["valid_from"] <= day) and (not r["valid_to"] or day <= r["valid_to"])


def rokotukset():
    base = ROOT / "examples/store/inbox/rokotukset/2025"
    area = {r["kunta"]: r["hyvinvointialue"] for r in csv.DictReader(open(KUNNAT, encoding="utf-8"))}
    rows = list(csv.DictReader(open(ROOT / "lines/codesets/rokoteryhmat.csv", encoding="utf-8")))

    def group(system, code, day):
        # By code system and code, on the dose's day.
        for r in rows:
            if r["system"] == system and in_window(r, day) and (
                    code == r["code"] or (r["match"] == "prefix" and code.startswith(r["code"]))):
                return r["rokote"]
        return None

    children = {}
    for line in open(base / "Patient.000.ndjson", encoding="utf-8"):
        try:
            p = json.loads(line)
        except json.JSONDecodeError:
            continue
        if not valid_hetu(patient_hetu(p)):
            continue  # quarantined by the validate step
        year = int(p["birthDate"][:4])
        if not 2008 <= year <= 2025 or p.get("deceasedDateTime", "9999")[:10] <= "2025-12-31":
            continue
        codes = [e["valueCoding"]["code"] for e in p.get("extension", []) if e["url"].endswith("/municipality-code")]
        children[p["id"]] = (area.get(codes[0], "-1") if codes else "-1", str(year))
    done = set()
    for line in open(base / "Immunization.000.ndjson", encoding="utf-8"):
        i = json.loads(line)
        if i["status"] != "completed" or i["occurrenceDateTime"][:10] > "2025-12-31":
            continue
        for c in i["vaccineCode"]["coding"]:
            g = group(c.get("system"), c["code"], i["occurrenceDateTime"][:10])
            if g:
                done.add((i["patient"]["reference"].split("/")[1], g))
    vaccines = ["MPR", "DTaP-IPV-Hib", "PCV", "HPV", "INFLUENSSA", "COVID-19"]
    cells = {}
    for pid, (a, y) in children.items():
        for v in vaccines:
            for key in product([a, "SSS"], [y, "YHT"], [v, "YHT"]):
                c = cells.setdefault("|".join(key), [0, 0])
                c[0] += 1
                c[1] += (pid, v) in done
    return {k: {"lapset": float(n), "rokotetut": float(r), "kattavuus": round(100.0 * r / n, 1)} for k, (n, r) in cells.items()}


def diabetes():
    base = ROOT / "examples/store/inbox/diabetes/2025"
    area = {r["kunta"]: r["hyvinvointialue"] for r in csv.DictReader(open(KUNNAT, encoding="utf-8"))}
    units = {(r["system"], r["code"]): r for r in csv.DictReader(open(ROOT / "lines/codesets/hba1c.csv", encoding="utf-8"))}
    icd = {"urn:oid:1.2.246.537.6.1.1999", "http://hl7.org/fhir/sid/icd-10"}
    diabetics = set()
    for line in open(base / "Condition.000.ndjson", encoding="utf-8"):
        c = json.loads(line)
        if "subject" not in c:
            continue  # no patient: quarantined
        if c["clinicalStatus"]["coding"][0]["code"] != "active":
            continue
        for code in c["code"]["coding"]:
            if (code["system"] in icd and code["code"][:3] in ("E10", "E11")) or (
                    code["system"] == "http://snomed.info/sct" and code["code"] in ("44054006", "46635009")):
                diabetics.add(c["subject"]["reference"].split("/")[1])
    latest = {}
    for line in open(base / "Observation.000.ndjson", encoding="utf-8"):
        try:
            o = json.loads(line)
        except json.JSONDecodeError:
            continue
        coding = o["code"]["coding"][0]
        code = (coding.get("system"), coding["code"])  # by code system and code
        if code not in units or not in_window(units[code], o["effectiveDateTime"][:10]) or not "2025-01-01" <= o["effectiveDateTime"][:10] <= "2025-12-31":
            continue
        v = o["valueQuantity"]["value"]
        mmol = (v - 2.15) * 10.929 if units[code]["yksikko"] == "ngsp" else v
        who = o["subject"]["reference"].split("/")[1]
        if who not in latest or o["effectiveDateTime"] > latest[who][0]:
            latest[who] = (o["effectiveDateTime"], mmol)
    cells = {}
    for line in open(base / "Patient.000.ndjson", encoding="utf-8"):
        p = json.loads(line)
        if p["id"] not in diabetics or not valid_hetu(patient_hetu(p)):
            continue
        codes = [e["valueCoding"]["code"] for e in p.get("extension", [])]
        a = area.get(codes[0], "-1") if codes else "-1"
        for key in product([a, "SSS"], ["2025", "YHT"]):
            c = cells.setdefault("|".join(key), [0, 0, 0])
            c[0] += 1
            c[1] += p["id"] in latest
            c[2] += p["id"] in latest and latest[p["id"]][1] < 53
    return {k: {"diabeetikot": float(n), "hba1c_mitattu_osuus": round(100.0 * m / n, 1), "hba1c_alle_53_osuus": round(100.0 * u / n, 1)}
            for k, (n, m, u) in cells.items()}

def henkilosto(store=None):
    """henkilosto from the raw CSV files (of the example, or of STORE's inbox for 2025-Q1):
    rows whose dates or numbers do not parse are dropped
    (the source quarantines them), employments not overlapping 2025-Q1 are left out (filtered),
    then the rules; groups by the first four digits of the occupation code."""
    first, last = datetime.date(2025, 1, 1), datetime.date(2025, 3, 31)
    days = (last - first).days + 1
    counties = {r["code"] for r in csv.DictReader(open(ROOT.parent / "shared/reference/hyvinvointialueet.csv", encoding="utf-8"))}
    groups = {"2211": "laakarit", "2212": "laakarit", "2221": "hoitajat", "2222": "hoitajat",
              "3221": "hoitajat", "3222": "hoitajat", "5321": "lahihoitajat", "5322": "lahihoitajat",
              "2635": "sosiaalityo", "3412": "sosiaalityo"}
    rows = []
    inbox = Path(store) / "inbox/henkilosto/2025-Q1" if store else ROOT / "examples/store/inbox/henkilosto/2025-Q1"
    for src in sorted(inbox.glob("*.csv")):
        rows += list(csv.DictReader(open(src, encoding="utf-8"), delimiter=";"))
    seen = set()
    kept = []
    for r in rows:
        try:
            start = datetime.date.fromisoformat(r["alkupvm"])
            end = datetime.date.fromisoformat(r["loppupvm"]) if r["loppupvm"] else None
            percent = float(r["tyoaikaprosentti"])
        except ValueError:
            continue
        if not r["tyosuhde_id"] or not r["hetu"] or not r["hyvinvointialue"] or not r["ammattikoodi"]:
            continue
        # Uniqueness is over every row the step reads (the first occurrence by file and row
        # is kept), also one its filter leaves out: a later row repeating its id is one.
        repeated = r["tyosuhde_id"] in seen
        seen.add(r["tyosuhde_id"])
        if start > last or (end is not None and end < first):
            continue
        if repeated:
            continue
        code = r["ammattikoodi"]
        if not hetu_valid(r["hetu"]) or r["hyvinvointialue"] not in counties:
            continue
        if not (len(code) == 5 and code.isdigit()) or not (0 < percent <= 100):
            continue
        if end is not None and end < start:
            continue
        # Hundredths of a percent × days, an exact integer; divided once per cell.
        inside = (min(end or last, last) - max(start, first)).days + 1
        on_last_day = end is None or end >= last
        kept.append((r["hyvinvointialue"], groups.get(code[:4], "muut"), "2025-Q1", r["hetu"],
                      int(sql_round(percent * 100.0, 0)) * inside, on_last_day))
    cells = {}
    for k in kept:
        for key in product([k[0], "SSS"], [k[1], "YHT"], [k[2], "YHT"]):
            cells.setdefault("|".join(key), []).append(k)
    return {key: {"henkilot": float(len({k[3] for k in cell if k[5]})),
                  "htv": sql_round(sum(k[4] for k in cell) / (10000.0 * days), 1)}
            for key, cell in cells.items()}


RAI_FORMS = ("kotihoito", "ymparivuorokautinen")
RAI_NUMBER = re.compile(r"-?[0-9]+")
RAI_DIGITS = re.compile(r"[0-9]+")


def rai_id_order(i):
    """The order of assessment ids (the larger breaks a tie of dates): an id of digits only
    by its numeric value (its significant digits' count, then the digits; no overflow) and
    above every other id; other ids as text (code points); equal values ("007", "7") by text."""
    if RAI_DIGITS.fullmatch(i):
        digits = i.lstrip("0")
        return (1, len(digits), digits, i)
    return (0, 0, "", i)


def rai(store=None, period="2025-H1"):
    """rai from the raw CSV files (of the example, or of STORE's inbox for PERIOD, a
    half-year): rows without a required field or whose date or numbers do not parse are
    dropped (the source quarantines them); ids are unique over the rows read (the first by
    file and row is kept, whatever else it breaks); then the rules; the municipality's
    county on the day; each client's latest assessment per service type (latest date, then
    the larger id by `rai_id_order`); the cube of area × service type × half-year."""
    year, half = int(period[:4]), period[5:]
    first, last = (datetime.date(year, 1, 1), datetime.date(year, 6, 30)) if half == "H1" else (
        datetime.date(year, 7, 1), datetime.date(year, 12, 31))
    municipalities = {}
    for r in csv.DictReader(open(KUNNAT, encoding="utf-8")):
        municipalities.setdefault(r["kunta"], []).append(r)
    inbox = Path(store) / "inbox/rai" / period if store else ROOT / "examples/store/inbox/rai" / period
    required = ("arviointi_id", "hetu", "kunta", "palvelumuoto", "arviointi_pvm", "cps", "adlh", "maple")
    seen, latest = set(), {}
    for f in sorted(inbox.glob("*.csv")):
        for r in csv.DictReader(open(f, encoding="utf-8-sig", newline=""), delimiter=";"):
            if None in r or None in r.values() or any(not r[c] for c in required):
                continue
            if not all(RAI_NUMBER.fullmatch(r[c]) for c in ("cps", "adlh", "maple")):
                continue
            if not re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", r["arviointi_pvm"]):
                continue
            try:
                day = datetime.date.fromisoformat(r["arviointi_pvm"])
            except ValueError:
                continue
            cps, adlh, maple = int(r["cps"]), int(r["adlh"]), int(r["maple"])
            first_seen = r["arviointi_id"] not in seen
            seen.add(r["arviointi_id"])
            if not first_seen or not hetu_valid(r["hetu"]) or r["kunta"] not in municipalities:
                continue
            if r["palvelumuoto"] not in RAI_FORMS or not first <= day <= last:
                continue
            if not (0 <= cps <= 6 and 0 <= adlh <= 6 and 1 <= maple <= 5):
                continue
            area = [m["hyvinvointialue"] for m in municipalities[r["kunta"]] if in_window(m, day.isoformat())]
            if not area:
                continue  # no county on the day: quarantined by the map
            order = (day, rai_id_order(r["arviointi_id"]))
            key = (r["hetu"], r["palvelumuoto"])
            if key not in latest or order > latest[key][0]:
                latest[key] = (order, (area[0], r["palvelumuoto"], period, cps, adlh, maple))
    cells = {}
    for _, k in latest.values():
        for key in product([k[0], "SSS"], [k[1], "YHT"], [k[2], "YHT"]):
            cells.setdefault("|".join(key), []).append(k)
    return {key: {"asiakkaat": float(len(sel)),
                  "cps_keskiarvo": sql_round(sum(float(k[3]) for k in sel) / len(sel), 1),
                  "adlh_keskiarvo": sql_round(sum(float(k[4]) for k in sel) / len(sel), 1),
                  "cps_3_osuus": sql_round(100.0 * (sum(1.0 for k in sel if k[3] >= 3) / len(sel)), 1),
                  "maple_4_5_osuus": sql_round(100.0 * (sum(1.0 for k in sel if k[5] >= 4) / len(sel)), 1)}
            for key, sel in cells.items()}


ASIAKASKOKEMUS_QUESTIONS = ["k1", "k2", "k3", "k4", "k5"]


def asiakaskokemus(store=None):
    """asiakaskokemus from the raw CSV files (of the example, or of STORE's inbox for 2025):
    rows whose date or answers do not parse, or that lack a required field, are dropped (the
    source quarantines them); the first row with an id is kept (also when it breaks another
    rule); then the rules; municipality → county from the reference file. Besides the
    published measures each cell has the hidden deciding counts `kN_vastanneet` (answers
    1–5) and `suosittelu_vastanneet` (recommendations given)."""
    inbox = Path(store) / "inbox/asiakaskokemus/2025" if store else ROOT / "examples/store/inbox/asiakaskokemus/2025"
    area = {r["kunta"]: r["hyvinvointialue"] for r in csv.DictReader(open(KUNNAT, encoding="utf-8"))}
    rows = []
    for src in sorted(inbox.glob("*.csv")):
        rows += list(csv.DictReader(open(src, encoding="utf-8"), delimiter=";"))
    seen = set()
    kept = []
    for r in rows:
        try:
            day = datetime.date.fromisoformat(r["vastauspvm"])
            answers = [int(r[q]) if r[q] else None for q in ASIAKASKOKEMUS_QUESTIONS]
            recommendation = int(r["suosittelu"]) if r["suosittelu"] else None
        except ValueError:
            continue
        if not r["vastaus_id"] or not r["kunta"] or not r["palvelumuoto"]:
            continue
        repeated = r["vastaus_id"] in seen
        seen.add(r["vastaus_id"])
        if repeated or r["kunta"] not in area or day.year != 2025:
            continue
        if r["palvelumuoto"] not in ("kotihoito", "ymparivuorokautinen", "omaishoito"):
            continue
        if any(a is not None and a not in (1, 2, 3, 4, 5, 9) for a in answers):
            continue
        if recommendation is not None and not 0 <= recommendation <= 10:
            continue
        kept.append((area[r["kunta"]], r["palvelumuoto"], "2025", answers, recommendation))
    cells = {}
    for k in kept:
        for key in product([k[0], "SSS"], [k[1], "YHT"], [k[2], "YHT"]):
            cells.setdefault("|".join(key), []).append(k)
    out = {}
    for key, cell in cells.items():
        values = {"vastaajat": float(len(cell))}
        for i, q in enumerate(ASIAKASKOKEMUS_QUESTIONS):
            given = [k[3][i] for k in cell if k[3][i] is not None and 1 <= k[3][i] <= 5]
            positive = sum(1 for a in given if a >= 4)
            values[f"{q}_myonteinen_osuus"] = sql_round(100.0 * positive / len(given), 1) if given else None
            values[f"{q}_vastanneet"] = float(len(given))
        given = [k[4] for k in cell if k[4] is not None]
        net = sum(1 for v in given if v >= 9) - sum(1 for v in given if v <= 6)
        values["suositteluindeksi"] = sql_round(100.0 * net / len(given), 0) if given else None
        values["suosittelu_vastanneet"] = float(len(given))
        out[key] = values
    return out


SOSIAALIHUOLTO_CDA = "{urn:hl7-org:v3}"


def cda_document(path):
    """The header fields of a CDA R2 document, read with xml.etree by the paths LINES.md
    names (first match; None when absent): laji, id, hetu, kunta and the three dates as
    written."""
    v3 = SOSIAALIHUOLTO_CDA
    doc = ET.parse(path).getroot()

    def attr(element, name):
        return None if element is None else element.get(name)

    out = {"laji": attr(doc.find(f"{v3}code"), "code"), "asiakirja_id": attr(doc.find(f"{v3}id"), "extension"),
           "hetu": next((i.get("extension") for i in doc.findall(f"{v3}recordTarget/{v3}patientRole/{v3}id")
                         if i.get("root") == "1.2.246.21"), None)}
    entries = doc.findall(f"{v3}component/{v3}structuredBody/{v3}component/{v3}section/{v3}entry/{v3}observation")
    for name, part in [("kunta", "code"), ("vastaanotettu", "value"), ("arvioitu", "value"), ("valmistunut", "value")]:
        out[name] = next((attr(o.find(f"{v3}value"), part) for o in entries
                          if attr(o.find(f"{v3}code"), "code") == name), None)
    return out


def hl7_date(text):
    """An HL7 TS value `YYYYMMDD[HHMM…]` as a date; ValueError when it names no day."""
    if len(text) < 8 or not text[:8].isdigit():
        raise ValueError(text)
    return datetime.date(int(text[:4]), int(text[4:6]), int(text[6:8]))


def working_days(first, later, holidays):
    """Working days d with first < d ≤ later (Mon–Fri, not a holiday)."""
    return sum(1 for n in range(1, (later - first).days + 1)
               if (d := first + datetime.timedelta(days=n)).weekday() < 5 and d not in holidays)


def add_months(d, n):
    """d + n calendar months, the day clamped to the month's last day."""
    y, m = divmod(d.month - 1 + n, 12)
    return datetime.date(d.year + y, m + 1, min(d.day, calendar.monthrange(d.year + y, m + 1)[1]))


def age_on(born, day):
    return None if day < born else day.year - born.year - ((day.month, day.day) < (born.month, born.day))


def hetu_birth(h):
    century = {"+": 1800, "A": 2000, "B": 2000, "C": 2000, "D": 2000, "E": 2000, "F": 2000}.get(h[6], 1900)
    return datetime.date(century + int(h[4:6]), int(h[2:4]), int(h[0:2]))


def sosiaalihuolto_rows(inbox, first, last):
    """The documents of `inbox` that the line keeps: (area, month, kind, hetu, within the
    time limit). Documents are read in file-name order; one without a required field or
    with a date that is no day is quarantined when read and takes no part in the
    uniqueness of ids (the first of equal ids is kept, even when it breaks another rule)."""
    holidays = {datetime.date.fromisoformat(r["pvm"]) for r in csv.DictReader(open(REFERENCE / "arkipyhat.csv", encoding="utf-8"))}
    municipalities = {}
    for r in csv.DictReader(open(KUNNAT, encoding="utf-8")):
        municipalities.setdefault(r["kunta"], []).append(r)
    seen, kept = set(), []
    for f in sorted(Path(inbox).glob("*.xml")):
        d = cda_document(f)
        if any(not d[c] for c in ("laji", "asiakirja_id", "hetu", "kunta", "vastaanotettu")):
            continue
        try:
            received = hl7_date(d["vastaanotettu"])
            assessed = hl7_date(d["arvioitu"]) if d["arvioitu"] else None
            done = hl7_date(d["valmistunut"]) if d["valmistunut"] else None
        except ValueError:
            continue
        first_seen = d["asiakirja_id"] not in seen
        seen.add(d["asiakirja_id"])
        if not first_seen or d["laji"] not in ("LSILM", "PTA") or not hetu_valid(d["hetu"]):
            continue
        age = age_on(hetu_birth(d["hetu"]), received)
        if (age is not None and age >= 18) or d["kunta"] not in municipalities:
            continue
        if not first <= received <= last:
            continue
        if (assessed and assessed < received) or (done and done < received):
            continue
        if (assessed and d["laji"] != "LSILM") or (done and d["laji"] != "PTA"):
            continue
        area = [r["hyvinvointialue"] for r in municipalities[d["kunta"]] if in_window(r, received.isoformat())]
        if not area:
            continue  # no county on the day: quarantined by the map
        if d["laji"] == "LSILM":
            within = assessed is not None and working_days(received, assessed, holidays) <= 7
        else:
            within = done is not None and done <= add_months(received, 3)
        kept.append((area[0], received.strftime("%Y-%m"), d["laji"], d["hetu"], within))
    return kept


def sosiaalihuolto(dataset, store=None, period="2025-H1"):
    """One of the line's two datasets (`lastensuojeluilmoitukset`, `palvelutarpeen_arvioinnit`)
    from the raw CDA documents of the example (or of STORE's inbox for PERIOD, a half-year):
    the cube of area × month with totals SSS / YHT."""
    year, half = int(period[:4]), period[5:]
    first, last = (datetime.date(year, 1, 1), datetime.date(year, 6, 30)) if half == "H1" else (
        datetime.date(year, 7, 1), datetime.date(year, 12, 31))
    inbox = Path(store) / "inbox/sosiaalihuolto" / period if store else ROOT / "examples/store/inbox/sosiaalihuolto" / period
    kind = {"lastensuojeluilmoitukset": "LSILM", "palvelutarpeen_arvioinnit": "PTA"}[dataset]
    rows = [r for r in sosiaalihuolto_rows(inbox, first, last) if r[2] == kind]
    cells = {}
    for r in rows:
        for key in product([r[0], "SSS"], [r[1], "YHT"]):
            cells.setdefault("|".join(key), []).append(r)
    out = {}
    for key, sel in cells.items():
        share = sql_round(100.0 * (sum(1.0 for r in sel if r[4]) / len(sel)), 1)
        if kind == "LSILM":
            out[key] = {"ilmoitukset": float(len(sel)), "lapset": float(len({r[3] for r in sel})),
                        "kasitelty_7_arkipaivassa_osuus": share}
        else:
            out[key] = {"arvioinnit": float(len(sel)), "valmis_3_kk_osuus": share}
    return out


def finnish_number(v):
    """A euro cell as the line reads it (`format: finnish`): a numeric cell as its shortest
    decimal text, or text with groups by space, no-break space or narrow no-break space, a
    decimal comma and the minus sign U+2212 (or plain `1234567.89`); None if it is no number."""
    if isinstance(v, bool) or v is None:
        return None
    if isinstance(v, (int, float)):
        return decimal.Decimal(repr(v)) if isinstance(v, float) else decimal.Decimal(v)
    t = v.strip().replace(" ", "").replace("\u00a0", "").replace("\u202f", "").replace("\u2212", "-").replace(",", ".")
    if not re.fullmatch(r"-?[0-9]+(\.[0-9]+)?", t):
        return None
    return decimal.Decimal(t)


def talous(store=None):
    """talous from the raw workbooks with openpyxl: rows whose euros do not parse are dropped
    (the source quarantines them); a workbook whose one YHT row differs from the sum of its
    other rows by more than 1 € in either column is dropped whole; the YHT rows are left out
    (filtered); then the row rules (county and class known, euros ≥ 0, the first row of a
    (county, class) kept). Net costs summed in cents, whole euros; per inhabitant from the
    population of the year (the whole country: the sum of the counties in the data). No
    suppression."""
    from openpyxl import load_workbook
    store = Path(store) if store else ROOT / "examples/store"
    shared = Path(os.environ.get("VALTAVA_SHARED", ROOT.parent / "shared")) / "reference"
    counties = {r["code"] for r in csv.DictReader(open(shared / "hyvinvointialueet.csv", encoding="utf-8"))}
    classes = {r["code"] for r in csv.DictReader(open(shared / "palveluluokat.csv", encoding="utf-8"))}
    rows = []
    for src in sorted((store / "inbox/talous/2025").glob("*.xlsx")):
        sheet = load_workbook(src, read_only=True)["Talous"]
        it = sheet.iter_rows(values_only=True)
        header = list(next(it))
        book = []
        for values in it:
            r = dict(zip(header, values))
            area, cls = (str(r.get(c)).strip() if r.get(c) is not None else "" for c in ("hyvinvointialue", "palveluluokka"))
            kulut, tuotot = finnish_number(r.get("toimintakulut")), finnish_number(r.get("toimintatuotot"))
            if not area or not cls or kulut is None or tuotot is None:
                continue
            book.append((area, cls, kulut, tuotot))
        totals = [b for b in book if b[1] == "YHT"]
        parts = [b for b in book if b[1] != "YHT"]
        if len(totals) != 1 or any(abs(totals[0][i] - sum((p[i] for p in parts), decimal.Decimal(0))) > 1 for i in (2, 3)):
            continue
        rows += parts
    seen = set()
    kept = []
    for area, cls, kulut, tuotot in rows:
        if (area, cls) in seen:
            continue
        seen.add((area, cls))
        if area not in counties or cls not in classes or kulut < 0 or tuotot < 0:
            continue
        kept.append((area, cls, int(round(kulut * 100)) - int(round(tuotot * 100))))
    population = {r["hyvinvointialue"]: float(r["vaesto"])
                  for f in sorted((store / "reference/vaesto").glob("*.csv"))
                  for r in csv.DictReader(open(f, encoding="utf-8"), delimiter=";") if r["vuosi"] == "2025"}
    # The whole country: the population of the counties whose amounts are in the data
    # (`country: reported`), not of one that sent nothing or whose workbook was returned.
    population["SSS"] = sum(population[a] for a in {k[0] for k in kept})
    out = {}
    for a, c, y in product(sorted({k[0] for k in kept}) + ["SSS"], sorted({k[1] for k in kept}) + ["YHT"], ["2025", "YHT"]):
        cell = [k for k in kept if a in ("SSS", k[0]) and c in ("YHT", k[1])]
        if not cell:
            continue
        netto = sql_round(float(sum(k[2] for k in cell)) / 100.0, 0)
        out[f"{a}|{c}|{y}"] = {
            "nettokayttokustannukset": netto,
            "nettokayttokustannukset_per_asukas": sql_round(1.0 * netto / population[a], 1),
        }
    return out



# Disclosure control of each line's dataset, as in lines/*.yaml: (min_count, deciding counts).
# The deciding counts are the publish step's `disclosure.count` (default: the first measure)
# and every measure that counts persons, a count(DISTINCT <personal column>): of the national
# lines only ensihoito has one (potilaat: count(DISTINCT hetu)). rokotukset and diabetes
# count persons with count(*) over one row per person, which is their first count already.
DISCLOSURE = {
    "hoitoonpaasy": (5, ["kaynnit"]),
    "henkilostomitoitus": (5, ["yksikot"]),
    "henkilosto": (5, ["henkilot"]),
    "talous": (5, []),  # disclosure control off (no persons): nothing decides, nothing is hidden
    "rokotukset": (5, ["lapset"]),
    "diabetes": (5, ["diabeetikot"]),
    "ensihoito": (5, ["tehtavat", "potilaat"]),
    "ensihoito-vuosi": (5, ["tehtavat", "potilaat"]),
    # sosiaalihuolto has two datasets: LINE:DATASET. lapset is count(DISTINCT hetu).
    "sosiaalihuolto:lastensuojeluilmoitukset": (5, ["ilmoitukset", "lapset"]),
    "sosiaalihuolto:palvelutarpeen_arvioinnit": (5, ["arvioinnit"]),
    # Cases concern identifiable persons: every count of a cell decides (see lines/valvonta.yaml).
    "valvonta": (5, ["vireille_tulleet", "ratkaistut", "vireilla"]),
    # Computed from published, already protected figures: disclosure control off.
    "valvonta-poikkeamat": (5, []),
    # asiakkaat: count(*) over one row per client and service type (the latest assessment).
    "rai": (5, ["asiakkaat"]),
    # Respondents decide the cell; each share (and the recommendation index) is decided also
    # by its own count of answers, which is not published: {measure: count}.
    "asiakaskokemus": (5, ["vastaajat"], {
        **{f"{q}_myonteinen_osuus": f"{q}_vastanneet" for q in ASIAKASKOKEMUS_QUESTIONS},
        "suositteluindeksi": "suosittelu_vastanneet",
    }),
}


def primary_suppression(cells, min_count, counts, own=None):
    """Empties every measure of a cell where any deciding count is 1 … min_count − 1 (a count
    of 0 is published) and marks it suppressed. `own` ({measure: count}) are measures decided
    also by a count of their own, which is not published: such a measure is emptied, and
    "status_<measure>" is "suppressed", where the cell is or where its count is 1 …
    min_count − 1; the counts are then removed. (Secondary suppression hides cells whole, so
    it does not change which measures are emptied in the cells that stay published.)"""
    own = own or {}
    for values in cells.values():
        whole = any(1 <= values[c] < min_count for c in counts)
        for m, c in own.items():
            if whole or 1 <= values[c] < min_count:
                values[m] = None
                values[f"status_{m}"] = "suppressed"
        if whole:
            values.update({m: None for m in values if not m.startswith("status_")}, status="suppressed")
        for c in set(own.values()):
            values.pop(c, None)
    return cells


CHECK = "0123456789ABCDEFHJKLMNPRSTUVWXY"


def hetu_valid(h):
    if len(h) != 11 or h[6] not in "+-YXWVUABCDEF" or not (h[:6] + h[7:10]).isdigit():
        return False
    century = {"+": 1800, "A": 2000, "B": 2000, "C": 2000, "D": 2000, "E": 2000, "F": 2000}.get(h[6], 1900)
    try:
        datetime.date(century + int(h[4:6]), int(h[2:4]), int(h[0:2]))
    except ValueError:
        return False
    return int(h[7:10]) >= 2 and CHECK[int(h[:6] + h[7:10]) % 31] == h[10]


def finnish_time(text):
    """The instant a Finnish local time names, in UTC; a text with its own UTC offset names
    it directly. A time the clocks skipped (spring) or showed twice (autumn) names no one
    instant: ValueError, as the line quarantines such rows when it reads them. (In UTC:
    Python subtracts and compares two datetimes of one tzinfo by their wall clocks.)"""
    t = datetime.datetime.fromisoformat(text)
    if t.tzinfo is None:
        first, second = t.replace(tzinfo=HELSINKI, fold=0), t.replace(tzinfo=HELSINKI, fold=1)
        if first.utcoffset() != second.utcoffset():
            raise ValueError(f"{text} is not one instant in Europe/Helsinki")
        t = first
    return t.astimezone(datetime.timezone.utc)


def ensihoito_rows(files, first, after, period_of, unique_per_file=False):
    """The missions of `files` that pass the line's rules, alarmed from `first` up to (not
    including) `after` (Finnish local midnights): (area, period of the alarm in Finnish
    time, urgency, hetu, minutes, transported). Times are Finnish local times read as
    instants, so durations span the clock changes. `tehtava_id` is unique over all files,
    or within each file (a month's submission)."""
    area = {r["kunta"]: r["hyvinvointialue"] for r in csv.DictReader(open(KUNNAT, encoding="utf-8"))}
    rows, seen = [], set()
    for f in files:
        for r in csv.DictReader(open(f, encoding="utf-8-sig", newline=""), delimiter=";"):
            if None in r or None in r.values():
                continue  # wrong number of fields
            try:
                start = finnish_time(r["halytys_aika"])
                arrive = finnish_time(r["kohteessa_aika"]) if r["kohteessa_aika"] else None
                carried = int(r["kuljetettu"]) if r["kuljetettu"] else None
            except ValueError:
                continue
            if not r["tehtava_id"] or not r["kunta"] or not r["kiireellisyys"]:
                continue
            key = (f if unique_per_file else None, r["tehtava_id"])
            first_seen = key not in seen
            seen.add(key)
            if not first_seen or (r["hetu"] and not hetu_valid(r["hetu"])) or r["kunta"] not in area:
                continue
            if r["kiireellisyys"] not in "ABCD" or carried not in (None, 0, 1):
                continue
            if (arrive and arrive < start) or not (first <= start < after):
                continue
            minutes = int((arrive - start).total_seconds() // 60) if arrive else None
            rows.append((area[r["kunta"]], period_of(start.astimezone(HELSINKI)), r["kiireellisyys"], r["hetu"] or None, minutes, carried))
    return rows


def sql_round(x, digits):
    """round(x, digits) as SQL engines compute it for a double: x scaled, rounded half away
    from zero, scaled back (Python's round() rounds the decimal value half to even)."""
    scale = 10.0 ** digits
    return math.copysign(math.floor(abs(x * scale) + 0.5), x) / scale


def ensihoito_cells(rows, population_file):
    """Every cell of the cube of totals over the rows, each measure computed from the rows
    themselves (a year's median and distinct patients, never from its months' figures)."""
    population = {}
    for r in csv.DictReader(open(population_file, encoding="utf-8"), delimiter=";"):
        population[r["hyvinvointialue"]] = float(r["vaesto"])
    population["SSS"] = sum(population.values())
    out = {}
    for key in {k for r in rows for k in product([r[0], "SSS"], [r[1], "YHT"], [r[2], "YHT"])}:
        sel = [r for r in rows if key[0] in (r[0], "SSS") and key[1] in (r[1], "YHT") and key[2] in (r[2], "YHT")]
        times = [r[4] for r in sel if r[4] is not None]
        out["|".join(key)] = {
            "tehtavat": float(len(sel)),
            "potilaat": float(len({r[3] for r in sel if r[3]})),
            "tavoittamisaika_mediaani": float(statistics.median(times)) if times else None,
            "kuljetettu_osuus": sql_round(100.0 * sum(1 for r in sel if r[5] == 1) / len(sel), 1),
            "tehtavat_per_1000": sql_round(1000.0 * len(sel) / population[key[0]], 1),
        }
    return out


def ensihoito():
    base = ROOT / "examples/store/inbox/ensihoito/2025-03"
    rows = ensihoito_rows(sorted(base.glob("*.csv")), datetime.datetime(2025, 3, 1, tzinfo=HELSINKI),
                          datetime.datetime(2025, 4, 1, tzinfo=HELSINKI),
                          lambda t: t.strftime("%Y-%m"))
    return ensihoito_cells(rows, ROOT / "examples/store/reference/vaesto/vaesto_synthetic.csv")


def ensihoito_vuosi(store, period):
    """tests/lines/ensihoito-vuosi.yaml on a store of monthly folders: the rows of every
    month of the period (a year `YYYY` or a half-year `YYYY-Hn`), by year. The months are
    chosen here from the period, not taken from the engine."""
    year = int(period[:4])
    months = {"": range(1, 13), "-H1": range(1, 7), "-H2": range(7, 13)}[period[4:]]
    files = [f for m in months for f in sorted((Path(store) / f"inbox/ensihoito/{year}-{m:02}").glob("*.csv"))]
    first = datetime.datetime(year, months[0], 1, tzinfo=HELSINKI)
    after = (datetime.datetime(year + 1, 1, 1, tzinfo=HELSINKI) if months[-1] == 12
             else datetime.datetime(year, months[-1] + 1, 1, tzinfo=HELSINKI))
    rows = ensihoito_rows(files, first, after, lambda t: t.strftime("%Y"), unique_per_file=True)
    return ensihoito_cells(rows, Path(store) / "reference/vaesto/vaesto_synthetic.csv")


VALVONTA_TYPES = {"kantelu", "ilmoitus", "omavalvonta", "lupa", "ennakko"}
VALVONTA_MEASURES = {"ei_toimenpiteita", "ohjaus", "huomautus", "maarays", "uhkasakko"}


def valvonta(store=None, period="2025-Q1"):
    """valvonta_neljannes from the raw case-register CSV (of the example, or of STORE's inbox):
    rows whose dates do not parse or that lack a required field are dropped (the source
    quarantines them); uniqueness over every row read (the first is kept); cases resolved
    before the quarter are left out (filtered); medians of an even count are the mean of the
    two middle values, as SQL's median."""
    year, q = int(period[:4]), int(period[-1])
    first = datetime.date(year, 3 * q - 2, 1)
    last = datetime.date(year, 3 * q, calendar.monthrange(year, 3 * q)[1])
    counties = {r["code"] for r in csv.DictReader(open(REFERENCE / "hyvinvointialueet.csv", encoding="utf-8"))}
    inbox = (Path(store) if store else ROOT / "examples/store") / f"inbox/valvonta/{period}"
    rows = []
    for src in sorted(inbox.glob("*.csv")):
        rows += list(csv.DictReader(open(src, encoding="utf-8"), delimiter=";"))
    seen, kept = set(), []
    for r in rows:
        try:
            opened = datetime.date.fromisoformat(r["vireille_pvm"])
            resolved = datetime.date.fromisoformat(r["ratkaisu_pvm"]) if r["ratkaisu_pvm"] else None
        except ValueError:
            continue
        if not r["asia_id"] or not r["asiatyyppi"] or not r["hyvinvointialue"]:
            continue
        repeated = r["asia_id"] in seen
        seen.add(r["asia_id"])
        if resolved is not None and resolved < first:
            continue  # filtered: resolved before the quarter
        if repeated or r["asiatyyppi"] not in VALVONTA_TYPES or r["hyvinvointialue"] not in counties:
            continue
        if opened > last or (resolved is not None and (resolved < opened or resolved > last)):
            continue
        measure = r["toimenpide"]
        if (resolved is None) != (measure == "") or (resolved is not None and measure not in VALVONTA_MEASURES):
            continue
        kept.append((r["hyvinvointialue"], r["asiatyyppi"], period, opened, resolved, measure))
    cells = {}
    for k in kept:
        for key in product([k[0], "SSS"], [k[1], "YHT"], [k[2], "YHT"]):
            cells.setdefault("|".join(key), []).append(k)
    out = {}
    for key, cell in cells.items():
        done = [k for k in cell if k[4] is not None and k[4] >= first]
        days = [(k[4] - k[3]).days for k in done]
        acted = sum(1 for k in done if k[5] != "ei_toimenpiteita")
        out[key] = {
            "vireille_tulleet": float(sum(1 for k in cell if k[3] >= first)),
            "ratkaistut": float(len(done)),
            "kasittelyaika_mediaani": float(statistics.median(days)) if days else None,
            "vireilla": float(sum(1 for k in cell if k[4] is None)),
            "toimenpiteet_osuus": sql_round(100.0 * acted / len(done), 1) if done else None,
        }
    return out


def current_release_csv(store, line, period, dataset):
    """The published CSV of the current release of `line` for `period` (latest.json), or
    None when the period has no release."""
    pointer = Path(store) / f"releases/{line}/{period}/latest.json"
    if not pointer.exists():
        return None
    manifest = Path(store) / json.load(open(pointer, encoding="utf-8"))["manifest"]
    return manifest.parent / f"{dataset}.csv"


# indicator: (line, dataset, share, count, the non-area non-period dimension and its total)
POIKKEAMAT = {
    "ensihoito_kuljetettu": ("ensihoito", "ensihoito_kuukausi", "kuljetettu_osuus", "tehtavat", ("kiireellisyys", "YHT"), "kuukausi"),
    "hoitoonpaasy_yli_90": ("hoitoonpaasy", "hoitoonpaasy_kuukausi", "odotus_yli_90_osuus", "kaynnit", ("ammattiryhma", "YHT"), "kuukausi"),
    "mitoitus_alle_065": ("henkilostomitoitus", "henkilostomitoitus_neljannes", "alle_065_osuus", "yksikot", None, "neljannes"),
}


def valvonta_poikkeamat(store, period="2025-Q1"):
    """valvonta_poikkeamat from the published CSV files of the current releases in STORE: the
    months of the quarter for the monthly indicators (those that have a release), the quarter
    itself for the staffing ratio. Keys `indicator|county|period`; the class is a string."""
    year, q = int(period[:4]), int(period[-1])
    months = [f"{year}-{m:02d}" for m in range(3 * q - 2, 3 * q + 1)]
    out = {}
    for name, (line, dataset, share, count, total, period_dim) in POIKKEAMAT.items():
        for jakso in (months if period_dim == "kuukausi" else [period]):
            path = current_release_csv(store, line, jakso, dataset)
            if path is None:
                continue
            rows = [r for r in csv.DictReader(open(path, encoding="utf-8"))
                    if r[period_dim] != "YHT" and (total is None or r[total[0]] == total[1])]
            national = [r for r in rows if r["hyvinvointialue"] == "SSS"]
            if len(national) != 1 or national[0][share] == "":
                continue
            p0 = float(national[0][share]) / 100.0
            if p0 <= 0.0 or p0 >= 1.0:
                continue
            for r in rows:
                if r["hyvinvointialue"] in ("SSS", "-1") or r[share] == "" or r[count] == "" or int(r[count]) <= 0:
                    continue
                n = int(r[count])
                se = math.sqrt(p0 * (1.0 - p0) / n)
                z = (float(r[share]) / 100.0 - p0) / se
                limit = lambda k: sql_round(100.0 * min(max(p0 + k * se, 0.0), 1.0), 1)
                out[f"{name}|{r['hyvinvointialue']}|{jakso}"] = {
                    "osuus": float(r[share]), "n": float(n), "odotettu": float(national[0][share]),
                    "z": sql_round(z, 2),
                    "raja95_ala": limit(-1.96), "raja95_yla": limit(1.96),
                    "raja998_ala": limit(-3.09), "raja998_yla": limit(3.09),
                    "luokka": "poikkeama" if abs(z) > 3.09 else "tarkkailu" if abs(z) > 1.96 else "normaali",
                }
    return out


if __name__ == "__main__":
    # independent.py LINE, independent.py ensihoito-vuosi STORE PERIOD, or
    # independent.py sosiaalihuolto DATASET [STORE PERIOD], independent.py valvonta [STORE PERIOD],
    # independent.py valvonta-poikkeamat STORE PERIOD, independent.py rai [STORE [PERIOD]]
    which = sys.argv[1]
    lines = {"hoitoonpaasy": hoitoonpaasy, "henkilostomitoitus": henkilostomitoitus, "henkilosto": henkilosto, "rokotukset": rokotukset,
             "diabetes": diabetes, "ensihoito": ensihoito, "ensihoito-vuosi": ensihoito_vuosi, "sosiaalihuolto": sosiaalihuolto, "talous": talous,
             "valvonta": valvonta, "valvonta-poikkeamat": valvonta_poikkeamat, "rai": rai, "asiakaskokemus": asiakaskokemus}
    cells = lines[which](*sys.argv[2:])
    disclosure = DISCLOSURE[which] if which in DISCLOSURE else DISCLOSURE[f"{which}:{sys.argv[2]}"]
    print(json.dumps(primary_suppression(cells, *disclosure)))
