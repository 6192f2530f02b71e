#!/usr/bin/env python3
"""Writes small synthetic example input for the asiakaskokemus line (SYNTHETIC DATA: anonymous
survey answers, no persons). Deterministic. One file per wellbeing services county (the
submitter is the file's name). The counties differ in size so that the table has small
cells: Kainuu (20) has a form of service answered by fewer than five (suppressed whole), and
Keski-Suomi's home care (15, 30 respondents) has question k3 answered 1–5 by fewer than five
(the others said 9 = cannot say, or nothing) and the recommendation by fewer than five: only
those two measures are suppressed there (its family and round-the-clock care are hidden whole
by secondary suppression, for Kainuu's small cell). Two files also hold bad rows
of every kind the line quarantines."""
import datetime
import random
from pathlib import Path

OUT = Path(__file__).parent / "store" / "inbox" / "asiakaskokemus" / "2025"
HEADER = "vastaus_id;kunta;palvelumuoto;vastauspvm;k1;k2;k3;k4;k5;suosittelu"
FORMS = ["kotihoito", "ymparivuorokautinen", "omaishoito"]
# County → (municipalities, answers per form of service).
COUNTIES = {
    "90": (["091"], {"kotihoito": 70, "ymparivuorokautinen": 60, "omaishoito": 40}),
    "05": (["853", "529"], {"kotihoito": 45, "ymparivuorokautinen": 35, "omaishoito": 20}),
    "15": (["179"], {"kotihoito": 30, "ymparivuorokautinen": 22, "omaishoito": 8}),
    "20": (["205"], {"kotihoito": 12, "ymparivuorokautinen": 3, "omaishoito": 6}),
}
ANSWERS = ["1", "2", "3", "4", "5", "9", ""]
WEIGHTS = [1, 2, 3, 6, 6, 1, 1]


def day(rng):
    return (datetime.date(2025, 1, 1) + datetime.timedelta(days=rng.randint(0, 364))).isoformat()


def recommendation(rng):
    return rng.choices([str(v) for v in range(11)] + [""], weights=[1] * 5 + [2, 3, 4, 6, 8, 9, 3])[0]


def answer(rng, area, form, question):
    # Keski-Suomi's home care: most cannot say (9) or skip question k3.
    if (area, form, question) == ("15", "kotihoito", "k3"):
        return rng.choice(["9", "9", "", "9"])
    return rng.choices(ANSWERS, weights=WEIGHTS)[0]


def county(rng, area):
    municipalities, forms = COUNTIES[area]
    rows = []
    i = 0
    for form in FORMS:
        for n in range(forms[form]):
            i += 1
            ks = [answer(rng, area, form, f"k{q}") for q in range(1, 6)]
            if (area, form) == ("15", "kotihoito"):
                ks[2] = "4" if n < 3 else ks[2]  # three answers 1–5 to k3, the rest 9 or none
                rec = recommendation(rng) if n < 4 else ""  # four recommendations
            else:
                rec = recommendation(rng)
            rows.append(";".join([f"{area}-{i:05d}", rng.choice(municipalities), form, day(rng), *ks, rec]))
    return rows


def bad_rows(area):
    ok = "4;4;5;3;4;9"
    kunta = COUNTIES[area][0][0]
    return [
        f"{area}-00001;{kunta};kotihoito;2025-05-05;{ok}",            # duplicate id
        f"{area}-90001;999;kotihoito;2025-05-05;{ok}",                 # unknown municipality
        f"{area}-90002;{kunta};laitoshoito;2025-05-05;{ok}",           # unknown form of service
        f"{area}-90003;{kunta};kotihoito;2024-12-31;{ok}",             # outside the year
        f"{area}-90004;{kunta};kotihoito;2025-05-05;6;4;5;3;4;9",      # k1 6
        f"{area}-90005;{kunta};kotihoito;2025-05-05;4;0;5;3;4;9",      # k2 0
        f"{area}-90006;{kunta};kotihoito;2025-05-05;4;4;5;3;4;11",     # recommendation 11
        f"{area}-90007;{kunta};kotihoito;2025-05-05;4;4;5;3;4;-1",     # recommendation -1
        f"{area}-90008;{kunta};kotihoito;2025-05-05;4;4;hyvä;3;4;9",   # k3 not a number
        f"{area}-90009;{kunta};kotihoito;2025-02-30;{ok}",             # no such date
        f";{kunta};kotihoito;2025-05-05;{ok}",                         # id missing
        f"{area}-90010;;kotihoito;2025-05-05;{ok}",                    # municipality missing
        f"{area}-90011;{kunta};kotihoito;;{ok}",                       # date missing
    ]


def main():
    rng = random.Random(2025_5)
    OUT.mkdir(parents=True, exist_ok=True)
    for area in COUNTIES:
        rows = county(rng, area) + (bad_rows(area) if area in ("90", "05") else [])
        (OUT / f"{area}.csv").write_text(HEADER + "\n" + "\n".join(rows) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
