#!/usr/bin/env python3
"""Writes small synthetic example input for the talous line (SYNTHETIC DATA: no real
county's accounts). One workbook per county, examples/store/inbox/talous/2025/<county>.xlsx,
sheet `Talous`, a header row, one row per service class of palveluluokat.csv and a `YHT`
row that is the sum of the rows above it (as a spreadsheet's SUM would be). Euros are
numeric cells or text in Finnish format (`1 234 567,89`, groups by space, no-break space or
narrow no-break space) or plain text (`1234567.89`).

The year is 2025, the year the shipped population reference covers. The bad parts:
- 13: the YHT row's operating income is 150 000 € off: the wrong workbook is quarantined
  whole (`totals-mismatch`);
- 14: the YHT row is 0,75 € off: within the 1 € tolerance, accepted;
- 18: no workbook at all: a run warning names the county;
- 05: an extra row of an unknown service class (P99);
- 06: negative operating income (−12 500,00, with the minus sign U+2212);
- 08: a second row for class P03 (the first one is kept, the second quarantined);
- 10: operating expenses written as `ei tiedossa` (not a number; its income is 0).

Deterministic: fixed workbook properties, and the zip is rewritten with fixed timestamps.
Needs openpyxl."""
import datetime
import io
import os
import random
import re
import zipfile
from decimal import Decimal
from pathlib import Path

from openpyxl import Workbook

ROOT = Path(__file__).resolve().parent
OUT = ROOT / "store" / "inbox" / "talous" / "2025"
# The shared reference beside the repository (VALTAVA_SHARED overrides, e.g. for a worktree).
SHARED = Path(os.environ.get("VALTAVA_SHARED", ROOT.parent.parent / "shared"))
CLASSES = SHARED / "reference" / "palveluluokat.csv"
POPULATION = ROOT / "store" / "reference" / "vaesto" / "vaesto_synthetic.csv"
HEADER = ["hyvinvointialue", "palveluluokka", "toimintakulut", "toimintatuotot"]
# Euros per inhabitant and year by class (roughly the national shares) and income shares.
PER_CAPITA = {"P01": 420, "P02": 210, "P03": 1650, "P04": 120, "P05": 260, "P06": 1150,
              "P07": 480, "P08": 520, "P09": 230, "P10": 190, "P11": 140, "P12": 380}
MISSING = "18"
FIXED = datetime.datetime(2025, 1, 1, 0, 0, 0)
CENT = Decimal("0.01")


def finnish(x, space):
    """x as Finnish text: groups of three separated by `space`, decimal comma, U+2212 minus."""
    sign = "\u2212" if x < 0 else ""
    whole, frac = f"{abs(x):.2f}".split(".")
    groups = re.sub(r"\B(?=(\d{3})+(?!\d))", space, whole)
    return f"{sign}{groups},{frac}"


def cell(rng, x):
    """x as a numeric cell or as text in one of the forms counties write."""
    form = rng.choices(["number", "space", "nbsp", "narrow", "plain"], weights=[5, 2, 2, 1, 1])[0]
    if form == "number":
        return int(x) if x == x.to_integral_value() else float(x)
    if form == "plain":
        return f"{x:.2f}"
    return finnish(x, {"space": " ", "nbsp": "\u00a0", "narrow": "\u202f"}[form])


def county_rows(rng, area, people, classes):
    """(class, expenses, income) of a county: the class rows, then its bad rows."""
    rows = []
    for c in classes:
        kulut = (Decimal(people * PER_CAPITA[c]) * Decimal(rng.uniform(0.85, 1.15))).quantize(CENT)
        tuotot = (kulut * Decimal(rng.uniform(0.02, 0.18))).quantize(CENT)
        rows.append([c, kulut, tuotot])
    if area == "05":
        rows.append(["P99", Decimal("125000.00"), Decimal("0.00")])
    if area == "06":
        rows[10][2] = Decimal("-12500.00")
    if area == "08":
        rows.append(["P03", Decimal("2500000.50"), Decimal("100000.00")])
    if area == "10":
        rows[6] = ["P07", "ei tiedossa", Decimal("0.00")]
    return rows


def workbook(rng, area, rows):
    wb = Workbook()
    ws = wb.active
    ws.title = "Talous"
    ws.append(HEADER)
    for c, kulut, tuotot in rows:
        kulut = kulut if isinstance(kulut, str) else cell(rng, kulut)
        tuotot = finnish(tuotot, "\u00a0") if tuotot < 0 else cell(rng, tuotot)
        ws.append([area, c, kulut, tuotot])
    # YHT: the sum of the rows above (text that is not a number counts as nothing).
    kulut = sum((r[1] for r in rows if not isinstance(r[1], str)), Decimal(0))
    tuotot = sum((r[2] for r in rows), Decimal(0))
    if area == "13":
        tuotot += Decimal("150000")
    if area == "14":
        kulut += Decimal("0.75")
    ws.append([area, "YHT", cell(rng, kulut), cell(rng, tuotot)])
    wb.properties.creator = "Valtava example (synthetic)"
    wb.properties.created = FIXED
    wb.properties.modified = FIXED
    return wb


def save(wb, path):
    """Saves with fixed zip timestamps and fixed core-property dates: the bytes depend only
    on the content."""
    raw = io.BytesIO()
    wb.save(raw)
    stamp = FIXED.strftime("%Y-%m-%dT%H:%M:%SZ")
    with zipfile.ZipFile(raw) as src, zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            data = src.read(info.filename)
            if info.filename == "docProps/core.xml":
                data = re.sub(rb"(<dcterms:(created|modified)[^>]*>)[^<]*", rb"\g<1>" + stamp.encode(), data)
            fixed = zipfile.ZipInfo(info.filename, date_time=FIXED.timetuple()[:6])
            fixed.compress_type = zipfile.ZIP_DEFLATED
            fixed.external_attr = 0o600 << 16
            dst.writestr(fixed, data)


def main():
    rng = random.Random(2025_7)
    classes = [line.split(",")[0] for line in CLASSES.read_text(encoding="utf-8").splitlines()[1:] if line]
    people = {}
    for line in POPULATION.read_text(encoding="utf-8").splitlines()[1:]:
        area, year, n = line.split(";")
        if year == "2025":
            people[area] = int(n)
    OUT.mkdir(parents=True, exist_ok=True)
    for old in OUT.glob("*.xlsx"):
        old.unlink()
    for area in sorted(people):
        rows = county_rows(rng, area, people[area], classes)
        if area != MISSING:
            save(workbook(rng, area, rows), OUT / f"{area}.xlsx")


if __name__ == "__main__":
    main()
