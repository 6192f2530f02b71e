#!/usr/bin/env python3
"""Writes small synthetic example input for the rai line (SYNTHETIC DATA: no real persons).
Deterministic. One file per county's RAI system (the submitter is the file's name), the
assessments of its municipalities in 2025-H1. Many clients have two or three assessments
in the half-year (only the latest per service type counts), some in both service types;
two clients have two assessments on the same day whose ids differ in length ("98765" /
"123456" and "5000" / "49999": numerically the longer one is larger, as text the shorter
one), with different scores, so the tie-break decides the published figures. Keski-Pohjanmaa
(18) is small: its cells are suppressed. Each file also holds bad rows (the small county's
three, the others') of every kind the line quarantines (invalid or missing identity code, unknown municipality, date outside the
half-year or no real date, CPS 7, ADL-H 7, MAPLe 0, repeated id, unknown service type, text
in a number)."""
import datetime
import random
from pathlib import Path

CHECK = "0123456789ABCDEFHJKLMNPRSTUVWXY"
OUT = Path(__file__).parent / "store" / "inbox" / "rai" / "2025-H1"
HEADER = "arviointi_id;hetu;kunta;yksikko_id;palvelumuoto;arviointi_pvm;cps;adlh;maple"
FIRST, LAST = datetime.date(2025, 1, 1), datetime.date(2025, 6, 30)
# County → (its municipalities, clients).
COUNTIES = {
    "90": (["091"], 110),
    "06": (["609", "684", "050", "079", "886"], 70),
    "11": (["405", "153", "416", "739"], 45),
    "18": (["272", "217", "924"], 8),
}


def hetu(rng, year, temporary=False):
    day, month = rng.randint(1, 28), rng.randint(1, 12)
    n = rng.randint(900, 999) if temporary else rng.randint(2, 899)
    number = int(f"{day:02d}{month:02d}{year % 100:02d}{n:03d}")
    return f"{day:02d}{month:02d}{year % 100:02d}-{n:03d}{CHECK[number % 31]}"


def day(rng, first=FIRST, last=LAST):
    return first + datetime.timedelta(days=rng.randint(0, (last - first).days))


def scores(rng):
    """CPS, ADL-H, MAPLe of one assessment: related, as in real care (higher in 24-hour care
    is drawn by the caller's shift)."""
    cps = min(6, max(0, int(rng.triangular(0, 6.9, 2))))
    adlh = min(6, max(0, cps + rng.randint(-2, 2)))
    maple = min(5, max(1, 1 + (cps + adlh) * 4 // 12 + rng.randint(-1, 1)))
    return cps, adlh, maple


class Ids:
    """Running assessment ids, as a system numbers them: their length varies (1 … 4 digits)."""
    def __init__(self):
        self.n = 0

    def __call__(self):
        self.n += 1
        return str(self.n)


def county(rng, area, ids):
    municipalities, clients = COUNTIES[area]
    rows = []
    people = []
    for _ in range(clients):
        person = hetu(rng, rng.randint(1925, 1958), temporary=rng.random() < 0.03)
        people.append(person)
        kunta = rng.choice(municipalities)
        forms = rng.choices([["kotihoito"], ["ymparivuorokautinen"], ["kotihoito", "ymparivuorokautinen"]],
                            weights=[6, 3, 1])[0]
        for form in forms:
            unit = f"{area}-{'KH' if form == 'kotihoito' else 'YV'}{rng.randint(1, 6):02d}"
            for _ in range(rng.choices([1, 2, 3], weights=[5, 4, 2])[0]):
                cps, adlh, maple = scores(rng)
                if form == "ymparivuorokautinen":
                    cps, adlh, maple = min(6, cps + 1), min(6, adlh + 2), min(5, maple + 1)
                rows.append([ids(), person, kunta, unit, form, day(rng).isoformat(), str(cps), str(adlh), str(maple)])
    # Assessments are listed by date, as a system extracts them (ids are not in date order).
    rows.sort(key=lambda r: r[5])
    ok, kunta, unit = people[0], municipalities[0], f"{area}-KH01"
    bad = [
        [rows[0][0], ok, kunta, unit, "kotihoito", "2025-03-03", "1", "1", "2"],        # repeated id
        [ids(), "010190-1234", kunta, unit, "kotihoito", "2025-02-03", "2", "2", "2"],  # invalid hetu
        [ids(), "", kunta, unit, "kotihoito", "2025-02-04", "2", "2", "2"],             # hetu missing
        [ids(), ok, "999", unit, "kotihoito", "2025-02-05", "2", "2", "2"],             # unknown municipality
        [ids(), ok, kunta, unit, "kotihoito", "2024-12-31", "2", "2", "2"],             # before the half-year
        # After the half-year: the client's later assessment does not count, the earlier one does.
        [ids(), ok, kunta, unit, "kotihoito", "2025-07-01", "6", "6", "5"],
        [ids(), ok, kunta, unit, "kotihoito", "2025-02-30", "2", "2", "2"],             # no such date
        [ids(), ok, kunta, unit, "kotihoito", "2025-02-06", "7", "2", "3"],             # CPS 7
        [ids(), ok, kunta, unit, "kotihoito", "2025-02-07", "2", "7", "3"],             # ADL-H 7
        [ids(), ok, kunta, unit, "kotihoito", "2025-02-10", "2", "2", "0"],             # MAPLe 0
        [ids(), ok, kunta, unit, "omaishoito", "2025-02-11", "2", "2", "2"],            # unknown service type
        [ids(), ok, kunta, unit, "kotihoito", "2025-02-12", "kolme", "2", "2"],         # text in a number
    ]
    return rows, bad


def ties(rng):
    """Two clients in Helsinki with two assessments on the same (latest) day whose ids differ
    in length: the numerically larger id is the latest (123456 and 49999)."""
    out = []
    for small, large in [("98765", "123456"), ("5000", "49999")]:
        person = hetu(rng, 1935)
        out += [[small, person, "091", "90-KH01", "kotihoito", "2025-05-20", "1", "1", "1"],
                [large, person, "091", "90-KH01", "kotihoito", "2025-05-20", "5", "6", "5"],
                [str(int(large) + 1000000), person, "091", "90-KH01", "kotihoito", "2025-02-03", "0", "0", "1"]]
    return out


def main():
    rng = random.Random(2025_6)
    OUT.mkdir(parents=True, exist_ok=True)
    ids = Ids()
    for area in COUNTIES:
        rows, bad = county(rng, area, ids)
        if area == "90":
            rows += ties(rng)
        # The bad rows among the good ones (after the first row, which a repeat refers to).
        # The small county's system sends only three of them (its share stays small).
        for b in (bad if area != "18" else bad[3:6]):
            rows.insert(rng.randint(1, len(rows)), b)
        text = HEADER + "\n" + "\n".join(";".join(r) for r in rows) + "\n"
        (OUT / f"{area}.csv").write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
