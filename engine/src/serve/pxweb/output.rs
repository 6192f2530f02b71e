//! The csv and xlsx writers of a data answer.
//!
//! Both lay the table out as its published CSV is: one row per combination of the
//! selected periods and dimension codes (the stub), one column per selected measure (the
//! heading). A cell is the published value written exactly (shortest round-trip form),
//! or the symbol of why there is none (`..` suppressed, `...` not in the period's release,
//! `.` no figure). `outputFormatParams` choose codes (the default), labels or both, a
//! title line, and the csv separator.

use rust_xlsxwriter::{Format as XlsxFormat, Workbook, XlsxError};

use crate::serve::pxweb::Lang;
use crate::serve::pxweb::metadata::legend;
use crate::serve::pxweb::model::{Cell, Model, Variable};

/// What the stub's cells and the header show.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Labels {
    /// `UseCodes`.
    Codes,
    /// `UseTexts`.
    Texts,
    /// `UseCodesAndTexts`.
    Both,
}

/// The `outputFormatParams` of csv and xlsx.
#[derive(Debug, Clone, Copy)]
pub(super) struct TextStyle {
    pub(super) labels: Labels,
    /// A first line with the table's label.
    pub(super) title: bool,
    /// Between csv fields.
    pub(super) separator: u8,
}

impl Default for TextStyle {
    fn default() -> Self {
        TextStyle {
            labels: Labels::Codes,
            title: false,
            separator: b',',
        }
    }
}

/// A cell as text: the value written exactly, or its symbol.
pub(super) fn cell_text(c: Cell) -> String {
    match c {
        Cell::Value(v) => format!("{v}"),
        other => other.symbol().unwrap_or_default().to_string(),
    }
}

/// The cube as rows: a header, then the stub's codes and the measures' cells of each row.
struct Grid<'a> {
    model: &'a Model,
    selection: &'a [Vec<usize>],
    cells: &'a [Cell],
    labels: Labels,
}

impl Grid<'_> {
    /// The stub's variables (all but the contents).
    fn stub(&self) -> usize {
        self.selection.len().saturating_sub(1)
    }

    fn measures(&self) -> usize {
        self.selection.last().map_or(0, Vec::len)
    }

    /// A code as the style shows it.
    fn text(&self, v: &Variable, i: usize) -> String {
        match self.labels {
            Labels::Codes => v.values[i].clone(),
            Labels::Texts => v.texts[i].clone(),
            Labels::Both => format!("{} {}", v.values[i], v.texts[i]),
        }
    }

    /// The stub's variables, then the selected measures.
    fn header(&self) -> Vec<String> {
        let mut out: Vec<String> = (self.model.variables[..self.stub()].iter())
            .map(|v| match self.labels {
                Labels::Codes => v.code.clone(),
                Labels::Texts => v.label.clone(),
                Labels::Both => format!("{} {}", v.code, v.label),
            })
            .collect();
        let contents = self.model.contents();
        if let Some(measures) = self.selection.last() {
            out.extend(measures.iter().map(|&m| self.text(contents, m)));
        }
        out
    }

    fn rows(&self) -> usize {
        match self.measures() {
            0 => 0,
            m => self.cells.len() / m,
        }
    }

    /// Row `r`'s stub: its code of each stub variable.
    fn row(&self, r: usize) -> Vec<String> {
        let stub = &self.selection[..self.stub()];
        let mut positions = Vec::with_capacity(stub.len());
        let mut rest = r;
        for chosen in stub.iter().rev() {
            let n = chosen.len().max(1);
            positions.push(rest % n);
            rest /= n;
        }
        positions.reverse();
        (self.model.variables.iter().zip(stub).zip(positions))
            .map(|((v, chosen), p)| self.text(v, chosen[p]))
            .collect()
    }

    /// Row `r`'s cells.
    fn cells_of(&self, r: usize) -> &[Cell] {
        let m = self.measures();
        &self.cells[r * m..(r + 1) * m]
    }
}

/// The data as CSV (RFC 4180 quoting, `\n` between records).
pub(super) fn csv(
    model: &Model,
    selection: &[Vec<usize>],
    cells: &[Cell],
    style: &TextStyle,
) -> String {
    let grid = Grid {
        model,
        selection,
        cells,
        labels: style.labels,
    };
    let sep = style.separator as char;
    let mut out = String::new();
    if style.title {
        record(&mut out, std::slice::from_ref(&model.label), sep);
    }
    record(&mut out, &grid.header(), sep);
    for r in 0..grid.rows() {
        let mut fields = grid.row(r);
        fields.extend(grid.cells_of(r).iter().map(|c| cell_text(*c)));
        record(&mut out, &fields, sep);
    }
    out
}

/// One CSV record.
fn record(out: &mut String, fields: &[String], sep: char) {
    for (i, f) in fields.iter().enumerate() {
        if i > 0 {
            out.push(sep);
        }
        if f.contains([sep, '"', '\n', '\r']) {
            out.push('"');
            out.push_str(&f.replace('"', "\"\""));
            out.push('"');
        } else {
            out.push_str(f);
        }
    }
    out.push('\n');
}

/// A column number of a sheet.
fn col(c: usize) -> u16 {
    u16::try_from(c).unwrap_or(u16::MAX)
}

/// Names of the facts on the second sheet, fi/sv/en.
const FACTS: [[&str; 3]; 4] = [
    ["Taulukko", "Tabell", "Table"],
    ["Lähde", "Källa", "Source"],
    ["Yhteystieto", "Kontakt", "Contact"],
    ["Päivitetty", "Uppdaterad", "Updated"],
];

/// The data as a workbook: the sheet `data` laid out as the CSV (numbers as numbers), and
/// the sheet `info` with the table's label, source, contact, update time and symbols.
pub(super) fn xlsx(
    model: &Model,
    selection: &[Vec<usize>],
    cells: &[Cell],
    style: &TextStyle,
) -> Result<Vec<u8>, XlsxError> {
    let grid = Grid {
        model,
        selection,
        cells,
        labels: style.labels,
    };
    let bold = XlsxFormat::new().set_bold();
    let mut book = Workbook::new();
    let sheet = book.add_worksheet();
    sheet.set_name("data")?;
    let mut row: u32 = 0;
    if style.title {
        sheet.write_string_with_format(row, 0, &model.label, &bold)?;
        row += 1;
    }
    for (c, h) in grid.header().iter().enumerate() {
        sheet.write_string_with_format(row, col(c), h, &bold)?;
    }
    sheet.set_freeze_panes(row + 1, 0)?;
    row += 1;
    for r in 0..grid.rows() {
        let stub = grid.row(r);
        for (c, t) in stub.iter().enumerate() {
            sheet.write_string(row, col(c), t)?;
        }
        for (j, cell) in grid.cells_of(r).iter().enumerate() {
            let c = col(stub.len() + j);
            match cell {
                Cell::Value(v) => sheet.write_number(row, c, *v)?,
                other => sheet.write_string(row, c, other.symbol().unwrap_or_default())?,
            };
        }
        row += 1;
    }
    info_sheet(&mut book, model)?;
    book.save_to_buffer()
}

/// The sheet `info`: what the table is and what its symbols mean.
fn info_sheet(book: &mut Workbook, model: &Model) -> Result<(), XlsxError> {
    let lang: Lang = model.lang;
    let sheet = book.add_worksheet();
    sheet.set_name("info")?;
    let facts = [
        Some(model.label.clone()),
        model.source.clone(),
        model.contact.clone(),
        model.updated.clone(),
    ];
    let mut row: u32 = 0;
    for (name, value) in FACTS.iter().zip(facts) {
        if let Some(value) = value {
            sheet.write_string(row, 0, lang.pick(*name))?;
            sheet.write_string(row, 1, value)?;
            row += 1;
        }
    }
    for line in legend(lang, true) {
        sheet.write_string(row, 0, line)?;
        row += 1;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::serve::pxweb::data::cube;
    use crate::serve::pxweb::model::sample;
    use crate::serve::pxweb::selection::everything;

    #[test]
    fn csv_lays_out_the_published_table_with_symbols() {
        let m = sample();
        let all = everything(&m);
        let cells = cube(&m, &all);
        let text = csv(&m, &all, &cells, &TextStyle::default());
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "jakso,alue,n,osuus");
        assert_eq!(lines[1], "2025-01,01,10,0.5");
        assert_eq!(lines[3], "2025-01,02,.,.");
        assert_eq!(lines[4], "2025-02,01,..,..");
        assert_eq!(lines[9], "2025-03,02,5,...");
        assert_eq!(lines.len(), 10);
    }

    #[test]
    fn csv_takes_labels_a_title_and_another_separator() {
        let m = sample();
        let chosen = vec![vec![0usize], vec![1], vec![0, 1]];
        let cells = cube(&m, &chosen);
        let style = TextStyle {
            labels: Labels::Texts,
            title: true,
            separator: b';',
        };
        let text = csv(&m, &chosen, &cells, &style);
        assert_eq!(
            text,
            "Testitaulu\nMuuttuja jakso;Muuttuja alue;Mittari n;Mittari osuus\nNimi 2025-01;Nimi SSS;20;0.25\n"
        );
        let mut out = String::new();
        record(&mut out, &["a,b".to_string(), "say \"x\"".to_string()], ',');
        assert_eq!(out, "\"a,b\",\"say \"\"x\"\"\"\n");
    }

    #[test]
    fn xlsx_is_a_workbook() {
        let m = sample();
        let all = everything(&m);
        let cells = cube(&m, &all);
        let bytes = xlsx(&m, &all, &cells, &TextStyle::default()).unwrap();
        assert!(bytes.starts_with(b"PK\x03\x04"), "not a zip");
    }
}
