"""rai in DuckDB: each client's latest RAI assessment of a half-year per service type, by
county × service type × half-year (rai_puolivuosi), from the raw assessment CSV.

    python3 rai.py STORE PERIOD OUT_DIR

The latest is the latest date, then the larger assessment id: an id of digits only by its
numeric value (above every other id), others as text; the client is the pseudonym, as the
line selects after pseudonymising."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import KUNNAT, args, connect, csv_files, cube, key, period_days, publish, text  # noqa: E402

DATASETS = ["rai_puolivuosi"]
DIMS = {"rai_puolivuosi": 3}
MEASURES = ["asiakkaat", "cps_keskiarvo", "adlh_keskiarvo", "cps_3_osuus", "maple_4_5_osuus"]


def latest(store, period):
    """The latest valid assessment of each client and service type, with county."""
    first, last = period_days(period)
    return f"""
    WITH typed AS (
      SELECT *, TRY_CAST(arviointi_pvm AS DATE) AS pvm, TRY_CAST(cps AS INTEGER) AS c,
             TRY_CAST(adlh AS INTEGER) AS a, TRY_CAST(maple AS INTEGER) AS m
      FROM {csv_files(store, 'rai', period)}),
    read AS (
      SELECT * FROM typed
      WHERE arviointi_id IS NOT NULL AND hetu IS NOT NULL AND kunta IS NOT NULL AND palvelumuoto IS NOT NULL
        AND pvm IS NOT NULL AND c IS NOT NULL AND a IS NOT NULL AND m IS NOT NULL),
    firsts AS (SELECT *, row_number() OVER (PARTITION BY arviointi_id ORDER BY nr) AS kerta FROM read),
    ok AS (
      SELECT k.hyvinvointialue, palvelumuoto, arviointi_id, pvm, c, a, m, sha256({key()} || hetu) AS pseudonym
      FROM firsts f JOIN read_csv({text(KUNNAT)}, header=true, all_varchar=true) k
        ON k.kunta = f.kunta AND valid_on(k.valid_from, k.valid_to, f.pvm)
      WHERE kerta = 1 AND hetu_ok(hetu) AND palvelumuoto IN ('kotihoito', 'ymparivuorokautinen')
        AND pvm BETWEEN DATE '{first}' AND DATE '{last}'
        AND c BETWEEN 0 AND 6 AND a BETWEEN 0 AND 6 AND m BETWEEN 1 AND 5),
    ranked AS (
      SELECT *, row_number() OVER (
        PARTITION BY pseudonym, palvelumuoto
        ORDER BY pvm DESC,
                 CASE WHEN regexp_full_match(arviointi_id, '[0-9]+') THEN length(ltrim(arviointi_id, '0')) END DESC NULLS LAST,
                 CASE WHEN regexp_full_match(arviointi_id, '[0-9]+') THEN ltrim(arviointi_id, '0') END DESC NULLS LAST,
                 arviointi_id DESC) AS jarjestys
      FROM ok)
    SELECT hyvinvointialue, palvelumuoto, '{period}' AS puolivuotiskausi, c, a, m FROM ranked WHERE jarjestys = 1"""


def cells(store, period):
    dims = ["hyvinvointialue", "palvelumuoto", "puolivuotiskausi"]
    return f"""
    SELECT {cube(dims, 'hyvinvointialue')}, count(*) AS asiakkaat,
           sql_round(avg(CAST(c AS DOUBLE)), 1) AS cps_keskiarvo, sql_round(avg(CAST(a AS DOUBLE)), 1) AS adlh_keskiarvo,
           sql_round(100.0 * avg(CASE WHEN c >= 3 THEN 1.0 ELSE 0.0 END), 1) AS cps_3_osuus,
           sql_round(100.0 * avg(CASE WHEN m >= 4 THEN 1.0 ELSE 0.0 END), 1) AS maple_4_5_osuus
    FROM ({latest(store, period)}) GROUP BY CUBE ({', '.join(dims)})"""


def main():
    store, period, out = args()
    publish(connect(), cells(store, period), out, "rai_puolivuosi",
            ["hyvinvointialue", "palvelumuoto", "puolivuotiskausi"], MEASURES, ["asiakkaat"])


if __name__ == "__main__":
    main()
