"""lines/sosiaalihuolto.yaml by hand: child-welfare notifications and service-need
assessments from CDA R2 documents, one per file.

DuckDB reads no XML, so the hand-written pipeline parses each document with xml.etree (the
line's field paths, first match), reads its HL7 dates, and hands the rows to DuckDB as an
Arrow table; a document without a required field or with a date that is no HL7 TS is
dropped there, as the line's source quarantines it. DuckDB then does the rest as the line:
document ids unique (the first by file name kept, even when it breaks another rule), kind
LSILM or PTA, identity code valid, the child under 18 on receipt, municipality known,
received in the half-year, the later dates not before receipt and each only in its own
kind; municipality -> county on the day of receipt; the identity code pseudonymised;
working days (Mon-Fri, not a public holiday) and calendar months for the time limits; the
cube of area x month with totals of each dataset; counts 1-4 suppressed (in
lastensuojeluilmoitukset also the distinct children).

    python3 sosiaalihuolto.py STORE PERIOD OUT_DIR   (PERIOD a half-year, YYYY-H1 or YYYY-H2)
"""
import calendar
import datetime
import re
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pyarrow as pa

# The shared helpers beside this file, also when the orchestrator imports it by path.
sys.path.insert(0, str(Path(__file__).resolve().parent))
import fhir_common as fc  # noqa: E402

DATASETS = ["lastensuojeluilmoitukset", "palvelutarpeen_arvioinnit"]
DIMS = {"lastensuojeluilmoitukset": 2, "palvelutarpeen_arvioinnit": 2}

V3 = "{urn:hl7-org:v3}"
ENTRIES = f"{V3}component/{V3}structuredBody/{V3}component/{V3}section/{V3}entry/{V3}observation"
REQUIRED = ("laji", "asiakirja_id", "hetu", "kunta", "vastaanotettu")
DATES = ("vastaanotettu", "arvioitu", "valmistunut")
# HL7 V3 TS: YYYYMMDD[HH[MM[SS[.S{1,4}]]]][+|-ZZZZ].
TS = re.compile(r"(\d{4})(\d{2})(\d{2})(?:(\d{2})(?:(\d{2})(?:(\d{2})(?:\.\d{1,4})?)?)?)?(?:[+-](\d{2})(\d{2}))?")


def hl7_day(text):
    """The day an HL7 TS names as written; None when the text is no TS."""
    m = TS.fullmatch(text.strip())
    if not m:
        return None
    y, mo, d, h, mi, s, oh, om = (int(g) if g else 0 for g in m.groups())
    if h > 23 or mi > 59 or s > 59 or oh > 14 or om > 59:
        return None
    try:
        return datetime.date(y, mo, d)
    except ValueError:
        return None


def fields(path):
    """The line's fields of one document (first match; None when absent), as text."""
    doc = ET.fromstring(path.read_bytes())

    def attr(element, name):
        return None if element is None else element.get(name)

    out = {"laji": attr(doc.find(f"{V3}code"), "code"), "asiakirja_id": attr(doc.find(f"{V3}id"), "extension"),
           "hetu": next((i.get("extension") for i in doc.iterfind(f"{V3}recordTarget/{V3}patientRole/{V3}id")
                         if i.get("root") == "1.2.246.21"), None)}
    entries = doc.findall(ENTRIES)
    for name, part in (("kunta", "code"), ("vastaanotettu", "value"), ("arvioitu", "value"), ("valmistunut", "value")):
        out[name] = next((attr(o.find(f"{V3}value"), part) for o in entries
                          if attr(o.find(f"{V3}code"), "code") == name), None)
    return out


def read_documents(inbox):
    """The documents the source keeps, in file-name order (`nr`), as an Arrow table."""
    columns = {c: [] for c in ("nr", "laji", "asiakirja_id", "hetu", "kunta", *DATES)}
    for nr, path in enumerate(sorted(inbox.glob("*.xml"))):
        d = fields(path)
        if any(not d[c] for c in REQUIRED):
            continue
        days = {c: hl7_day(d[c]) if d[c] else None for c in DATES}
        if any(d[c] and days[c] is None for c in DATES):
            continue
        d.update(days, nr=nr)
        for c, values in columns.items():
            values.append(d[c])
    return pa.table(columns)


def half_year(period):
    """The first and last day of `YYYY-H1` / `YYYY-H2`."""
    year, half = int(period[:4]), period[5:]
    if half not in ("H1", "H2"):
        sys.exit(f"sosiaalihuolto: the period is a half-year, not {period}")
    first_month = 1 if half == "H1" else 7
    last_month = first_month + 5
    return (datetime.date(year, first_month, 1),
            datetime.date(year, last_month, calendar.monthrange(year, last_month)[1]))


def rows_sql(first, last):
    """The validated, harmonised documents with both time-limit flags."""
    return f"""
        WITH kunnat AS (
          SELECT kunta, hyvinvointialue, TRY_CAST(valid_from AS DATE) AS alku, TRY_CAST(valid_to AS DATE) AS loppu
          FROM read_csv('{fc.KUNNAT}', header = true, all_varchar = true)
        ),
        tarkistettu AS (
          SELECT * FROM (SELECT *, row_number() OVER (PARTITION BY asiakirja_id ORDER BY nr) AS kerta FROM asiakirjat)
          WHERE kerta = 1
            AND laji IN ('LSILM', 'PTA')
            AND hetu_ok(hetu)
            AND NOT coalesce(age_on(hetu_birth(hetu), vastaanotettu) >= 18, false)
            AND kunta IN (SELECT kunta FROM kunnat)
            AND vastaanotettu BETWEEN DATE '{first}' AND DATE '{last}'
            AND (arvioitu IS NULL OR arvioitu >= vastaanotettu)
            AND (valmistunut IS NULL OR valmistunut >= vastaanotettu)
            AND (arvioitu IS NULL OR laji = 'LSILM')
            AND (valmistunut IS NULL OR laji = 'PTA')
        ),
        pyhat AS (SELECT CAST(pvm AS DATE) AS pvm FROM read_csv('{fc.REFERENCE / "arkipyhat.csv"}', header = true, all_varchar = true)),
        -- Each day with the count of working days up to it: working days after a day up to
        -- a later one are the difference.
        paivat AS (
          SELECT CAST(d AS DATE) AS pvm,
                 sum(CASE WHEN isodow(d) <= 5 AND CAST(d AS DATE) NOT IN (SELECT pvm FROM pyhat) THEN 1 ELSE 0 END)
                   OVER (ORDER BY d) AS arkipaiva
          FROM (SELECT min(vastaanotettu) AS a, greatest(max(vastaanotettu), max(arvioitu)) AS b FROM tarkistettu),
               generate_series(a, b, INTERVAL 1 DAY) AS s(d)
        ),
        SELECT k.hyvinvointialue, strftime(t.vastaanotettu, '%Y-%m') AS kuukausi, t.laji, pseudonym(t.hetu) AS hetu,
               coalesce(t.arvioitu IS NOT NULL AND pa.arkipaiva - pv.arkipaiva <= 7, false) AS kasitelty_7,
               coalesce(t.valmistunut IS NOT NULL AND t.valmistunut <= t.vastaanotettu + INTERVAL 3 MONTH, false) AS valmis_3_kk
        FROM tarkistettu t
        JOIN kunnat k ON k.kunta = t.kunta AND (k.alku IS NULL OR t.vastaanotettu >= k.alku)
                     AND (k.loppu IS NULL OR t.vastaanotettu <= k.loppu)
        JOIN paivat pv ON pv.pvm = t.vastaanotettu
        LEFT JOIN paivat pa ON pa.pvm = t.arvioitu"""


# The age in whole years on a day, NULL before birth.
AGE_MACRO = """
CREATE OR REPLACE MACRO age_on(born, d) AS CASE WHEN d >= born THEN
  year(d) - year(born) - CASE WHEN strftime(d, '%m%d') < strftime(born, '%m%d') THEN 1 ELSE 0 END END
"""


def main():
    store, period, out = fc.args()
    first, last = half_year(period)
    con = fc.connect()
    con.execute(AGE_MACRO)
    con.register("asiakirjat", read_documents(store / "inbox/sosiaalihuolto" / period))
    con.execute(f"CREATE TEMP TABLE rivit AS {rows_sql(first, last)}")
    if con.execute("SELECT count(*) FROM rivit").fetchone()[0] == 0:
        sys.exit("sosiaalihuolto: no document passed the rules (aineisto-ei-tyhja)")
    dims = ["hyvinvointialue", "kuukausi"]
    notifications = {
        "ilmoitukset": "count(*)",
        "lapset": "count(DISTINCT hetu)",
        "kasitelty_7_arkipaivassa_osuus": "sql_round(100.0::DOUBLE * avg(CASE WHEN kasitelty_7 THEN 1.0::DOUBLE ELSE 0.0::DOUBLE END), 1)",
    }
    fc.publish(con, fc.cube(dims, "hyvinvointialue", notifications, "(SELECT * FROM rivit WHERE laji = 'LSILM')"),
               dims, list(notifications), out / "lastensuojeluilmoitukset.csv", deciding=["ilmoitukset", "lapset"])
    assessments = {
        "arvioinnit": "count(*)",
        "valmis_3_kk_osuus": "sql_round(100.0::DOUBLE * avg(CASE WHEN valmis_3_kk THEN 1.0::DOUBLE ELSE 0.0::DOUBLE END), 1)",
    }
    fc.publish(con, fc.cube(dims, "hyvinvointialue", assessments, "(SELECT * FROM rivit WHERE laji = 'PTA')"),
               dims, list(assessments), out / "palvelutarpeen_arvioinnit.csv", deciding=["arvioinnit"])


if __name__ == "__main__":
    main()
