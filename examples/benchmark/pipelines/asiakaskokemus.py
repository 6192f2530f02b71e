"""asiakaskokemus in DuckDB: the elderly-care client survey of a year, by county × service
type × year (asiakaskokemus_vuosi), from the raw answer CSV.

    python3 asiakaskokemus.py STORE PERIOD OUT_DIR

Respondents decide a cell; each question's share (and the recommendation index) is also
suppressed where fewer than five answered it, a count that is not published."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import KUNNAT, args, connect, csv_files, cube, period_days, publish, text  # noqa: E402

DATASETS = ["asiakaskokemus_vuosi"]
DIMS = {"asiakaskokemus_vuosi": 3}
QUESTIONS = ["k1", "k2", "k3", "k4", "k5"]
SHARES = [f"{q}_myonteinen_osuus" for q in QUESTIONS]
MEASURES = ["vastaajat", *SHARES, "suositteluindeksi"]
# Each share decided also by its own count of answers: {measure: count}.
OWN = {**{f"{q}_myonteinen_osuus": f"{q}_vastanneet" for q in QUESTIONS}, "suositteluindeksi": "suosittelu_vastanneet"}


def answers(store, period):
    """The answers that pass the line's rules, with county."""
    first, last = period_days(period)
    typed = ", ".join(f"TRY_CAST({q} AS INTEGER) AS {q}_n" for q in QUESTIONS)
    parse = " AND ".join(f"({q} IS NULL OR {q}_n IS NOT NULL)" for q in QUESTIONS)
    known = " AND ".join(f"({q}_n IS NULL OR {q}_n IN (1, 2, 3, 4, 5, 9))" for q in QUESTIONS)
    return f"""
    WITH typed AS (
      SELECT *, TRY_CAST(vastauspvm AS DATE) AS pvm, {typed}, TRY_CAST(suosittelu AS INTEGER) AS s
      FROM {csv_files(store, 'asiakaskokemus', period)}),
    read AS (
      SELECT * FROM typed
      WHERE vastaus_id IS NOT NULL AND kunta IS NOT NULL AND palvelumuoto IS NOT NULL AND pvm IS NOT NULL
        AND {parse} AND (suosittelu IS NULL OR s IS NOT NULL)),
    firsts AS (SELECT *, row_number() OVER (PARTITION BY vastaus_id ORDER BY nr) AS kerta FROM read)
    SELECT m.hyvinvointialue, palvelumuoto, strftime(pvm, '%Y') AS vuosi, {', '.join(f'{q}_n AS {q}' for q in QUESTIONS)}, s
    FROM firsts f JOIN read_csv({text(KUNNAT)}, header=true, all_varchar=true) m
      ON m.kunta = f.kunta AND valid_on(m.valid_from, m.valid_to, f.pvm)
    WHERE kerta = 1 AND palvelumuoto IN ('kotihoito', 'ymparivuorokautinen', 'omaishoito')
      AND pvm BETWEEN DATE '{first}' AND DATE '{last}' AND {known} AND (s IS NULL OR s BETWEEN 0 AND 10)"""


def question(q):
    given = f"sum(CASE WHEN {q} BETWEEN 1 AND 5 THEN 1 ELSE 0 END)"
    return (f"sql_round(100.0 * sum(CASE WHEN {q} BETWEEN 4 AND 5 THEN 1 ELSE 0 END) / nullif({given}, 0), 1) "
            f"AS {q}_myonteinen_osuus, {given} AS {q}_vastanneet")


def cells(store, period):
    dims = ["hyvinvointialue", "palvelumuoto", "vuosi"]
    return f"""
    SELECT {cube(dims, 'hyvinvointialue')}, count(*) AS vastaajat, {', '.join(question(q) for q in QUESTIONS)},
           sql_round(100.0 * (sum(CASE WHEN s >= 9 THEN 1 ELSE 0 END) - sum(CASE WHEN s <= 6 THEN 1 ELSE 0 END))
                 / nullif(count(s), 0), 0) AS suositteluindeksi,
           count(s) AS suosittelu_vastanneet
    FROM ({answers(store, period)}) GROUP BY CUBE ({', '.join(dims)})"""


def main():
    store, period, out = args()
    publish(connect(), cells(store, period), out, "asiakaskokemus_vuosi",
            ["hyvinvointialue", "palvelumuoto", "vuosi"], MEASURES, ["vastaajat"], OWN)


if __name__ == "__main__":
    main()
