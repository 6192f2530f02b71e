#!/usr/bin/env python3
"""Writes small synthetic example input for the valvonta line (SYNTHETIC DATA: no real
cases). Deterministic. One snapshot of the supervision authority's case register at the end
of 2025-Q1 (`asiat.csv`): every case opened before the quarter's end — cases opened and
resolved in the quarter, opened earlier and resolved in it, still open, and resolved before
the quarter (the line filters those, counted). One small county (18) makes cells that are
suppressed. At the end, one bad row of every kind the line's rules quarantine."""
import datetime
import random
from pathlib import Path

OUT = Path(__file__).parent / "store" / "inbox" / "valvonta" / "2025-Q1"
HEADER = "asia_id;viranomainen;asiatyyppi;hyvinvointialue;vireille_pvm;ratkaisu_pvm;toimenpide"
FIRST, LAST = datetime.date(2025, 1, 1), datetime.date(2025, 3, 31)
COUNTIES = {"90": 300, "06": 160, "11": 100, "18": 12}
TYPES = ["kantelu"] * 5 + ["ilmoitus"] * 3 + ["omavalvonta"] * 2 + ["lupa"] * 2 + ["ennakko"]
MEASURES = ["ei_toimenpiteita"] * 5 + ["ohjaus"] * 3 + ["huomautus"] * 2 + ["maarays", "uhkasakko"]
AUTHORITIES = ["Valvira", "Lupa- ja valvontavirasto"]


def day(rng, first, last):
    return first + datetime.timedelta(days=rng.randint(0, (last - first).days))


def cases(rng):
    rows, n = [], 0
    for area, count in COUNTIES.items():
        for _ in range(count):
            n += 1
            kind = rng.choice(TYPES)
            # About half opened in the quarter, the rest over the two years before.
            opened = day(rng, FIRST, LAST) if rng.random() < 0.5 else day(rng, datetime.date(2024, 1, 1), FIRST - datetime.timedelta(days=1))
            takes = rng.randint(3, 40) if kind == "ennakko" else rng.randint(7, 240)
            resolved = opened + datetime.timedelta(days=takes)
            done = resolved <= LAST
            rows.append([f"V{n:06d}", rng.choice(AUTHORITIES), kind, area, opened.isoformat(),
                         resolved.isoformat() if done else "", rng.choice(MEASURES) if done else ""])
    return rows


def bad_rows():
    """One row of every kind the rules (or the source) quarantine."""
    return [
        ["V000001", "Valvira", "kantelu", "90", "2025-02-01", "", ""],                 # repeated asia_id
        ["V900002", "Valvira", "valitus", "90", "2025-02-01", "", ""],                 # unknown case type
        ["V900003", "Valvira", "kantelu", "99", "2025-02-01", "", ""],                 # unknown county
        ["V900004", "Valvira", "kantelu", "06", "2025-04-03", "", ""],                 # opened after the snapshot
        ["V900005", "Valvira", "ilmoitus", "06", "2025-02-10", "2025-02-01", "ohjaus"],  # resolved before opened
        ["V900006", "Valvira", "lupa", "11", "2025-01-10", "2025-04-02", "ohjaus"],    # resolved after the snapshot
        ["V900007", "Valvira", "kantelu", "11", "2025-01-10", "", "huomautus"],        # measure while open
        ["V900008", "Valvira", "kantelu", "90", "2025-01-10", "2025-03-01", ""],       # resolved without a measure
        ["V900009", "Valvira", "kantelu", "90", "2025-01-10", "2025-03-01", "sakko"],  # unknown measure
        ["V900010", "Valvira", "kantelu", "90", "", "", ""],                           # no opening date
        ["V900011", "Valvira", "kantelu", "90", "2025-02-30", "", ""],                 # not a date
    ]


def main():
    rng = random.Random(741)
    rows = cases(rng) + bad_rows()
    OUT.mkdir(parents=True, exist_ok=True)
    with open(OUT / "asiat.csv", "w", encoding="utf-8", newline="\n") as f:
        f.write(HEADER + "\n")
        for r in rows:
            f.write(";".join(r) + "\n")
    print(f"{OUT / 'asiat.csv'}: {len(rows)} rows")


if __name__ == "__main__":
    main()
