#!/usr/bin/env python3
"""Writes hostile and good submissions for tests/lines/hostile.yaml into a folder:

- `<prefix>.xlsx`: a good workbook (header `tili, euroa`, two rows);
- `<prefix>_pommi.xlsx`: a spreadsheet bomb, 1-2 KB, whose sheet holds the header, one row
  and a cell at XFD1048576 (a reader that allocates the used range densely needs
  1 048 576 x 16 384 cells);
- `<prefix>.xml`: a good CDA document;
- `<prefix>_syva.xml`: a CDA document of 3 MB nested 1 000 000 elements deep.

Usage: make_hostile.py FOLDER PREFIX
"""
import sys
import zipfile
from pathlib import Path

CONTENT_TYPES = (
    '<?xml version="1.0"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
    '<Override PartName="/xl/workbook.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/>'
    '<Override PartName="/xl/worksheets/sheet1.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/></Types>'
)
RELS = (
    '<?xml version="1.0"?><Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
    '<Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument" Target="xl/workbook.xml"/></Relationships>'
)
WORKBOOK = (
    '<?xml version="1.0"?><workbook xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" '
    'xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships">'
    '<sheets><sheet name="Tilit" sheetId="1" r:id="rId1"/></sheets></workbook>'
)
WORKBOOK_RELS = (
    '<?xml version="1.0"?><Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
    '<Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/worksheet" Target="worksheets/sheet1.xml"/></Relationships>'
)


def cell(ref, text):
    return f'<c r="{ref}" t="inlineStr"><is><t>{text}</t></is></c>'


def workbook(path, rows, dimension):
    sheet = (
        '<?xml version="1.0"?><worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main">'
        f'<dimension ref="{dimension}"/><sheetData>{rows}</sheetData></worksheet>'
    )
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("[Content_Types].xml", CONTENT_TYPES)
        z.writestr("_rels/.rels", RELS)
        z.writestr("xl/workbook.xml", WORKBOOK)
        z.writestr("xl/_rels/workbook.xml.rels", WORKBOOK_RELS)
        z.writestr("xl/worksheets/sheet1.xml", sheet)


def cda(body):
    return (
        '<?xml version="1.0"?><ClinicalDocument xmlns="urn:hl7-org:v3">'
        "<custodian><assignedCustodian><representedCustodianOrganization>"
        "<name>Testisairaala</name>"
        "</representedCustodianOrganization></assignedCustodian></custodian>"
        f"{body}</ClinicalDocument>"
    )


def main():
    folder, prefix = Path(sys.argv[1]), sys.argv[2]
    folder.mkdir(parents=True, exist_ok=True)
    header = f'<row r="1">{cell("A1", "tili")}{cell("B1", "euroa")}</row>'
    good = header + f'<row r="2">{cell("A2", "3000")}<c r="B2"><v>12.5</v></c></row>'
    workbook(folder / f"{prefix}.xlsx", good + f'<row r="3">{cell("A3", "3100")}<c r="B3"><v>1</v></c></row>', "A1:B3")
    bomb = good + '<row r="1048576"><c r="XFD1048576"><v>1</v></c></row>'
    workbook(folder / f"{prefix}_pommi.xlsx", bomb, "A1:XFD1048576")
    (folder / f"{prefix}.xml").write_text(cda(""))
    depth = 1_000_000
    (folder / f"{prefix}_syva.xml").write_text(cda("<a>" * depth + "</a>" * depth))


main()
