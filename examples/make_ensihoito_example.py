#!/usr/bin/env python3
"""Writes the small synthetic example input of the `ensihoito` line (SYNTHETIC DATA:
no real persons). Deterministic; rerun to regenerate the committed files.

Besides valid missions it writes one row of every kind of bad input, each of which must
end in quarantine with its reason, and one response over three hours (a warning only).
Times are Finnish local time: a mission drawn into the hour the clocks skip on 30 March
(03:00–03:59) names no instant, and the line quarantines it (rule `local-time-…`).
"""
import random
from pathlib import Path

CHECK = "0123456789ABCDEFHJKLMNPRSTUVWXY"
OUT = Path(__file__).parent / "store"


def hetu(rng, year):
    day, month = rng.randint(1, 28), rng.randint(1, 12)
    sign = "-" if year < 2000 else "A"
    individual = rng.randint(2, 899)
    number = int(f"{day:02d}{month:02d}{year % 100:02d}{individual:03d}")
    return f"{day:02d}{month:02d}{year % 100:02d}{sign}{individual:03d}{CHECK[number % 31]}"


def main():
    rng = random.Random(20250301)
    # Municipality → county, a few of each size: Helsinki 90, Vantaa 04, Tampere 11 (Pirkanmaa), Oulu 17, Inari 19.
    kunnat = ["091"] * 8 + ["092"] * 4 + ["837"] * 5 + ["564"] * 3 + ["148"] * 1
    header = "tehtava_id;hetu;kunta;halytys_aika;kohteessa_aika;kiireellisyys;tehtavakoodi;riskialue;kuljetettu"
    rows = []
    for i in range(1, 181):
        t0 = f"2025-03-{rng.randint(1, 31):02d}T{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d}"
        minutes = rng.choice([4, 6, 8, 9, 11, 12, 15, 18, 22, 25, 31, 40])
        hh, mm, ss = int(t0[11:13]), int(t0[14:16]), int(t0[17:19])
        total = hh * 60 + mm + minutes
        if total >= 24 * 60:
            total = 23 * 60 + 59
        t1 = f"{t0[:11]}{total // 60:02d}:{total % 60:02d}:{ss:02d}"
        arrived = rng.random() > 0.05
        identified = rng.random() > 0.1
        rows.append(";".join([
            f"T{i:05d}",
            hetu(rng, rng.randint(1930, 2020)) if identified else "",
            rng.choice(kunnat),
            t0,
            t1 if arrived else "",
            rng.choices("ABCD", weights=[1, 3, 4, 2])[0],
            rng.choice(["703", "704", "706", "745", "774", "781", "793"]),
            str(rng.choice([1, 1, 2, 3, 4])),
            str(rng.choice([0, 1, 1])),
        ]))
    good = hetu(rng, 1970)
    bad = [
        # invalid identity code (check character)
        f"T90001;131052-308U;091;2025-03-03T10:00:00;2025-03-03T10:09:00;B;704;1;1",
        # unknown municipality
        f"T90002;{good};999;2025-03-03T11:00:00;2025-03-03T11:10:00;C;745;2;0",
        # urgency outside A–D
        f"T90003;;091;2025-03-04T12:00:00;2025-03-04T12:08:00;E;703;1;1",
        # arrival before alarm
        f"T90004;;092;2025-03-05T13:00:00;2025-03-05T12:50:00;A;700;1;1",
        # alarm outside the period
        f"T90005;;837;2025-02-28T23:50:00;2025-03-01T00:02:00;B;706;2;1",
        # duplicate mission id (T00001 appears above)
        f"T00001;;091;2025-03-06T08:00:00;2025-03-06T08:07:00;C;781;1;0",
        # too few fields
        f"T90007;;091;2025-03-07T09:00:00",
        # a timestamp that does not parse
        f"T90008;;091;7.3.2025 klo 9;2025-03-07T09:10:00;B;704;1;1",
        # missing mission id
        f";;564;2025-03-08T10:00:00;2025-03-08T10:11:00;D;793;3;1",
        # transported is not 0/1
        f"T90010;;091;2025-03-09T10:00:00;2025-03-09T10:11:00;D;793;1;kyllä",
        # warning only: response over three hours
        f"T90011;;148;2025-03-10T01:00:00;2025-03-10T04:30:00;D;774;4;0",
        # a quoted field with the delimiter inside (valid)
        f"\"T90012\";;091;2025-03-11T14:00:00;2025-03-11T14:06:00;A;\"703\";1;1",
    ]
    a, b = rows[:120], rows[120:] + bad
    target = OUT / "inbox" / "ensihoito" / "2025-03"
    target.mkdir(parents=True, exist_ok=True)
    # One file from a system that writes a byte-order mark and CRLF line ends.
    (target / "uusimaa.csv").write_bytes(("\ufeff" + header + "\r\n" + "\r\n".join(a) + "\r\n").encode("utf-8"))
    (target / "muut.csv").write_text(header + "\n" + "\n".join(b) + "\n", encoding="utf-8")

    # SYNTHETIC population by county: rounded, plausible magnitudes, not official figures.
    pop = {"01": 99000, "02": 201000, "03": 131000, "04": 277000, "05": 169000, "06": 198000,
           "07": 166000, "08": 158000, "09": 200000, "10": 193000, "11": 528000, "12": 163000,
           "13": 276000, "14": 190000, "15": 175000, "16": 193000, "17": 418000, "18": 69000,
           "19": 176000, "20": 170000, "21": 67000, "90": 674000}
    ref = OUT / "reference" / "vaesto"
    ref.mkdir(parents=True, exist_ok=True)
    (ref / "vaesto_synthetic.csv").write_text(
        "hyvinvointialue;vuosi;vaesto\n" + "".join(f"{k};2025;{v}\n" for k, v in pop.items()), encoding="utf-8")


if __name__ == "__main__":
    main()
