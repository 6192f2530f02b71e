#!/usr/bin/env python3
"""Writes tests/data/talous/2025/talous.xlsx (synthetic): a title row, a header on row 2,
three data rows, a blank row and a row with a spreadsheet error. Needs openpyxl."""
import datetime
from pathlib import Path

from openpyxl import Workbook

wb = Workbook()
wb.active.title = "Kansi"
wb.active["A1"] = "Synteettinen testiaineisto"
ws = wb.create_sheet("Tuloslaskelma")
ws.append(["Hyvinvointialueen talous 2025 (synteettinen)"])
ws.append(["tili", "euroa", "pvm", "huom"])
ws.append([3000, 1250000.5, datetime.date(2025, 1, 31), "x"])
ws.append(["3100", 42, datetime.datetime(2025, 2, 1, 12, 30), None])
ws.append([4000, None, datetime.date(2025, 3, 1), None])
ws.append([])
ws.append([5000, None, datetime.date(2025, 3, 2), None])
error = ws.cell(row=ws.max_row, column=2, value="#DIV/0!")
error.data_type = "e"
out = Path(__file__).parent / "data" / "talous" / "2025" / "talous.xlsx"
wb.save(out)
