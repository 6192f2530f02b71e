"""henkilosto in DuckDB: persons on the quarter's last day and full-time equivalents over
the quarter, by county × occupational group × quarter (henkilosto_neljannes), from the
counties' raw HR extracts.

    python3 henkilosto.py STORE PERIOD OUT_DIR

Employments that do not overlap the quarter are filtered, not errors; uniqueness of the
employment id still counts them (the first row with an id is kept). Full-time equivalents
are summed as exact integers (hundredths of a percent × days) and divided once per cell."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ALUEET, ROOT, args, connect, csv_files, cube, key, period_days, publish, text  # noqa: E402

DATASETS = ["henkilosto_neljannes"]
DIMS = {"henkilosto_neljannes": 3}
MEASURES = ["henkilot", "htv"]
GROUPS = ROOT / "lines/codesets/ammattiryhmat.csv"


def employments(store, period):
    """The employments of the quarter that pass the line's rules, with occupational group,
    pseudonym, their part of the full-time equivalents and whether they hold on the last day."""
    first, last = period_days(period)
    return f"""
    WITH typed AS (
      SELECT *, TRY_CAST(alkupvm AS DATE) AS alku, TRY_CAST(loppupvm AS DATE) AS loppu,
             TRY_CAST(tyoaikaprosentti AS DOUBLE) AS prosentti
      FROM {csv_files(store, 'henkilosto', period)}),
    read AS (
      SELECT * FROM typed
      WHERE tyosuhde_id IS NOT NULL AND hetu IS NOT NULL AND hyvinvointialue IS NOT NULL
        AND ammattikoodi IS NOT NULL AND alku IS NOT NULL AND prosentti IS NOT NULL
        AND (loppupvm IS NULL OR loppu IS NOT NULL)),
    firsts AS (SELECT *, row_number() OVER (PARTITION BY tyosuhde_id ORDER BY nr) AS kerta FROM read),
    ok AS (
      SELECT * FROM firsts
      WHERE kerta = 1 AND alku <= DATE '{last}' AND (loppu IS NULL OR loppu >= DATE '{first}')
        AND hetu_ok(hetu) AND hyvinvointialue IN (SELECT code FROM read_csv({text(ALUEET)}, header=true, all_varchar=true))
        AND regexp_full_match(ammattikoodi, '[0-9]{{5}}') AND prosentti > 0 AND prosentti <= 100
        AND (loppu IS NULL OR loppu >= alku))
    SELECT ok.hyvinvointialue, coalesce(g.ammattiryhma, 'muut') AS ammattiryhma,
           '{period}' AS neljannes, sha256({key()} || hetu) AS pseudonym,
           CAST(sql_round(prosentti * 100.0, 0) AS BIGINT)
             * (least(coalesce(loppu, DATE '{last}'), DATE '{last}') - greatest(alku, DATE '{first}') + 1) AS htv_osa,
           loppu IS NULL OR loppu >= DATE '{last}' AS viimeisena_paivana
    FROM ok LEFT JOIN read_csv({text(GROUPS)}, header=true, all_varchar=true) g
      ON g.match = 'prefix' AND starts_with(ok.ammattikoodi, g.code)"""


def cells(store, period):
    first, last = period_days(period)
    days = (last - first).days + 1
    dims = ["hyvinvointialue", "ammattiryhma", "neljannes"]
    return f"""
    SELECT {cube(dims, 'hyvinvointialue')},
           count(DISTINCT CASE WHEN viimeisena_paivana THEN pseudonym END) AS henkilot,
           sql_round(CAST(sum(htv_osa) AS DOUBLE) / (10000.0 * {days}), 1) AS htv
    FROM ({employments(store, period)}) GROUP BY CUBE ({', '.join(dims)})"""


def main():
    store, period, out = args()
    publish(connect(), cells(store, period), out, "henkilosto_neljannes",
            ["hyvinvointialue", "ammattiryhma", "neljannes"], MEASURES, ["henkilot"])


if __name__ == "__main__":
    main()
