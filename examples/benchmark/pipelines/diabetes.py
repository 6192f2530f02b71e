"""lines/diabetes.yaml by hand in DuckDB: diabetics and HbA1c indicators from FHIR NDJSON.

The same work as the line: Patient, Condition and Observation read with `read_json` (broken
lines skipped, rows without a required field dropped, as the source quarantines them; one
row per coding); patients unique by id (the first by file and line kept) with a valid
identity code, municipality -> county (`-1` when unknown), the identity code pseudonymised;
HbA1c codes mapped to their unit by code system and code within the validity window on the
measurement's day, NGSP % converted to mmol/mol; a measurement has a time, those outside
the year are filtered; a diabetic has an active E10*/E11* or SNOMED CT diabetes Condition;
each one's latest HbA1c of the year; the cube of area x year with totals; diabetics 1-4
suppressed.

    python3 diabetes.py STORE PERIOD OUT_DIR   (PERIOD a year)
"""
import sys
from pathlib import Path

# The shared helpers beside this file, also when the orchestrator imports it by path.
sys.path.insert(0, str(Path(__file__).resolve().parent))
import fhir_common as fc  # noqa: E402

DATASETS = ["diabetes_vuosi"]
DIMS = {"diabetes_vuosi": 2}

ICD10 = ("urn:oid:1.2.246.537.6.1.1999", "http://hl7.org/fhir/sid/icd-10")
SNOMED_DIABETES = ("44054006", "46635009")


def load_patients(con, inbox):
    """Patients as the source reads them; the table keeps the file and line order (its
    `rowid`), which decides the first of equal ids."""
    hetu = fc.first_where("identifier", f"e.system = '{fc.HETU_SYSTEM}'", "value")
    kunta = fc.first_where("extension", f"e.url = '{fc.MUNICIPALITY}'", "valueCoding.code")
    con.execute(f"""
        CREATE TEMP TABLE potilaat_kanta AS
        SELECT id, {hetu} AS hetu, {kunta} AS kunta
        FROM read_json('{inbox}/Patient*.ndjson', format = 'newline_delimited', ignore_errors = true,
                       columns = {{
          id: 'VARCHAR', identifier: 'STRUCT(system VARCHAR, value VARCHAR)[]',
          extension: 'STRUCT(url VARCHAR, valueCoding STRUCT(system VARCHAR, code VARCHAR))[]'}})
        WHERE id IS NOT NULL""")


def patients_sql():
    """The validated, harmonised patients: first of each id, identity code valid, county."""
    return f"""
        SELECT p.id, pseudonym(p.hetu) AS hetu, coalesce(k.hyvinvointialue, '-1') AS hyvinvointialue
        FROM (SELECT *, row_number() OVER (PARTITION BY id ORDER BY rowid) AS kerta FROM potilaat_kanta) p
        LEFT JOIN read_csv('{fc.KUNNAT}', header = true, all_varchar = true) k ON k.kunta = p.kunta
        WHERE p.kerta = 1 AND hetu_ok(p.hetu)"""


def diabetics_sql(inbox):
    """The patients with an active diabetes Condition (one row per coding)."""
    icd = ", ".join(f"'{s}'" for s in ICD10)
    snomed = ", ".join(f"'{c}'" for c in SNOMED_DIABETES)
    return f"""
        WITH kanta AS (
          SELECT potilas, tila, c.system AS jarjestelma, c.code AS koodi FROM (
            -- unnest in the select list (the lateral form is eight times slower)
            SELECT patient_key(subject.reference) AS potilas,
                   list_filter(list_transform(clinicalStatus.coding, lambda s: s.code), lambda v: v IS NOT NULL)[1] AS tila,
                   unnest(code.coding) AS c
            FROM read_json('{inbox}/Condition*.ndjson', format = 'newline_delimited', ignore_errors = true,
                           columns = {{
              subject: 'STRUCT(reference VARCHAR)',
              clinicalStatus: 'STRUCT(coding STRUCT(system VARCHAR, code VARCHAR)[])',
              code: 'STRUCT(coding STRUCT(system VARCHAR, code VARCHAR)[])'}}))
        )
        SELECT DISTINCT potilas FROM kanta
        WHERE potilas IS NOT NULL AND tila = 'active' AND (
          (jarjestelma IN ({icd}) AND (koodi LIKE 'E10%' OR koodi LIKE 'E11%'))
          OR (jarjestelma = 'http://snomed.info/sct' AND koodi IN ({snomed})))"""


def hba1c_sql(inbox, year):
    """The HbA1c measurements of the year in mmol/mol, mapped by system and code within the
    code set's window on the measurement's day."""
    return f"""
        WITH kanta AS (
          SELECT potilas, aika, event_day(aika) AS paiva, arvo, c.system AS jarjestelma, c.code AS koodi FROM (
            SELECT patient_key(subject.reference) AS potilas, effectiveDateTime AS aika,
                   valueQuantity.value AS arvo, unnest(code.coding) AS c
            FROM read_json('{inbox}/Observation*.ndjson', format = 'newline_delimited', ignore_errors = true,
                           columns = {{
              subject: 'STRUCT(reference VARCHAR)', effectiveDateTime: 'VARCHAR',
              valueQuantity: 'STRUCT(value DOUBLE)',
              code: 'STRUCT(coding STRUCT(system VARCHAR, code VARCHAR)[])'}}))
        ),
        koodisto AS (
          SELECT code, system, yksikko, TRY_CAST(valid_from AS DATE) AS alku, TRY_CAST(valid_to AS DATE) AS loppu
          FROM read_csv('{fc.CODESETS / "hba1c.csv"}', header = true, all_varchar = true)
        ),
        mittaukset AS (
          SELECT h.potilas, h.aika, k.yksikko,
                 CASE WHEN k.yksikko = 'ngsp' THEN (h.arvo - 2.15) * 10.929 ELSE h.arvo END AS mmol_mol
          FROM kanta h
          JOIN koodisto k ON k.system = h.jarjestelma AND k.code = h.koodi
           AND (k.alku IS NULL OR h.paiva >= k.alku)
           AND (k.loppu IS NULL OR h.paiva <= k.loppu)
          WHERE h.potilas IS NOT NULL
        )
        SELECT potilas, aika, mmol_mol FROM mittaukset
        WHERE aika IS NOT NULL AND substr(aika, 1, 10) BETWEEN '{year}-01-01' AND '{year}-12-31'"""


def main():
    store, period, out = fc.args()
    inbox = store / "inbox/diabetes" / period
    con = fc.connect()
    load_patients(con, inbox)
    con.execute(f"""
        CREATE TEMP TABLE diabeetikot AS
        WITH dm AS ({diabetics_sql(inbox)}),
        h AS (
          SELECT potilas, mmol_mol,
                 row_number() OVER (PARTITION BY potilas ORDER BY aika DESC, mmol_mol) AS jarjestys
          FROM ({hba1c_sql(inbox, period)})
        )
        SELECT p.hyvinvointialue, '{period}' AS vuosi,
               CASE WHEN h.potilas IS NULL THEN 0 ELSE 1 END AS mitattu,
               CASE WHEN h.mmol_mol < 53 THEN 1 ELSE 0 END AS alle_53
        FROM ({patients_sql()}) p
        JOIN dm ON dm.potilas = p.id
        LEFT JOIN h ON h.potilas = p.id AND h.jarjestys = 1""")
    measures = {
        "diabeetikot": "count(*)",
        "hba1c_mitattu_osuus": "sql_round(100.0::DOUBLE * avg(CAST(mitattu AS DOUBLE)), 1)",
        "hba1c_alle_53_osuus": "sql_round(100.0::DOUBLE * avg(CAST(alle_53 AS DOUBLE)), 1)",
    }
    dims = ["hyvinvointialue", "vuosi"]
    fc.publish(con, fc.cube(dims, "hyvinvointialue", measures, "diabeetikot"), dims, list(measures),
               out / "diabetes_vuosi.csv", deciding=["diabeetikot"])


if __name__ == "__main__":
    main()
