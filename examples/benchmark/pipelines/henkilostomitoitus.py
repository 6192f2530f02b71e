"""henkilostomitoitus in DuckDB: the staffing ratio of 24-hour elderly-care units of a
quarter, by county × quarter (henkilostomitoitus_neljannes), from the raw weekly CSV.

    python3 henkilostomitoitus.py STORE PERIOD OUT_DIR

A unit-week belongs to the quarter of its ISO week's Thursday; direct working hours are
converted to full-time persons with 38.25 hours a week."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import KUNNAT, args, connect, csv_files, cube, period_days, publish, text  # noqa: E402

DATASETS = ["henkilostomitoitus_neljannes"]
DIMS = {"henkilostomitoitus_neljannes": 2}
MEASURES = ["yksikot", "mitoitus", "alle_065_osuus"]


def unit_weeks(store, period):
    """The unit-weeks that pass the line's rules, with county and quarter."""
    first, last = period_days(period)
    return f"""
    WITH typed AS (
      SELECT *, TRY_CAST(asiakkaat AS DOUBLE) AS a, TRY_CAST(valiton_tyoaika_h AS DOUBLE) AS t,
             -- The ISO week's Thursday: the Monday of week 1 is the Monday on or before 4 January.
             CASE WHEN regexp_full_match(viikko, '[0-9]{{4}}-W[0-9]{{2}}') THEN
               TRY_CAST(substr(viikko, 1, 4) || '-01-04' AS DATE)
                 + CAST((TRY_CAST(substr(viikko, 7, 2) AS INTEGER) - 1) * 7 + 3
                        - (isodow(TRY_CAST(substr(viikko, 1, 4) || '-01-04' AS DATE)) - 1) AS INTEGER) END AS torstai
      FROM {csv_files(store, 'henkilostomitoitus', period)}),
    read AS (
      SELECT * FROM typed
      WHERE yksikko_id IS NOT NULL AND kunta IS NOT NULL AND viikko IS NOT NULL AND a IS NOT NULL AND t IS NOT NULL),
    firsts AS (SELECT *, row_number() OVER (PARTITION BY yksikko_id, viikko ORDER BY nr) AS kerta FROM read)
    SELECT m.hyvinvointialue, yksikko_id, a, t,
           year(torstai) || '-Q' || quarter(torstai) AS neljannes
    FROM firsts f JOIN read_csv({text(KUNNAT)}, header=true, all_varchar=true) m
      ON m.kunta = f.kunta AND valid_on(m.valid_from, m.valid_to, f.torstai)
    WHERE kerta = 1 AND regexp_full_match(viikko, '[0-9]{{4}}-W(0[1-9]|[1-4][0-9]|5[0-3])')
      AND a > 0 AND t >= 0 AND torstai BETWEEN DATE '{first}' AND DATE '{last}'"""


def cells(store, period):
    dims = ["hyvinvointialue", "neljannes"]
    return f"""
    SELECT {cube(dims, 'hyvinvointialue')}, count(DISTINCT yksikko_id) AS yksikot,
           sql_round(sum(t / 38.25) / sum(a), 2) AS mitoitus,
           sql_round(100.0 * avg(CASE WHEN t / 38.25 / a < 0.65 THEN 1.0 ELSE 0.0 END), 1) AS alle_065_osuus
    FROM ({unit_weeks(store, period)}) GROUP BY CUBE ({', '.join(dims)})"""


def main():
    store, period, out = args()
    publish(connect(), cells(store, period), out, "henkilostomitoitus_neljannes",
            ["hyvinvointialue", "neljannes"], MEASURES, ["yksikot"])


if __name__ == "__main__":
    main()
