"""valvonta in DuckDB: supervision cases of a quarter by county × case type × quarter
(valvonta_neljannes) from the raw case-register snapshot, and the funnel plot of the
counties (valvonta_poikkeamat) from the published CSV files of the other lines' current
releases in the store (releases/<line>/<period>/latest.json), as the public reads them.

    python3 valvonta.py STORE PERIOD OUT_DIR

Run it after ensihoito, hoitoonpaasy (the quarter's months) and henkilostomitoitus (the
quarter) have been published into STORE; a month without a release is left out."""
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ALUEET, args, connect, csv_files, cube, period_days, publish, text  # noqa: E402

DATASETS = ["valvonta_neljannes", "valvonta_poikkeamat"]
DIMS = {"valvonta_neljannes": 3, "valvonta_poikkeamat": 3}
MEASURES = ["vireille_tulleet", "ratkaistut", "kasittelyaika_mediaani", "vireilla", "toimenpiteet_osuus"]
POIKKEAMAT = ["osuus", "n", "odotettu", "z", "raja95_ala", "raja95_yla", "raja998_ala", "raja998_yla", "luokka"]
# indicator: (line, dataset, share, count, filter of the source rows, monthly)
INDICATORS = {
    "ensihoito_kuljetettu": ("ensihoito", "ensihoito_kuukausi", "kuljetettu_osuus", "tehtavat",
                             "kiireellisyys = 'YHT' AND kuukausi <> 'YHT'", True),
    "hoitoonpaasy_yli_90": ("hoitoonpaasy", "hoitoonpaasy_kuukausi", "odotus_yli_90_osuus", "kaynnit",
                            "ammattiryhma = 'YHT' AND kuukausi <> 'YHT'", True),
    "mitoitus_alle_065": ("henkilostomitoitus", "henkilostomitoitus_neljannes", "alle_065_osuus", "yksikot",
                          "neljannes <> 'YHT'", False),
}


def cases(store, period):
    """The cases of the quarter's snapshot that pass the line's rules (resolved before the
    quarter: filtered)."""
    first, last = period_days(period)
    return f"""
    WITH typed AS (
      SELECT *, TRY_CAST(vireille_pvm AS DATE) AS auki, TRY_CAST(ratkaisu_pvm AS DATE) AS ratk
      FROM {csv_files(store, 'valvonta', period)}),
    read AS (
      SELECT * FROM typed
      WHERE asia_id IS NOT NULL AND asiatyyppi IS NOT NULL AND hyvinvointialue IS NOT NULL AND auki IS NOT NULL
        AND (ratkaisu_pvm IS NULL OR ratk IS NOT NULL)),
    firsts AS (SELECT *, row_number() OVER (PARTITION BY asia_id ORDER BY nr) AS kerta FROM read)
    SELECT hyvinvointialue, asiatyyppi, '{period}' AS neljannes, auki, ratk, toimenpide
    FROM firsts
    WHERE kerta = 1 AND (ratk IS NULL OR ratk >= DATE '{first}')
      AND asiatyyppi IN ('kantelu', 'ilmoitus', 'omavalvonta', 'lupa', 'ennakko')
      AND hyvinvointialue IN (SELECT code FROM read_csv({text(ALUEET)}, header=true, all_varchar=true))
      AND auki <= DATE '{last}' AND (ratk IS NULL OR (ratk >= auki AND ratk <= DATE '{last}'))
      AND ((ratk IS NULL AND coalesce(toimenpide, '') = '')
           OR (ratk IS NOT NULL AND coalesce(toimenpide, '') IN ('ei_toimenpiteita', 'ohjaus', 'huomautus', 'maarays', 'uhkasakko')))"""


def quarter_cells(store, period):
    first, _ = period_days(period)
    dims = ["hyvinvointialue", "asiatyyppi", "neljannes"]
    return f"""
    SELECT {cube(dims, 'hyvinvointialue')},
           count(*) FILTER (WHERE auki >= DATE '{first}') AS vireille_tulleet,
           count(ratk) AS ratkaistut,
           median(CAST(ratk - auki AS DOUBLE)) AS kasittelyaika_mediaani,
           count(*) FILTER (WHERE ratk IS NULL) AS vireilla,
           sql_round(100.0 * count(*) FILTER (WHERE ratk IS NOT NULL AND toimenpide <> 'ei_toimenpiteita')
                 / nullif(count(ratk), 0), 1) AS toimenpiteet_osuus
    FROM ({cases(store, period)}) GROUP BY CUBE ({', '.join(dims)})"""


def release_csv(store, line, period, dataset):
    """The published CSV of the current release of `line` for `period`, or None."""
    pointer = Path(store) / f"releases/{line}/{period}/latest.json"
    if not pointer.exists():
        return None
    manifest = Path(store) / json.loads(pointer.read_text(encoding="utf-8"))["manifest"]
    return manifest.parent / f"{dataset}.csv"


def source_cells(store, period):
    """Every published (not suppressed) share of the indicators, with its count and period."""
    first, _ = period_days(period)
    months = [f"{first.year}-{m:02d}" for m in range(first.month, first.month + 3)]
    parts = []
    for name, (line, dataset, share, count, where, monthly) in INDICATORS.items():
        for jakso in months if monthly else [period]:
            path = release_csv(store, line, jakso, dataset)
            if path is None:
                continue
            parts.append(f"""SELECT '{name}' AS indikaattori, hyvinvointialue, '{jakso}' AS jakso,
                   CAST({share} AS DOUBLE) AS osuus, CAST({count} AS BIGINT) AS n
            FROM read_csv({text(path)}, header=true, all_varchar=true) WHERE {where}""")
    return " UNION ALL ".join(parts) or "SELECT NULL AS indikaattori, NULL AS hyvinvointialue, NULL AS jakso, NULL::DOUBLE AS osuus, NULL::BIGINT AS n WHERE false"


def funnel_cells(store, period):
    clamp = lambda x: f"sql_round(100.0 * least(greatest({x}, 0.0), 1.0), 1)"
    return f"""
    WITH s AS ({source_cells(store, period)}),
    p AS (
      SELECT k.indikaattori, k.hyvinvointialue, k.jakso AS kausi, k.osuus, k.n, c.osuus AS odotettu,
             c.osuus / 100.0 AS p0, sqrt((c.osuus / 100.0) * (1.0 - c.osuus / 100.0) / k.n) AS se,
             (k.osuus / 100.0 - c.osuus / 100.0) / sqrt((c.osuus / 100.0) * (1.0 - c.osuus / 100.0) / k.n) AS zz
      FROM s k JOIN s c ON c.indikaattori = k.indikaattori AND c.jakso = k.jakso AND c.hyvinvointialue = 'SSS'
      WHERE k.hyvinvointialue NOT IN ('SSS', '-1') AND k.osuus IS NOT NULL AND k.n > 0
        AND c.osuus > 0.0 AND c.osuus < 100.0)
    SELECT indikaattori, hyvinvointialue, kausi, osuus, n, odotettu, sql_round(zz, 2) AS z,
           {clamp('p0 - 1.96 * se')} AS raja95_ala, {clamp('p0 + 1.96 * se')} AS raja95_yla,
           {clamp('p0 - 3.09 * se')} AS raja998_ala, {clamp('p0 + 3.09 * se')} AS raja998_yla,
           CASE WHEN abs(zz) > 3.09 THEN 'poikkeama' WHEN abs(zz) > 1.96 THEN 'tarkkailu' ELSE 'normaali' END AS luokka
    FROM p"""


def main():
    store, period, out = args()
    con = connect()
    publish(con, quarter_cells(store, period), out, "valvonta_neljannes",
            ["hyvinvointialue", "asiatyyppi", "neljannes"], MEASURES,
            ["vireille_tulleet", "ratkaistut", "vireilla"])
    # Disclosure control off: computed from already protected published figures.
    publish(con, funnel_cells(store, period), out, "valvonta_poikkeamat",
            ["indikaattori", "hyvinvointialue", "kausi"], POIKKEAMAT, None)


if __name__ == "__main__":
    main()
