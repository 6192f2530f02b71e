"""ensihoito in DuckDB: emergency missions of a month, by county × month × urgency
(ensihoito_kuukausi), from the raw CSV of the inbox, the municipality reference and the
population of STORE/reference/vaesto.

    python3 ensihoito.py STORE PERIOD OUT_DIR

Alarm and arrival times are Finnish local times read as instants, so reaching times span a
clock change; a time the clocks skipped or showed twice is quarantined, as the line does."""
import datetime
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import KUNNAT, args, connect, csv_files, cube, key, period_days, publish, text  # noqa: E402

DATASETS = ["ensihoito_kuukausi"]
DIMS = {"ensihoito_kuukausi": 3}
MEASURES = ["tehtavat", "potilaat", "tavoittamisaika_mediaani", "kuljetettu_osuus", "tehtavat_per_1000"]


def missions(store, period):
    """The missions that pass the line's rules, with county, pseudonym and reaching time."""
    first, last = period_days(period)
    after = last + datetime.timedelta(days=1)
    return f"""
    WITH typed AS (
      SELECT *, TRY_CAST(halytys_aika AS TIMESTAMP) AS h0, TRY_CAST(kohteessa_aika AS TIMESTAMP) AS k0,
             TRY_CAST(kuljetettu AS INTEGER) AS kulj
      FROM {csv_files(store, 'ensihoito', period)}),
    -- The source: required fields present, typed fields parse, local times one instant each.
    read AS (
      SELECT * FROM typed
      WHERE tehtava_id IS NOT NULL AND kunta IS NOT NULL AND kiireellisyys IS NOT NULL
        AND h0 IS NOT NULL AND one_instant(h0)
        AND (kohteessa_aika IS NULL OR (k0 IS NOT NULL AND one_instant(k0)))
        AND (kuljetettu IS NULL OR kulj IS NOT NULL)),
    firsts AS (SELECT *, row_number() OVER (PARTITION BY tehtava_id ORDER BY nr) AS kerta FROM read)
    SELECT m.hyvinvointialue, strftime(h0, '%Y-%m') AS kuukausi, kiireellisyys, kulj,
           sha256({key()} || hetu) AS pseudonym,
           floor((epoch(instant(k0)) - epoch(instant(h0))) / 60) AS minuutit
    FROM firsts f JOIN read_csv({text(KUNNAT)}, header=true, all_varchar=true) m
      ON m.kunta = f.kunta AND valid_on(m.valid_from, m.valid_to, CAST(f.h0 AS DATE))
    WHERE kerta = 1 AND (hetu IS NULL OR hetu_ok(hetu))
      AND kiireellisyys IN ('A', 'B', 'C', 'D') AND (kulj IS NULL OR kulj IN (0, 1))
      AND (k0 IS NULL OR instant(k0) >= instant(h0))
      AND h0 >= TIMESTAMP '{first}' AND h0 < TIMESTAMP '{after}'"""


def cells(store, period):
    dims = ["hyvinvointialue", "kuukausi", "kiireellisyys"]
    population = text(Path(store) / "reference/vaesto/*.csv")
    return f"""
    WITH c AS (
      SELECT {cube(dims, 'hyvinvointialue')}, count(*) AS tehtavat, count(DISTINCT pseudonym) AS potilaat,
             median(CAST(minuutit AS DOUBLE)) AS tavoittamisaika_mediaani,
             sql_round(100.0 * sum(CASE WHEN kulj = 1 THEN 1 ELSE 0 END) / count(*), 1) AS kuljetettu_osuus
      FROM ({missions(store, period)}) GROUP BY CUBE ({', '.join(dims)})),
    vaesto AS (
      SELECT hyvinvointialue, CAST(vaesto AS BIGINT) AS vaesto
      FROM read_csv({population}, delim=';', header=true, all_varchar=true) WHERE vuosi = '{period[:4]}'),
    p AS (SELECT * FROM vaesto UNION ALL SELECT 'SSS', sum(vaesto) FROM vaesto)
    SELECT c.*, sql_round(1000.0 * tehtavat / p.vaesto, 1) AS tehtavat_per_1000
    FROM c LEFT JOIN p USING (hyvinvointialue)"""


def main():
    store, period, out = args()
    publish(connect(), cells(store, period), out, "ensihoito_kuukausi",
            ["hyvinvointialue", "kuukausi", "kiireellisyys"], MEASURES, ["tehtavat", "potilaat"])


if __name__ == "__main__":
    main()
