"""lines/talous.yaml by hand: net operating costs from the counties' Excel workbooks.

DuckDB reads no xlsx, so the hand-written pipeline reads the sheet `Talous` of each
workbook with openpyxl (numbers as numbers, text as text) and hands the cells to DuckDB as
an Arrow table. DuckDB then does the rest as the line: euros in Finnish text form read
(`1 234 567,89`, groups of three by space, no-break or narrow no-break space, minus sign
U+2212), a row without an area, class or euros dropped (the source quarantines it); a
workbook whose one YHT row is more than 1 EUR off the sum of its class rows in either
column dropped whole; area and class known, euros >= 0, the first row of an (area, class)
kept; YHT rows filtered; net costs in whole cents, summed over the cube of area x class x
year with totals and rounded to euros; per inhabitant from the population of the year (the
whole country: the counties with rows). Disclosure control is off (no persons).

    python3 talous.py STORE PERIOD OUT_DIR   (PERIOD a year)
"""
import sys
from pathlib import Path

import pyarrow as pa
from openpyxl import load_workbook

# The shared helpers beside this file, also when the orchestrator imports it by path.
sys.path.insert(0, str(Path(__file__).resolve().parent))
import fhir_common as fc  # noqa: E402

DATASETS = ["talous_vuosi"]
DIMS = {"talous_vuosi": 3}

# A euro text as the line's `format: finnish` reads it, NULL when it is no number: blanks
# around it, an optional minus (or U+2212), digits (grouped in threes by a space, NBSP or
# NNBSP), a decimal comma (or a point in an ungrouped number).
BLANKS = " \t\u00a0\u202f"
SEPARATORS = " \u00a0\u202f"
FINNISH_MACRO = f"""
CREATE OR REPLACE MACRO finnish(t) AS CASE
  WHEN regexp_full_match(trim(t, '{BLANKS}'),
       '[-\u2212]?([0-9]{{1,3}}([{SEPARATORS}][0-9]{{3}})+(,[0-9]+)?|[0-9]+([,.][0-9]+)?)')
  THEN CAST(replace(replace(regexp_replace(trim(t, '{BLANKS}'), '[{SEPARATORS}]', '', 'g'),
                            '\u2212', '-'), ',', '.') AS DOUBLE)
END
"""


def cells(inbox):
    """The rows of every workbook's sheet `Talous` in file and row order: area and class as
    text, each euro column as a number or a text (an Arrow table)."""
    out = {c: [] for c in ("nr", "tyokirja", "hyvinvointialue", "palveluluokka",
                           "kulut_luku", "kulut_teksti", "tuotot_luku", "tuotot_teksti")}
    nr = 0
    for book, path in enumerate(sorted(inbox.glob("*.xlsx"))):
        rows = load_workbook(path, read_only=True)["Talous"].iter_rows(values_only=True)
        header = list(next(rows, ()))
        for raw in rows:
            r = dict(zip(header, raw))
            nr += 1
            row = {"nr": nr, "tyokirja": book,
                   "hyvinvointialue": text(r.get("hyvinvointialue")), "palveluluokka": text(r.get("palveluluokka"))}
            for name, column in (("kulut", "toimintakulut"), ("tuotot", "toimintatuotot")):
                v = r.get(column)
                number = isinstance(v, (int, float)) and not isinstance(v, bool)
                row[f"{name}_luku"] = float(v) if number else None
                row[f"{name}_teksti"] = v if isinstance(v, str) else None
            for c, values in out.items():
                values.append(row[c])
    return pa.table(out, schema=pa.schema([
        ("nr", pa.int64()), ("tyokirja", pa.int64()), ("hyvinvointialue", pa.string()), ("palveluluokka", pa.string()),
        ("kulut_luku", pa.float64()), ("kulut_teksti", pa.string()), ("tuotot_luku", pa.float64()), ("tuotot_teksti", pa.string())]))


def text(v):
    """A code cell as text ("" when empty)."""
    return "" if v is None else str(v).strip()


def rows_sql(year):
    """The class rows that pass the workbook and row rules, with net costs in cents."""
    return f"""
        WITH talous AS (
          SELECT nr, tyokirja, hyvinvointialue, palveluluokka,
                 coalesce(kulut_luku, finnish(kulut_teksti)) AS toimintakulut,
                 coalesce(tuotot_luku, finnish(tuotot_teksti)) AS toimintatuotot
          FROM solut
        ),
        luettu AS (
          SELECT * FROM talous
          WHERE hyvinvointialue <> '' AND palveluluokka <> '' AND toimintakulut IS NOT NULL AND toimintatuotot IS NOT NULL
        ),
        -- The workbooks whose one YHT row is the sum of their class rows within 1 EUR.
        summat AS (
          SELECT tyokirja FROM luettu GROUP BY tyokirja
          HAVING count(*) FILTER (palveluluokka = 'YHT') = 1
             AND abs(sum(toimintakulut) FILTER (palveluluokka = 'YHT')
                     - coalesce(sum(toimintakulut) FILTER (palveluluokka <> 'YHT'), 0)) <= 1
             AND abs(sum(toimintatuotot) FILTER (palveluluokka = 'YHT')
                     - coalesce(sum(toimintatuotot) FILTER (palveluluokka <> 'YHT'), 0)) <= 1
        ),
        tyokirjat AS (SELECT * FROM luettu WHERE tyokirja IN (SELECT tyokirja FROM summat)),
        tarkistettu AS (
          SELECT * FROM (
            SELECT *, row_number() OVER (PARTITION BY hyvinvointialue, palveluluokka ORDER BY nr) AS kerta FROM tyokirjat)
          WHERE kerta = 1
            AND hyvinvointialue IN (SELECT code FROM read_csv('{fc.REFERENCE / "hyvinvointialueet.csv"}', header = true, all_varchar = true))
            AND palveluluokka IN (SELECT code FROM read_csv('{fc.REFERENCE / "palveluluokat.csv"}', header = true, all_varchar = true))
            AND toimintakulut >= 0 AND toimintatuotot >= 0
            AND palveluluokka <> 'YHT'
        )
        SELECT hyvinvointialue, palveluluokka, '{year}' AS vuosi,
               CAST(round(toimintakulut * 100.0::DOUBLE) AS BIGINT) - CAST(round(toimintatuotot * 100.0::DOUBLE) AS BIGINT) AS netto_sentit
        FROM tarkistettu"""


def population_sql(store, year):
    """The population of the year by area, and the whole country's (`SSS`) as the sum of
    the areas that have rows."""
    return f"""
        WITH vaesto AS (
          SELECT hyvinvointialue, CAST(vaesto AS DOUBLE) AS vaesto
          FROM read_csv('{store}/reference/vaesto/*.csv', delim = ';', header = true, all_varchar = true)
          WHERE vuosi = '{year}' AND TRY_CAST(vaesto AS BIGINT) IS NOT NULL AND hyvinvointialue <> ''
        )
        SELECT hyvinvointialue, vaesto FROM vaesto
        UNION ALL
        SELECT 'SSS', sum(vaesto) FROM vaesto WHERE hyvinvointialue IN (SELECT hyvinvointialue FROM rivit)"""


def main():
    store, period, out = fc.args()
    year = period[:4]
    con = fc.connect()
    con.execute(FINNISH_MACRO)
    con.register("solut", cells(store / "inbox/talous" / period))
    con.execute(f"CREATE TEMP TABLE rivit AS {rows_sql(year)}")
    dims = ["hyvinvointialue", "palveluluokka", "vuosi"]
    totals = fc.cube(dims, "hyvinvointialue",
                     {"nettokayttokustannukset": "CAST(round(CAST(sum(netto_sentit) AS DOUBLE) / 100.0::DOUBLE) AS BIGINT)"},
                     "rivit")
    cells_sql = f"""
        SELECT c.*, sql_round(1.0::DOUBLE * c.nettokayttokustannukset / v.vaesto, 1) AS nettokayttokustannukset_per_asukas
        FROM ({totals}) c LEFT JOIN ({population_sql(store, year)}) v ON v.hyvinvointialue = c.hyvinvointialue"""
    fc.publish(con, cells_sql, dims, ["nettokayttokustannukset", "nettokayttokustannukset_per_asukas"],
               out / "talous_vuosi.csv")


if __name__ == "__main__":
    main()
