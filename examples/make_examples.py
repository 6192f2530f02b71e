#!/usr/bin/env python3
"""Writes small synthetic example input for the hoitoonpaasy and henkilostomitoitus lines
(SYNTHETIC DATA: no real persons or units). Deterministic; each file also holds bad rows
that must end in quarantine."""
import datetime
import random
from pathlib import Path

CHECK = "0123456789ABCDEFHJKLMNPRSTUVWXY"
OUT = Path(__file__).parent / "store" / "inbox"
# Municipality codes weighted roughly by population: Helsinki, Espoo (Länsi-Uusimaa), Tampere, Oulu, Kuopio, Inari.
KUNNAT = ["091"] * 7 + ["049"] * 3 + ["837"] * 3 + ["564"] * 2 + ["297"] * 2 + ["148"]


def hetu(rng, year):
    day, month = rng.randint(1, 28), rng.randint(1, 12)
    sign = "-" if year < 2000 else "A"
    n = rng.randint(2, 899)
    number = int(f"{day:02d}{month:02d}{year % 100:02d}{n:03d}")
    return f"{day:02d}{month:02d}{year % 100:02d}{sign}{n:03d}{CHECK[number % 31]}"


def hoitoonpaasy():
    rng = random.Random(202503)
    rows = []
    for i in range(1, 241):
        visit = datetime.date(2025, 3, rng.randint(1, 31))
        wait = rng.choice([0, 1, 2, 3, 5, 7, 7, 8, 10, 12, 14, 15, 20, 30, 45, 60, 95, 120])
        need = visit - datetime.timedelta(days=wait)
        contact = need - datetime.timedelta(days=rng.choice([0, 0, 1, 2]))
        rows.append(";".join([
            f"K{i:05d}", hetu(rng, rng.randint(1940, 2020)), rng.choice(KUNNAT),
            contact.isoformat(), need.isoformat(), visit.isoformat(),
            rng.choices(["kiireeton", "kiireellinen"], weights=[4, 1])[0],
            rng.choices(["laakari", "hoitaja", "muu"], weights=[3, 5, 1])[0],
        ]))
    ok = hetu(rng, 1960)
    rows += [
        f"K90001;{ok};091;2025-03-10;2025-03-05;2025-03-12;kiireeton;laakari",    # contact after need
        f"K90002;{ok};091;2025-03-01;2025-03-02;2025-02-27;kiireeton;hoitaja",    # visit before need
        f"K90003;{ok};091;2025-02-01;2025-02-02;2025-02-20;kiireeton;hoitaja",    # outside the period
        f"K90004;{ok};999;2025-03-01;2025-03-02;2025-03-05;kiireeton;hoitaja",    # unknown municipality
        f"K90005;{ok};091;2025-03-01;2025-03-02;2025-03-05;ei-kiireellinen;hoitaja",  # unknown urgency
        f"K90006;{ok};091;2025-03-01;2025-03-02;2025-03-05;kiireeton;kirurgi",    # unknown profession
        f"K90007;;091;2025-03-01;2025-03-02;2025-03-05;kiireeton;hoitaja",        # identity code missing
        f"K00001;{ok};091;2025-03-01;2025-03-02;2025-03-05;kiireeton;hoitaja",    # duplicate visit id
        f"K90009;{ok};091;1.3.2025;2025-03-02;2025-03-05;kiireeton;hoitaja",      # date not ISO
    ]
    target = OUT / "hoitoonpaasy" / "2025-03"
    target.mkdir(parents=True, exist_ok=True)
    header = "kaynti_id;hetu;kunta;yhteydenotto_pvm;hoidon_tarve_pvm;kaynti_pvm;kiireellisyys;ammattiryhma"
    (target / "avohilmo.csv").write_text(header + "\n" + "\n".join(rows) + "\n", encoding="utf-8")


def henkilostomitoitus():
    rng = random.Random(2025)
    rows = []
    units = [(f"Y{n:04d}", rng.choice(KUNNAT)) for n in range(1, 31)]
    for unit, kunta in units:
        clients = rng.randint(12, 40)
        for week in range(1, 14):
            direct = round(clients * rng.uniform(0.55, 0.85) * 38.25, 1)
            rows.append(f"{unit};{kunta};2025-W{week:02d};{clients};{direct}")
    rows += [
        "Y0001;091;2025-W01;20;500.0",       # duplicate unit-week
        "Y9002;091;2025-W05;0;300.0",        # no clients
        "Y9003;091;2025-W06;20;-5",          # negative hours
        "Y9004;091;2025-W14;20;400.0",       # week 14: its Thursday is in April, outside Q1
        "Y9005;999;2025-W07;20;400.0",       # unknown municipality
        "Y9006;091;2025-7;20;400.0",         # not an ISO week
    ]
    target = OUT / "henkilostomitoitus" / "2025-Q1"
    target.mkdir(parents=True, exist_ok=True)
    header = "yksikko_id;kunta;viikko;asiakkaat;valiton_tyoaika_h"
    (target / "yksikot.csv").write_text(header + "\n" + "\n".join(rows) + "\n", encoding="utf-8")


if __name__ == "__main__":
    hoitoonpaasy()
    henkilostomitoitus()
