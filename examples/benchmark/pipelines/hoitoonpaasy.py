"""hoitoonpaasy in DuckDB: waiting times of non-urgent primary-care visits of a month, by
county × month × profession (hoitoonpaasy_kuukausi), from the raw Avohilmo CSV.

    python3 hoitoonpaasy.py STORE PERIOD OUT_DIR

The wait is days from the care-need assessment to the visit; urgent visits are validated
but filtered out before the aggregation, as the line does."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import KUNNAT, args, connect, csv_files, cube, period_days, publish, text  # noqa: E402

DATASETS = ["hoitoonpaasy_kuukausi"]
DIMS = {"hoitoonpaasy_kuukausi": 3}
MEASURES = ["kaynnit", "odotus_0_7_osuus", "odotus_0_14_osuus", "odotus_yli_90_osuus", "odotus_mediaani"]


def visits(store, period):
    """The non-urgent visits that pass the line's rules, with county and wait in days."""
    first, last = period_days(period)
    return f"""
    WITH typed AS (
      SELECT *, TRY_CAST(yhteydenotto_pvm AS DATE) AS y, TRY_CAST(hoidon_tarve_pvm AS DATE) AS h,
             TRY_CAST(kaynti_pvm AS DATE) AS k
      FROM {csv_files(store, 'hoitoonpaasy', period)}),
    read AS (
      SELECT * FROM typed
      WHERE kaynti_id IS NOT NULL AND hetu IS NOT NULL AND kunta IS NOT NULL AND kiireellisyys IS NOT NULL
        AND ammattiryhma IS NOT NULL AND y IS NOT NULL AND h IS NOT NULL AND k IS NOT NULL),
    firsts AS (SELECT *, row_number() OVER (PARTITION BY kaynti_id ORDER BY nr) AS kerta FROM read)
    SELECT m.hyvinvointialue, strftime(k, '%Y-%m') AS kuukausi, ammattiryhma, k - h AS odotus
    FROM firsts f JOIN read_csv({text(KUNNAT)}, header=true, all_varchar=true) m
      ON m.kunta = f.kunta AND valid_on(m.valid_from, m.valid_to, f.k)
    WHERE kerta = 1 AND hetu_ok(hetu)
      AND kiireellisyys IN ('kiireellinen', 'kiireeton') AND ammattiryhma IN ('laakari', 'hoitaja', 'muu')
      AND y <= h AND h <= k AND k BETWEEN DATE '{first}' AND DATE '{last}'
      AND kiireellisyys = 'kiireeton'"""


def cells(store, period):
    dims = ["hyvinvointialue", "kuukausi", "ammattiryhma"]
    share = lambda cond: f"sql_round(100.0 * avg(CASE WHEN {cond} THEN 1.0 ELSE 0.0 END), 1)"
    return f"""
    SELECT {cube(dims, 'hyvinvointialue')}, count(*) AS kaynnit,
           {share('odotus <= 7')} AS odotus_0_7_osuus, {share('odotus <= 14')} AS odotus_0_14_osuus,
           {share('odotus > 90')} AS odotus_yli_90_osuus, median(CAST(odotus AS DOUBLE)) AS odotus_mediaani
    FROM ({visits(store, period)}) GROUP BY CUBE ({', '.join(dims)})"""


def main():
    store, period, out = args()
    publish(connect(), cells(store, period), out, "hoitoonpaasy_kuukausi",
            ["hyvinvointialue", "kuukausi", "ammattiryhma"], MEASURES, ["kaynnit"])


if __name__ == "__main__":
    main()
