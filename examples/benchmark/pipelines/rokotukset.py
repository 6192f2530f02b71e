"""lines/rokotukset.yaml by hand in DuckDB: vaccination coverage from FHIR NDJSON.

The same work as the line: Patient and Immunization read with `read_json` (broken lines
skipped; rows without a required field or birth date dropped, as the source quarantines
them); patients unique by id (the first by file and line kept, even when it breaks another
rule) with a valid identity code; municipality -> county (`-1` when unknown); the identity
code pseudonymised; a completed dose has a date, doses after the period are filtered; CVX
and ATC codes mapped to vaccine groups by code system, code or prefix and validity window
on the dose's day; each living child of the 18 cohorts once per vaccine; the cube of
area x birth year x vaccine with totals; children 1-4 suppressed.

    python3 rokotukset.py STORE PERIOD OUT_DIR   (PERIOD a year)
"""
import sys
from pathlib import Path

# The shared helpers beside this file, also when the orchestrator imports it by path.
sys.path.insert(0, str(Path(__file__).resolve().parent))
import fhir_common as fc  # noqa: E402

DATASETS = ["rokotuskattavuus"]
DIMS = {"rokotuskattavuus": 3}

VACCINES = ["MPR", "DTaP-IPV-Hib", "PCV", "HPV", "INFLUENSSA", "COVID-19"]


def load_patients(con, inbox):
    """Patients as the source reads them; the table keeps the file and line order (its
    `rowid`), which decides the first of equal ids."""
    hetu = fc.first_where("identifier", f"e.system = '{fc.HETU_SYSTEM}'", "value")
    kunta = fc.first_where("extension", f"e.url = '{fc.MUNICIPALITY}'", "valueCoding.code")
    con.execute(f"""
        CREATE TEMP TABLE potilaat_kanta AS
        SELECT id, {hetu} AS hetu, TRY_CAST(birthDate AS DATE) AS syntymapaiva,
                 deceasedDateTime AS kuollut, deceasedBoolean AS kuollut_tieto, {kunta} AS kunta
          FROM read_json('{inbox}/Patient*.ndjson', format = 'newline_delimited', ignore_errors = true,
                         columns = {{
            id: 'VARCHAR', birthDate: 'VARCHAR', deceasedDateTime: 'VARCHAR', deceasedBoolean: 'BOOLEAN',
            identifier: 'STRUCT(system VARCHAR, value VARCHAR)[]',
            extension: 'STRUCT(url VARCHAR, valueCoding STRUCT(system VARCHAR, code VARCHAR))[]'}})
          WHERE id IS NOT NULL AND TRY_CAST(birthDate AS DATE) IS NOT NULL""")


def patients_sql():
    """The validated, harmonised patients: first of each id, identity code valid, county."""
    return f"""
        SELECT p.id, pseudonym(p.hetu) AS hetu, p.kuollut, p.kuollut_tieto,
               coalesce(k.hyvinvointialue, '-1') AS hyvinvointialue,
               CAST(year(p.syntymapaiva) AS INTEGER) AS syntymavuosi
        FROM (SELECT *, row_number() OVER (PARTITION BY id ORDER BY rowid) AS kerta FROM potilaat_kanta) p
        LEFT JOIN read_csv('{fc.KUNNAT}', header = true, all_varchar = true) k ON k.kunta = p.kunta
        WHERE p.kerta = 1 AND hetu_ok(p.hetu)"""


def doses_sql(inbox, end):
    """The vaccinated (patient, vaccine group) pairs: completed doses dated by the period's
    end, one row per coding, mapped by system and code (or prefix) within the window."""
    return f"""
        WITH kanta AS (
          SELECT potilas, tila, pvm, c.system AS jarjestelma, c.code AS koodi FROM (
            -- unnest in the select list (the lateral form is eight times slower)
            SELECT patient_key(patient.reference) AS potilas, status AS tila,
                   occurrenceDateTime AS pvm, unnest(vaccineCode.coding) AS c
            FROM read_json('{inbox}/Immunization*.ndjson', format = 'newline_delimited', ignore_errors = true,
                           columns = {{
              patient: 'STRUCT(reference VARCHAR)', status: 'VARCHAR', occurrenceDateTime: 'VARCHAR',
              vaccineCode: 'STRUCT(coding STRUCT(system VARCHAR, code VARCHAR)[])'}}))
        ),
        tarkistettu AS (
          SELECT *, event_day(pvm) AS paiva FROM kanta
          WHERE potilas IS NOT NULL AND tila IS NOT NULL AND koodi IS NOT NULL
            AND (tila <> 'completed' OR pvm IS NOT NULL)
            AND (pvm IS NULL OR substr(pvm, 1, 10) <= '{end}')
        ),
        ryhmat AS (
          SELECT code, system, match, rokote, TRY_CAST(valid_from AS DATE) AS alku, TRY_CAST(valid_to AS DATE) AS loppu
          FROM read_csv('{fc.CODESETS / "rokoteryhmat.csv"}', header = true, all_varchar = true)
        ),
        rokotukset AS (
          SELECT r.potilas, r.tila, r.pvm, g.rokote FROM tarkistettu r
          LEFT JOIN ryhmat g
            ON g.system = r.jarjestelma
           AND (r.koodi = g.code OR (g.match = 'prefix' AND starts_with(r.koodi, g.code)))
           AND (g.alku IS NULL OR r.paiva >= g.alku)
           AND (g.loppu IS NULL OR r.paiva <= g.loppu)
        )
        SELECT DISTINCT potilas, rokote FROM rokotukset
        WHERE tila = 'completed' AND rokote IS NOT NULL AND substr(pvm, 1, 10) <= '{end}'"""


def main():
    store, period, out = fc.args()
    year = int(period)
    inbox = store / "inbox/rokotukset" / period
    con = fc.connect()
    load_patients(con, inbox)
    vaccines = ", ".join(f"('{v}')" for v in VACCINES)
    con.execute(f"""
        CREATE TEMP TABLE kohortit AS
        WITH p AS (
          SELECT * FROM ({patients_sql()})
          WHERE syntymavuosi BETWEEN {year - 17} AND {year}
            AND (kuollut IS NULL OR substr(kuollut, 1, 10) > '{year}-12-31')
            AND (kuollut_tieto IS NULL OR NOT kuollut_tieto)
        ),
        g AS (SELECT * FROM (VALUES {vaccines}) AS v(rokote)),
        d AS ({doses_sql(inbox, f"{year}-12-31")})
        SELECT p.hyvinvointialue, CAST(p.syntymavuosi AS VARCHAR) AS syntymavuosi, g.rokote,
               CASE WHEN d.potilas IS NULL THEN 0 ELSE 1 END AS rokotettu
        FROM p CROSS JOIN g LEFT JOIN d ON d.potilas = p.id AND d.rokote = g.rokote""")
    measures = {
        "lapset": "count(*)",
        "rokotetut": "sum(rokotettu)",
        "kattavuus": "sql_round(100.0::DOUBLE * sum(rokotettu) / count(*), 1)",
    }
    dims = ["hyvinvointialue", "syntymavuosi", "rokote"]
    fc.publish(con, fc.cube(dims, "hyvinvointialue", measures, "kohortit"), dims, list(measures),
               out / "rokotuskattavuus.csv", deciding=["lapset"])


if __name__ == "__main__":
    main()
