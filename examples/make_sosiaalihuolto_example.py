#!/usr/bin/env python3
"""Writes small synthetic example input for the sosiaalihuolto line (SYNTHETIC DATA: no real
persons; organisation and document OIDs are made up). Deterministic.

One HL7 CDA R2 document per file (namespace urn:hl7-org:v3) in
store/inbox/sosiaalihuolto/2025-H1/: child-welfare notifications (LSILM) and service-need
assessments (PTA) of January–June 2025 in five counties (large and small, so that some cells
are published and some suppressed). The data elements are observations named by
code/@code (system urn:valtava:sosiaalihuolto-tietosisalto): kunta (value/@code), and the
HL7 TS dates vastaanotettu, arvioitu (LSILM) and valmistunut (PTA) (value/@value, YYYYMMDD).

Besides the regular documents (`sh-2025-NNNNNN.xml`), the files `x-NN-*.xml` hold the cases
at the boundaries of the time limits (7th working day, across Easter, May Day and Ascension
Day, a weekend, exactly three months incl. a day clamped to the month's end) and bad
documents of every kind the line catches (each named for what is wrong with it)."""
import calendar
import datetime
import random
from pathlib import Path
from xml.sax.saxutils import escape

CHECK = "0123456789ABCDEFHJKLMNPRSTUVWXY"
ROOT = Path(__file__).parent
OUT = ROOT / "store" / "inbox" / "sosiaalihuolto" / "2025-H1"
HOLIDAYS = {datetime.date(2025, 1, 1), datetime.date(2025, 1, 6), datetime.date(2025, 4, 18),
            datetime.date(2025, 4, 21), datetime.date(2025, 5, 1), datetime.date(2025, 5, 29),
            datetime.date(2025, 6, 20), datetime.date(2025, 6, 21)}
FIRST, LAST = datetime.date(2025, 1, 1), datetime.date(2025, 6, 30)
# county: (weight, municipalities, organisation name); custodian OIDs are synthetic.
COUNTIES = {
    "90": (180, ["091"], "Helsingin kaupunki, kasvatuksen ja koulutuksen toimiala"),
    "08": (100, ["837", "837", "536"], "Pirkanmaan hyvinvointialue"),
    "19": (70, ["564"], "Pohjois-Pohjanmaan hyvinvointialue"),
    "21": (40, ["698", "890"], "Lapin hyvinvointialue"),
    "05": (14, ["853"], "Varsinais-Suomen hyvinvointialue"),
}
KINDS = {"LSILM": "Lastensuojeluilmoitus", "PTA": "Palvelutarpeen arviointi",
         "SHASIAK": "Sosiaalihuollon asiakaskertomus"}
ELEMENTS = "urn:valtava:sosiaalihuolto-tietosisalto"
KUNTA_SYSTEM = "urn:oid:1.2.246.537.6.21"


def hetu(rng, born, temporary=False):
    sign = "A" if born.year >= 2000 and rng.random() < 0.8 else ("B" if born.year >= 2000 else "-")
    n = rng.randint(900, 999) if temporary else rng.randint(2, 899)
    number = int(f"{born.day:02d}{born.month:02d}{born.year % 100:02d}{n:03d}")
    return f"{born.day:02d}{born.month:02d}{born.year % 100:02d}{sign}{n:03d}{CHECK[number % 31]}"


def working_day(d):
    return d.weekday() < 5 and d not in HOLIDAYS


def after_working_days(d, n):
    """The n-th working day after d (d itself for n = 0)."""
    while n > 0:
        d += datetime.timedelta(days=1)
        n -= working_day(d)
    return d


def add_months(d, n):
    y, m = divmod(d.month - 1 + n, 12)
    y, m = d.year + y, m + 1
    return datetime.date(y, m, min(d.day, calendar.monthrange(y, m)[1]))


def ts(d):
    return d.strftime("%Y%m%d") if isinstance(d, datetime.date) else d


def observation(name, value):
    if name == "kunta":
        v = f'<value xsi:type="CD" code="{value}" codeSystem="{KUNTA_SYSTEM}" codeSystemName="Kunnat"/>'
    else:
        v = f'<value xsi:type="TS" value="{ts(value)}"/>'
    return (f'          <entry>\n            <observation classCode="OBS" moodCode="EVN">\n'
            f'              <code code="{name}" codeSystem="{ELEMENTS}"/>\n              {v}\n'
            f'            </observation>\n          </entry>\n')


def document(doc):
    """The CDA R2 XML of a document: dict with id, laji, hetu, county, born, elements."""
    county = doc["county"]
    org = f"1.2.246.10.9900{county}00.10.0"
    created = doc.get("created", datetime.datetime(2025, 1, 2, 9, 0))
    ids = [f'<id root="1.2.246.21" extension="{doc["hetu"]}"/>'] if doc["hetu"] else []
    # A client number of the organisation: before the identity code in some documents.
    local = f'<id root="{org}.1" extension="AS{doc["seq"]:07d}"/>'
    ids = [local] + ids if doc["seq"] % 3 == 0 else ids + [local]
    entries = "".join(observation(k, v) for k, v in doc["elements"])
    title = KINDS[doc["laji"]]
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<ClinicalDocument xmlns="urn:hl7-org:v3" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
  <realmCode code="FI"/>
  <typeId root="2.16.840.1.113883.1.3" extension="POCD_HD000040"/>
  <templateId root="1.2.246.777.11.2023.1"/>
  <id root="{org}.2025" extension="{doc["id"]}"/>
  <code code="{doc["laji"]}" codeSystem="1.2.246.537.6.1263" codeSystemName="Sosiaalihuollon asiakirjarakenteet" displayName="{title}"/>
  <title>{title}</title>
  <effectiveTime value="{created.strftime("%Y%m%d%H%M%S")}+0{3 if 4 <= created.month <= 10 else 2}00"/>
  <confidentialityCode code="5" codeSystem="1.2.246.537.5.40153" displayName="Erittäin salassa pidettävä"/>
  <languageCode code="fi-FI"/>
  <recordTarget>
    <patientRole>
      {chr(10).join("      " + i if n else i for n, i in enumerate(ids))}
      <patient>
        <birthTime value="{doc["born"].strftime("%Y%m%d")}"/>
      </patient>
    </patientRole>
  </recordTarget>
  <author>
    <time value="{created.strftime("%Y%m%d%H%M%S")}"/>
    <assignedAuthor>
      <id root="1.2.246.537.26" extension="{100000000 + doc["seq"] % 37}"/>
      <assignedPerson><name><given>Synteettinen</given><family>Sosiaalityöntekijä</family></name></assignedPerson>
      <representedOrganization><id root="{org}"/><name>{escape(COUNTIES[county][2])}</name></representedOrganization>
    </assignedAuthor>
  </author>
  <custodian>
    <assignedCustodian>
      <representedCustodianOrganization><id root="{org}"/><name>{escape(COUNTIES[county][2])}</name></representedCustodianOrganization>
    </assignedCustodian>
  </custodian>
  <component>
    <structuredBody>
      <component>
        <section>
          <code code="tiedot" codeSystem="{ELEMENTS}"/>
          <title>{title}: tiedot</title>
          <text>Synteettinen esimerkkiaineisto.</text>
{entries}        </section>
      </component>
    </structuredBody>
  </component>
</ClinicalDocument>
"""


def day(rng, first, last):
    return first + datetime.timedelta(days=rng.randint(0, (last - first).days))


def regular(rng, seq, children):
    county = rng.choices(list(COUNTIES), [c[0] for c in COUNTIES.values()])[0]
    kunta = rng.choice(COUNTIES[county][1])
    received = day(rng, FIRST, LAST)
    while received.weekday() >= 5 and rng.random() < 0.8:
        received = day(rng, FIRST, LAST)
    known = children.get(kunta, [])
    if known and rng.random() < 0.3:
        child, born = rng.choice(known)  # another document of the same child
    else:
        born = day(rng, received - datetime.timedelta(days=17 * 365), received - datetime.timedelta(days=20))
        child = hetu(rng, born, temporary=rng.random() < 0.02)
        children.setdefault(kunta, []).append((child, born))
    laji = "LSILM" if rng.random() < 0.65 else "PTA"
    elements = [("kunta", kunta), ("vastaanotettu", received)]
    if laji == "LSILM" and rng.random() < 0.9:
        elements.append(("arvioitu", after_working_days(received, rng.choice([0, 1, 1, 2, 3, 3, 4, 5, 5, 6, 7, 7, 8, 9, 12]))))
    if laji == "PTA" and rng.random() < 0.8:
        elements.append(("valmistunut", received + datetime.timedelta(days=rng.randint(7, 125))))
    return {"id": f"SH-2025-{seq:06d}", "seq": seq, "laji": laji, "hetu": child, "born": born,
            "county": county, "elements": elements,
            "created": datetime.datetime.combine(received, datetime.time(8 + seq % 9, seq % 60))}


def D(y, m, d):
    return datetime.date(y, m, d)


def special(rng, first_doc):
    """(file stem, document) of the boundary cases and the bad documents."""
    def doc(seq, laji, county, kunta, received, **more):
        born = more.pop("born", D(2015, 5, 17))
        elements = [("kunta", kunta)] + ([("vastaanotettu", received)] if received else [])
        elements += [(k, v) for k, v in more.items() if k in ("arvioitu", "valmistunut")]
        return {"id": f"SH-2025-9{seq:05d}", "seq": 900000 + seq, "laji": laji,
                "hetu": more.get("hetu", hetu(rng, born)), "born": born, "county": county,
                "elements": elements}
    return [
        # Boundaries of the 7 working days (all published, in 90 / 091).
        ("x-01-7-arkipaiva", doc(1, "LSILM", "90", "091", D(2025, 3, 3), arvioitu=D(2025, 3, 12))),
        ("x-02-8-arkipaiva", doc(2, "LSILM", "90", "091", D(2025, 3, 3), arvioitu=D(2025, 3, 13))),
        # Received on Maundy Thursday: Good Friday, Easter Monday and May Day are no working
        # days, so 30 April is the 7th working day (without holidays it would be the 9th) …
        ("x-03-paasiainen-7", doc(3, "LSILM", "90", "091", D(2025, 4, 17), arvioitu=D(2025, 4, 30))),
        # … and 2 May the 8th.
        ("x-04-paasiainen-vappu-8", doc(4, "LSILM", "90", "091", D(2025, 4, 17), arvioitu=D(2025, 5, 2))),
        # Ascension Day (29 May): 2 June is the 7th working day after 21 May.
        ("x-05-helatorstai-7", doc(5, "LSILM", "90", "091", D(2025, 5, 21), arvioitu=D(2025, 6, 2))),
        # Assessed on a Saturday: 5 working days after Friday; received on a Saturday.
        ("x-06-lauantaina", doc(6, "LSILM", "90", "091", D(2025, 2, 7), arvioitu=D(2025, 2, 15))),
        ("x-07-vastaanotettu-lauantaina", doc(7, "LSILM", "90", "091", D(2025, 2, 8), arvioitu=D(2025, 2, 18))),
        ("x-08-samana-paivana", doc(8, "LSILM", "90", "091", D(2025, 1, 2), arvioitu=D(2025, 1, 2))),
        ("x-09-ei-arvioitu", doc(9, "LSILM", "90", "091", D(2025, 6, 27))),
        # Three calendar months: exactly, a day late, and clamped to the month's end
        # (31 January + 3 months = 30 April; 31 March + 3 months = 30 June).
        ("x-10-3-kk", doc(10, "PTA", "90", "091", D(2025, 3, 15), valmistunut=D(2025, 6, 15))),
        ("x-11-3-kk-ja-paiva", doc(11, "PTA", "90", "091", D(2025, 3, 15), valmistunut=D(2025, 6, 16))),
        ("x-12-tammikuun-31-3-kk", doc(12, "PTA", "90", "091", D(2025, 1, 31), valmistunut=D(2025, 4, 30))),
        ("x-13-tammikuun-31-yli", doc(13, "PTA", "90", "091", D(2025, 1, 31), valmistunut=D(2025, 5, 1))),
        ("x-14-maaliskuun-31-3-kk", doc(14, "PTA", "90", "091", D(2025, 3, 31), valmistunut=D(2025, 6, 30))),
        ("x-15-maaliskuun-31-yli", doc(15, "PTA", "90", "091", D(2025, 3, 31), valmistunut=D(2025, 7, 1))),
        ("x-16-kesken", doc(16, "PTA", "90", "091", D(2025, 6, 2))),
        # The day before the 18th birthday: still a child.
        ("x-17-paivaa-ennen-18", doc(17, "LSILM", "90", "091", D(2025, 3, 10), born=D(2007, 3, 11), arvioitu=D(2025, 3, 11))),
        # Quarantined.
        ("x-20-hetu-virheellinen", doc(20, "LSILM", "90", "091", D(2025, 2, 3), hetu="131052-308U", arvioitu=D(2025, 2, 4))),
        ("x-21-hetu-puuttuu", doc(21, "LSILM", "90", "091", D(2025, 2, 3), hetu="", arvioitu=D(2025, 2, 4))),
        ("x-22-tasan-18", doc(22, "LSILM", "90", "091", D(2025, 3, 10), born=D(2007, 3, 10), arvioitu=D(2025, 3, 11))),
        ("x-23-yli-18", doc(23, "PTA", "08", "837", D(2025, 4, 7), born=D(2005, 9, 1), valmistunut=D(2025, 5, 7))),
        ("x-24-kunta-tuntematon", doc(24, "LSILM", "90", "999", D(2025, 2, 10), arvioitu=D(2025, 2, 11))),
        ("x-25-ennen-jaksoa", doc(25, "LSILM", "90", "091", D(2024, 12, 31), arvioitu=D(2025, 1, 2))),
        ("x-26-jakson-jalkeen", doc(26, "PTA", "90", "091", D(2025, 7, 1))),
        ("x-27-arvioitu-ennen-vastaanottoa", doc(27, "LSILM", "08", "837", D(2025, 5, 12), arvioitu=D(2025, 5, 9))),
        ("x-28-valmistunut-ennen-vastaanottoa", doc(28, "PTA", "19", "564", D(2025, 5, 12), valmistunut=D(2025, 5, 2))),
        ("x-29-kaksoiskappale", first_doc),
        ("x-30-laji-tuntematon", doc(30, "SHASIAK", "90", "091", D(2025, 3, 4))),
        ("x-31-vastaanotettu-puuttuu", doc(31, "LSILM", "90", "091", None, arvioitu=D(2025, 3, 4))),
        ("x-32-paivaa-ei-ole", doc(32, "LSILM", "90", "091", "20250230", arvioitu=D(2025, 3, 4))),
        ("x-33-arvioitu-arvioinnissa", doc(33, "PTA", "90", "091", D(2025, 3, 4), arvioitu=D(2025, 3, 5))),
        ("x-34-valmistunut-ilmoituksessa", doc(34, "LSILM", "90", "091", D(2025, 3, 4), valmistunut=D(2025, 3, 5))),
    ]


def main():
    rng = random.Random(2025_2)
    OUT.mkdir(parents=True, exist_ok=True)
    for old in OUT.glob("*.xml"):
        old.unlink()
    children = {}
    docs = [regular(rng, i, children) for i in range(1, 421)]
    for d in docs:
        (OUT / f"{d['id'].lower()}.xml").write_text(document(d), encoding="utf-8")
    for stem, d in special(rng, docs[0]):
        (OUT / f"{stem}.xml").write_text(document(d), encoding="utf-8")


if __name__ == "__main__":
    main()
