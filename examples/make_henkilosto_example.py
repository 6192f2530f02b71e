#!/usr/bin/env python3
"""Writes small synthetic example input for the henkilosto line (SYNTHETIC DATA: no real
persons). Deterministic. One file per county (the submitter is the file's name), each also
holding bad rows of every kind the line's rules quarantine and employments outside the
quarter that the line filters (counted, not quarantined)."""
import datetime
import random
from pathlib import Path

CHECK = "0123456789ABCDEFHJKLMNPRSTUVWXY"
OUT = Path(__file__).parent / "store" / "inbox" / "henkilosto" / "2025-Q1"
HEADER = "tyosuhde_id;hetu;hyvinvointialue;ammattikoodi;alkupvm;loppupvm;tyoaikaprosentti"
# Occupation codes (classification 2010, 5 digits): every group of the line and some others.
CODES = (["22110", "22120", "22121"] * 2 + ["22210", "22220", "32210", "32211", "32220"] * 4
         + ["53210", "53211", "53220"] * 4 + ["26350", "34120"] * 2 + ["41100", "96290", "24110", "33440"])
COUNTIES = {"90": 220, "06": 120, "11": 60}


def hetu(rng, year):
    day, month = rng.randint(1, 28), rng.randint(1, 12)
    sign = "-" if year < 2000 else "A"
    n = rng.randint(2, 899)
    number = int(f"{day:02d}{month:02d}{year % 100:02d}{n:03d}")
    return f"{day:02d}{month:02d}{year % 100:02d}{sign}{n:03d}{CHECK[number % 31]}"


def day(rng, first, last):
    return first + datetime.timedelta(days=rng.randint(0, (last - first).days))


def county(rng, area, n):
    rows = []
    people = [hetu(rng, rng.randint(1960, 2003)) for _ in range(int(n * 0.85))]
    for i in range(1, n + 1):
        # Some persons have two employments (also in different groups).
        person = people[i - 1] if i <= len(people) else rng.choice(people)
        kind = rng.choices(["long", "ends", "starts", "inside"], weights=[6, 2, 2, 1])[0]
        start = day(rng, datetime.date(2010, 1, 1), datetime.date(2024, 12, 31))
        end = ""
        if kind == "ends":
            end = day(rng, datetime.date(2025, 1, 1), datetime.date(2025, 3, 31)).isoformat()
        elif kind == "starts":
            start = day(rng, datetime.date(2025, 1, 2), datetime.date(2025, 3, 31))
        elif kind == "inside":
            start = day(rng, datetime.date(2025, 1, 1), datetime.date(2025, 2, 28))
            end = day(rng, start, datetime.date(2025, 3, 31)).isoformat()
        if kind == "long" and rng.random() < 0.2:
            end = day(rng, datetime.date(2025, 3, 31), datetime.date(2026, 12, 31)).isoformat()
        percent = rng.choice(["100", "100", "100", "80", "60", "50", "93.33", "75,5".replace(",", ".")])
        rows.append(";".join([f"{area}-{i:05d}", person, area, rng.choice(CODES), start.isoformat(), end, percent]))
    ok = hetu(rng, 1980)
    rows += [
        # Outside the quarter: filtered (counted), not quarantined.
        f"{area}-90001;{ok};{area};32210;2020-05-01;2024-12-31;100",
        f"{area}-90002;{ok};{area};32210;2025-04-01;;100",
        f"{area}-90003;{hetu(rng, 1975)};{area};53210;2019-01-01;2024-06-30;60",
        # Quarantined by the rules.
        f"{area}-00001;{ok};{area};53210;2022-01-01;;100",                # duplicate id
        f"{area}-90010;010190-1234;{area};22110;2022-01-01;;100",         # invalid hetu
        f"{area}-90011;{ok};99;22110;2022-01-01;;100",                    # unknown county
        f"{area}-90012;{ok};{area};2211;2022-01-01;;100",                 # code not 5 digits
        f"{area}-90013;{ok};{area};22A10;2022-01-01;;100",                # code not digits
        f"{area}-90014;{ok};{area};32210;2022-01-01;;0",                  # percent 0
        f"{area}-90015;{ok};{area};32210;2022-01-01;;120",                # percent > 100
        f"{area}-90016;{ok};{area};32210;2025-03-01;2025-02-01;100",      # ends before it starts
        f"{area}-90017;{ok};{area};32210;2025-02-30;;100",                # no such date
        f"{area}-90018;;{area};32210;2022-01-01;;100",                    # hetu missing
        f"{area}-90019;{ok};{area};32210;2022-01-01;;sata",               # percent not a number
    ]
    return rows


def main():
    rng = random.Random(2025_1)
    OUT.mkdir(parents=True, exist_ok=True)
    for area, n in COUNTIES.items():
        (OUT / f"{area}.csv").write_text(HEADER + "\n" + "\n".join(county(rng, area, n)) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
