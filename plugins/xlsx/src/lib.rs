//! The spreadsheet (xlsx) source parser of Valtava.
//!
//! Reads one named sheet (default: the first), finds the declared columns by name in the
//! header row and returns their cells as text: numbers without a trailing `.0`, dates as
//! `YYYY-MM-DD` and date-times as `YYYY-MM-DDTHH:MM:SS`, so that the engine converts them
//! to the declared types like any text source. Row numbers are the sheet's own. A cell
//! holding a spreadsheet error (`#DIV/0!`, `#N/A`, …) rejects its row. Counties submit
//! finance and personnel data this way.
//!
//! ```yaml
//! source:
//!   format: xlsx
//!   location: inbox/talous/{period}/*.xlsx
//!   options: { sheet: Tuloslaskelma, header_row: 2 }
//! ```

use std::io::{Cursor, Read};
use std::sync::Arc;

use calamine::{DataRef, Reader, Xlsx};
use schemars::JsonSchema;
use serde::Deserialize;
use valtava_plugin::{
    Limits, ParseRequest, ParseStream, ParsedBatch, Parser, SourceObject, Stop, TextBatchBuilder,
    typed_options,
};

/// Options of the `xlsx` format.
#[derive(Debug, Clone, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct XlsxOptions {
    /// The sheet to read, by name. Default: the first sheet.
    pub sheet: Option<String>,
    /// The row (1-based) that names the columns; data starts below it. Default 1.
    pub header_row: u32,
}

impl Default for XlsxOptions {
    fn default() -> Self {
        Self {
            sheet: None,
            header_row: 1,
        }
    }
}

/// The `xlsx` parser.
#[derive(Debug, Default)]
pub struct XlsxParser;

impl Parser for XlsxParser {
    fn format(&self) -> &'static str {
        "xlsx"
    }

    fn options_schema(&self, generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        generator.subschema_for::<XlsxOptions>()
    }

    fn check_options(&self, options: &serde_json::Value) -> Result<(), String> {
        let o = typed_options::<XlsxOptions>(options)?;
        if o.header_row == 0 {
            return Err("`header_row` counts from 1".into());
        }
        Ok(())
    }

    fn parse(&self, object: SourceObject, request: ParseRequest) -> ParseStream {
        // A workbook is a zip archive: it is read whole.
        valtava_plugin::whole_object_streamed(object, request, |bytes, request, emit| {
            let options = typed_options::<XlsxOptions>(&request.options)?;
            read(bytes, &options, request, emit)
        })
    }
}

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian.
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

fn excel_date(serial: f64, is_1904: bool) -> String {
    // Day 0 of the 1900 system is 1899-12-30 (Lotus' leap-year bug included), of the 1904
    // system 1904-01-01.
    let epoch = if is_1904 { -24_107 } else { -25_569 };
    // Excel's dates end at 9999-12-31 (serial 2 958 465); a serial outside them (or not
    // a number) is written as the number it is, not turned into an impossible date.
    if !(0.0..2_958_466.0).contains(&serial) {
        return number(serial);
    }
    let day = serial.floor() as i64;
    let (y, m, d) = civil(epoch + day);
    let secs = ((serial - serial.floor()) * 86_400.0).round() as i64;
    if secs == 0 {
        format!("{y:04}-{m:02}-{d:02}")
    } else {
        format!(
            "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}",
            secs / 3600,
            secs / 60 % 60,
            secs % 60
        )
    }
}

fn number(f: f64) -> String {
    if f.fract() == 0.0 && f.abs() < 1e15 {
        format!("{}", f as i64)
    } else {
        format!("{f}")
    }
}

/// What kind of error calamine met, without its text: some of its messages quote a cell.
fn xlsx_kind(e: &calamine::XlsxError) -> &'static str {
    use calamine::XlsxError as E;
    match e {
        E::Io(_) => "read error",
        E::Zip(_) => "not a zip archive",
        E::Xml(_) | E::XmlAttr(_) | E::XmlEof(_) => "malformed XML",
        E::Password => "the workbook is encrypted",
        E::Unrecognized { .. } | E::CellError(_) => "a cell holds an unreadable value",
        _ => "unsupported content",
    }
}

/// Refuses a workbook whose parts unpack to more than `limits.object_bytes` or that has
/// more parts than a workbook needs, by unpacking each part into nothing before calamine
/// reads it: the sizes a zip archive declares can lie, the bytes cannot. A few kilobytes
/// of deflated XML can unpack to gigabytes (a zip bomb), and calamine keeps the shared
/// strings in memory.
fn check_unpacked(bytes: &[u8], limits: &Limits) -> Result<(), Stop> {
    /// More parts than any workbook has (sheets, styles, relations, media).
    const MAX_PARTS: usize = 10_000;
    let too_big = || Stop::Limit {
        setting: "object_mib",
        message: format!(
            "the workbook unpacks to more than {} MiB",
            limits.object_bytes >> 20
        ),
    };
    // The count the archive declares is checked before the zip reader reads its directory
    // (an entry of it for each part declared).
    if declared_parts(bytes).is_some_and(|n| n > MAX_PARTS as u64) {
        return Err(Stop::Limit {
            setting: "object_mib",
            message: format!("the workbook declares more than {MAX_PARTS} parts"),
        });
    }
    let mut zip = zip::ZipArchive::new(Cursor::new(bytes))
        .map_err(|_| Stop::from("not a readable xlsx workbook (not a zip archive)"))?;
    if zip.len() > MAX_PARTS {
        return Err(Stop::Limit {
            setting: "object_mib",
            message: format!("the workbook has more than {MAX_PARTS} parts"),
        });
    }
    let mut left = limits.object_bytes as u64;
    for i in 0..zip.len() {
        let mut part = zip
            .by_index(i)
            .map_err(|_| Stop::from("not a readable xlsx workbook (a part cannot be read)"))?;
        if part.size() > left {
            return Err(too_big());
        }
        let n = std::io::copy(&mut (&mut part).take(left + 1), &mut std::io::sink())
            .map_err(|_| Stop::from("not a readable xlsx workbook (a part cannot be unpacked)"))?;
        left = left.checked_sub(n).ok_or_else(too_big)?;
    }
    Ok(())
}

/// The number of parts a zip archive's end record declares (its zip64 record's when the
/// plain one says 0xFFFF), where the records can be found.
fn declared_parts(bytes: &[u8]) -> Option<u64> {
    const END: [u8; 4] = [0x50, 0x4b, 0x05, 0x06];
    const END64: [u8; 4] = [0x50, 0x4b, 0x06, 0x06];
    const LOCATOR: [u8; 4] = [0x50, 0x4b, 0x06, 0x07];
    let u16_at = |at: usize| Some(u16::from_le_bytes(bytes.get(at..at + 2)?.try_into().ok()?));
    let u64_at = |at: usize| Some(u64::from_le_bytes(bytes.get(at..at + 8)?.try_into().ok()?));
    // The end record is the last 22 bytes, followed by a comment of up to 65 535 bytes.
    let from = bytes.len().saturating_sub(22 + 65_535);
    let end = (from..=bytes.len().saturating_sub(22))
        .rev()
        .find(|&i| bytes[i..i + 4] == END)?;
    let total = u16_at(end + 10)?;
    if total != 0xFFFF {
        return Some(u64::from(total));
    }
    let locator = end.checked_sub(20)?;
    if bytes.get(locator..locator + 4)? != LOCATOR {
        return Some(u64::from(total));
    }
    let record = usize::try_from(u64_at(locator + 8)?).ok()?;
    if bytes.get(record..record + 4)? != END64 {
        return None;
    }
    u64_at(record + 32)
}

/// The sheet to read: the named one, or the first.
fn sheet_name(sheets: &[String], wanted: &Option<String>) -> Result<String, Stop> {
    match wanted {
        Some(s) if sheets.contains(s) => Ok(s.clone()),
        Some(s) => {
            Err(format!("no sheet `{s}`; the workbook has {} sheet(s)", sheets.len()).into())
        }
        None => sheets
            .first()
            .cloned()
            .ok_or_else(|| "the workbook has no sheets".into()),
    }
}

/// A cell's value as the text the engine converts, or the spreadsheet error it holds.
fn cell_text(cell: &DataRef<'_>) -> Result<Option<String>, String> {
    Ok(match cell {
        DataRef::Empty => None,
        DataRef::String(s) if s.trim().is_empty() => None,
        DataRef::SharedString(s) if s.trim().is_empty() => None,
        DataRef::String(s) => Some(s.clone()),
        DataRef::SharedString(s) => Some(s.to_string()),
        DataRef::Int(i) => Some(i.to_string()),
        DataRef::Float(f) => Some(number(*f)),
        DataRef::Bool(b) => Some(b.to_string()),
        DataRef::DateTime(d) => Some(excel_date(d.as_f64(), false)),
        DataRef::DateTimeIso(s) | DataRef::DurationIso(s) => Some(s.clone()),
        DataRef::Error(e) => return Err(e.to_string()),
    })
}

/// The row being read: the declared columns' values, whether any cell of the row holds
/// something, and the first spreadsheet error met in a declared column.
struct RowCells {
    number: u32,
    values: Vec<Option<String>>,
    /// Bytes of text in `values`, against `limits.record_bytes`.
    bytes: usize,
    filled: bool,
    bad: Option<String>,
}

impl RowCells {
    fn new(number: u32, columns: usize) -> Self {
        Self {
            number,
            values: vec![None; columns],
            bytes: 0,
            filled: false,
            bad: None,
        }
    }
}

/// A batch is handed over once it holds this much text, however few its rows: rows of
/// long cells cannot make one batch take gigabytes.
const BATCH_BYTES: usize = 64 << 20;

/// Where each declared column is in the header row, or the error naming what is missing.
fn header_positions(
    header: &[(u32, String)],
    request: &ParseRequest,
    sheet: &str,
    header_row: u32,
) -> Result<Vec<u32>, Stop> {
    let mut positions = Vec::new();
    let mut missing = Vec::new();
    for c in &request.columns {
        match header.iter().find(|(_, n)| n == c) {
            Some((col, _)) => positions.push(*col),
            None => missing.push(format!("`{c}`")),
        }
    }
    if !missing.is_empty() {
        return Err(format!(
            "sheet `{sheet}` row {header_row} lacks column(s) {}",
            missing.join(", ")
        )
        .into());
    }
    Ok(positions)
}

/// Reads the sheet cell by cell in the order the file holds them, keeping only the row
/// being read: a sheet that claims a huge range costs only the cells it holds, and those
/// are bounded by `limits.cells`.
fn read(
    bytes: Vec<u8>,
    options: &XlsxOptions,
    request: &ParseRequest,
    emit: &mut dyn FnMut(ParsedBatch) -> bool,
) -> Result<(), Stop> {
    let limits = &request.limits;
    check_unpacked(&bytes, limits)?;
    let mut book: Xlsx<_> = calamine::open_workbook_from_rs(Cursor::new(bytes))
        .map_err(|e| format!("not a readable xlsx workbook ({})", xlsx_kind(&e)))?;
    let sheet = sheet_name(&book.sheet_names(), &options.sheet)?;
    let mut cells = book
        .worksheet_cells_reader(&sheet)
        .map_err(|e| format!("the sheet cannot be read ({})", xlsx_kind(&e)))?;
    let mut rows = SheetRows::new(request, &sheet, options.header_row);
    let mut count: u64 = 0;
    let unreadable =
        |e: calamine::XlsxError| format!("the sheet cannot be read ({})", xlsx_kind(&e));
    while let Some(cell) = cells.next_cell().map_err(unreadable)? {
        count += 1;
        if count > limits.cells {
            return Err(Stop::Limit {
                setting: "cells",
                message: format!("sheet `{sheet}` holds more than {} cells", limits.cells),
            });
        }
        let (r, c) = cell.get_position();
        rows.cell(r, c, cell.get_value(), emit)?;
    }
    rows.finish(emit)
}

/// The rows of a sheet as its cells arrive: the declared names of the header row, then
/// the row being read, each row added to the batch as the next one starts.
struct SheetRows<'a> {
    request: &'a ParseRequest,
    sheet: &'a str,
    /// The header row as the options count it (from 1).
    header_row: u32,
    /// The header row as the sheet counts it (from 0).
    header_index: u32,
    header: Vec<(u32, String)>,
    positions: Option<Vec<u32>>,
    row: Option<RowCells>,
    builder: TextBatchBuilder,
    /// Bytes of text in `builder`, against [`BATCH_BYTES`].
    held: usize,
}

impl<'a> SheetRows<'a> {
    fn new(request: &'a ParseRequest, sheet: &'a str, header_row: u32) -> Self {
        Self {
            request,
            sheet,
            header_row,
            header_index: header_row - 1,
            header: Vec::new(),
            positions: None,
            row: None,
            builder: TextBatchBuilder::new(request.columns.clone()),
            held: 0,
        }
    }

    /// Takes the cell at row `r`, column `c` (both from 0), whose value is `value`.
    fn cell(
        &mut self,
        r: u32,
        c: u32,
        value: &DataRef<'_>,
        emit: &mut dyn FnMut(ParsedBatch) -> bool,
    ) -> Result<(), Stop> {
        if r < self.header_index {
            return Ok(());
        }
        if r == self.header_index {
            header_cell(value, c, &self.request.columns, &mut self.header);
            return Ok(());
        }
        let positions = match &self.positions {
            Some(p) => p,
            None => self.positions.insert(header_positions(
                &self.header,
                self.request,
                self.sheet,
                self.header_row,
            )?),
        };
        if self.row.as_ref().is_some_and(|row| row.number != r) {
            if self.row.as_ref().is_some_and(|row| r < row.number) {
                return Err(format!(
                    "sheet `{}` lists row {} after row {}",
                    self.sheet,
                    r + 1,
                    self.row.as_ref().map_or(0, |x| x.number + 1)
                )
                .into());
            }
            finish_row(
                self.row.take(),
                &mut self.builder,
                &mut self.held,
                self.request,
                emit,
            )?;
        }
        let current = self
            .row
            .get_or_insert_with(|| RowCells::new(r, positions.len()));
        current.filled |= !matches!(value, DataRef::Empty);
        if let Some(k) = positions.iter().position(|&p| p == c) {
            put_cell(current, k, value, r, self.sheet, self.request)?;
        }
        Ok(())
    }

    /// Ends the sheet: its last row, and the last batch handed over. A sheet without the
    /// header row, or whose header lacks a declared column, is an error even without data.
    fn finish(mut self, emit: &mut dyn FnMut(ParsedBatch) -> bool) -> Result<(), Stop> {
        if self.positions.is_none() && self.row.is_none() {
            if self.header.is_empty() {
                return Err(
                    format!("sheet `{}` has no row {}", self.sheet, self.header_row).into(),
                );
            }
            header_positions(&self.header, self.request, self.sheet, self.header_row)?;
        }
        finish_row(
            self.row.take(),
            &mut self.builder,
            &mut self.held,
            self.request,
            emit,
        )?;
        if !self.builder.is_empty() {
            emit(self.builder.finish().map_err(|e| e.to_string())?);
        }
        Ok(())
    }
}

/// Keeps a cell of the header row (in column `c`) if it names a declared column: a header
/// row of millions of long cells costs nothing more than one of a few.
fn header_cell(value: &DataRef<'_>, c: u32, columns: &[String], header: &mut Vec<(u32, String)>) {
    let name = cell_text(value).ok().flatten().unwrap_or_default();
    let name = name.trim();
    if columns.iter().any(|n| n == name) {
        header.push((c, name.to_string()));
    }
}

/// Puts the cell of declared column `k` into row `r` being read: its text, the row's text
/// bounded by `limits.record_bytes`, or the first spreadsheet error of the row.
fn put_cell(
    current: &mut RowCells,
    k: usize,
    value: &DataRef<'_>,
    r: u32,
    sheet: &str,
    request: &ParseRequest,
) -> Result<(), Stop> {
    let limits = &request.limits;
    match cell_text(value) {
        Ok(v) => {
            // One shared string can fill every cell: the row's text is bounded, not only
            // the file's.
            current.bytes += v.as_ref().map_or(0, String::len);
            if current.bytes > limits.record_bytes {
                return Err(Stop::Limit {
                    setting: "record_kib",
                    message: format!(
                        "sheet `{sheet}` row {} holds more than {} of text",
                        r + 1,
                        valtava_plugin::size_text(limits.record_bytes)
                    ),
                });
            }
            current.values[k] = v
        }
        Err(e) => {
            current.bad.get_or_insert(format!(
                "column `{}` holds the spreadsheet error {e}",
                request.columns[k]
            ));
        }
    }
    Ok(())
}

/// Adds a read row to the batch (skipping an empty one), and hands the batch over when it
/// is full: `batch_size` rows or [`BATCH_BYTES`] of text (`held`).
fn finish_row(
    row: Option<RowCells>,
    builder: &mut TextBatchBuilder,
    held: &mut usize,
    request: &ParseRequest,
    emit: &mut dyn FnMut(ParsedBatch) -> bool,
) -> Result<(), Stop> {
    let Some(row) = row.filter(|r| r.filled) else {
        return Ok(());
    };
    let line = u64::from(row.number) + 1;
    *held += row.bytes;
    match row.bad {
        Some(reason) => builder.reject(line, reason),
        None => builder.push_row(line, row.values.iter().map(|v| v.as_deref())),
    }
    let full = builder.len() >= request.batch_size || *held >= BATCH_BYTES;
    if full {
        *held = 0;
        if !emit(builder.finish().map_err(|e| e.to_string())?) {
            return Err("the reader stopped".into());
        }
    }
    Ok(())
}

/// The parser as a registry entry.
pub fn parser() -> Arc<dyn Parser> {
    Arc::new(XlsxParser)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serial_dates() {
        assert_eq!(excel_date(45_658.0, false), "2025-01-01");
        assert_eq!(excel_date(45_658.5, false), "2025-01-01T12:00:00");
        assert_eq!(excel_date(1.0, false), "1899-12-31");
        assert_eq!(excel_date(0.0, true), "1904-01-01");
        // Out of Excel's range: the number, no overflow.
        assert_eq!(excel_date(-1.0e300, false), number(-1.0e300));
        assert_eq!(excel_date(f64::NAN, false), number(f64::NAN));
        assert_eq!(excel_date(1.0e18, true), number(1.0e18));
        assert_eq!(number(12.0), "12");
        assert_eq!(number(12.25), "12.25");
    }

    #[tokio::test]
    async fn reads_a_named_sheet_by_header() {
        use futures::StreamExt;
        use object_store::memory::InMemory;
        use object_store::path::Path;
        use object_store::{ObjectStoreExt, PutPayload};
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../tests/data/talous/2025/talous.xlsx");
        let bytes = std::fs::read(path).unwrap();
        let store = Arc::new(InMemory::new());
        let p = Path::from("t.xlsx");
        let size = bytes.len() as u64;
        store.put(&p, PutPayload::from(bytes)).await.unwrap();
        let object = SourceObject {
            store,
            path: p,
            size,
            name: "t.xlsx".into(),
        };
        let request = ParseRequest {
            columns: vec!["tili".into(), "euroa".into(), "pvm".into()],
            types: vec![],
            options: serde_json::json!({ "sheet": "Tuloslaskelma", "header_row": 2 }),
            batch_size: 100,
            base_dir: None,
            limits: Limits::default(),
        };
        let parts: Vec<ParsedBatch> = XlsxParser
            .parse(object, request)
            .map(|r| r.unwrap())
            .collect()
            .await;
        use arrow::array::{Array, AsArray};
        let b = &parts[0].batch;
        let col = |i: usize, r: usize| {
            let a = b.column(i).as_string::<i32>();
            a.is_valid(r).then(|| a.value(r).to_string())
        };
        assert_eq!(b.num_rows(), 3);
        assert_eq!(col(0, 0).as_deref(), Some("3000"));
        assert_eq!(col(1, 0).as_deref(), Some("1250000.5"));
        assert_eq!(col(2, 0).as_deref(), Some("2025-01-31"));
        assert_eq!(col(1, 2), None);
        assert_eq!(parts[0].rejects.len(), 1);
        assert_eq!(parts[0].rejects[0].row, 7);
        assert!(
            parts[0].rejects[0].reason.contains("error"),
            "{:?}",
            parts[0].rejects
        );
        let rows = b.column(3).as_primitive::<arrow::datatypes::UInt64Type>();
        assert_eq!(rows.value(0), 3);
    }

    /// A workbook of one sheet whose `sheetData` is `rows`, zipped by hand (stored parts).
    fn workbook(rows: &str) -> Vec<u8> {
        use std::io::Write;
        let mut zip = zip::ZipWriter::new(Cursor::new(Vec::new()));
        let stored = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Stored);
        let parts = [
            (
                "[Content_Types].xml",
                r#"<?xml version="1.0"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"><Override PartName="/xl/workbook.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/><Override PartName="/xl/worksheets/sheet1.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/></Types>"#.to_string(),
            ),
            (
                "_rels/.rels",
                r#"<?xml version="1.0"?><Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument" Target="xl/workbook.xml"/></Relationships>"#.to_string(),
            ),
            (
                "xl/workbook.xml",
                r#"<?xml version="1.0"?><workbook xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships"><sheets><sheet name="S" sheetId="1" r:id="rId1"/></sheets></workbook>"#.to_string(),
            ),
            (
                "xl/_rels/workbook.xml.rels",
                r#"<?xml version="1.0"?><Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/worksheet" Target="worksheets/sheet1.xml"/></Relationships>"#.to_string(),
            ),
            (
                "xl/worksheets/sheet1.xml",
                format!(
                    r#"<?xml version="1.0"?><worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><sheetData>{rows}</sheetData></worksheet>"#
                ),
            ),
        ];
        for (name, text) in parts {
            zip.start_file(name, stored).unwrap();
            zip.write_all(text.as_bytes()).unwrap();
        }
        zip.finish().unwrap().into_inner()
    }

    /// Parses `bytes` as a workbook with columns `a` and `b`.
    async fn parse_with(
        bytes: Vec<u8>,
        limits: Limits,
    ) -> Vec<Result<ParsedBatch, valtava_plugin::ParseError>> {
        use futures::StreamExt;
        use object_store::ObjectStoreExt;
        let store = Arc::new(object_store::memory::InMemory::new());
        let p = object_store::path::Path::from("w.xlsx");
        let size = bytes.len() as u64;
        store.put(&p, bytes.into()).await.unwrap();
        let object = SourceObject {
            store,
            path: p,
            size,
            name: "w.xlsx".into(),
        };
        let request = ParseRequest {
            columns: vec!["a".into(), "b".into()],
            types: vec![],
            options: serde_json::Value::Null,
            batch_size: 2,
            base_dir: None,
            limits,
        };
        XlsxParser.parse(object, request).collect().await
    }

    fn inline(r: u32, col: &str, text: &str) -> String {
        format!(r#"<c r="{col}{r}" t="inlineStr"><is><t>{text}</t></is></c>"#)
    }

    /// The spreadsheet bomb: a sheet holding `A1` and `XFD1048576` spans 17 billion cells;
    /// read densely it took 15.8 GB. Read cell by cell it is two rows (failed before: the
    /// dense range).
    #[tokio::test]
    async fn a_sheet_spanning_every_cell_costs_only_the_cells_it_holds() {
        let rows = format!(
            r#"<row r="1">{}{}</row><row r="2">{}</row><row r="1048576"><c r="XFD1048576"><v>1</v></c></row>"#,
            inline(1, "A", "a"),
            inline(1, "B", "b"),
            inline(2, "B", "x"),
        );
        let got = parse_with(workbook(&rows), Limits::default()).await;
        let batches: Vec<_> = got.into_iter().map(Result::unwrap).collect();
        let rows: usize = batches.iter().map(|b| b.batch.num_rows()).sum();
        // Row 2, and row 1048576 (something in it, though not in a declared column).
        assert_eq!(rows, 2);
        use arrow::array::{Array, AsArray};
        let b = &batches[0].batch;
        assert!(b.column(0).is_null(0));
        assert_eq!(b.column(1).as_string::<i32>().value(0), "x");
        let numbers = b.column(2).as_primitive::<arrow::datatypes::UInt64Type>();
        assert_eq!(numbers.value(0), 2);
    }

    /// More cells than `limits.cells`, or parts that unpack to more than `limits.object_mib`:
    /// the object ends with a limit error naming the setting, never a cell's content.
    #[tokio::test]
    async fn cells_and_unpacked_size_are_bounded() {
        let mut rows = format!(
            r#"<row r="1">{}{}</row>"#,
            inline(1, "A", "a"),
            inline(1, "B", "b")
        );
        for r in 2..40 {
            rows.push_str(&format!(
                r#"<row r="{r}">{}</row>"#,
                inline(r, "A", "131052-308T")
            ));
        }
        let small = Limits {
            cells: 20,
            ..Limits::default()
        };
        let got = parse_with(workbook(&rows), small).await;
        let err = got
            .into_iter()
            .find_map(Result::err)
            .expect("a limit error");
        assert_eq!(err.limit_setting(), Some("cells"), "{err}");
        assert!(!err.to_string().contains("131052"), "{err}");
        let tiny = Limits {
            object_bytes: 1024,
            ..Limits::default()
        };
        let got = parse_with(workbook(&"<row r=\"1\"></row>".repeat(200)), tiny).await;
        let err = got
            .into_iter()
            .find_map(Result::err)
            .expect("a limit error");
        assert_eq!(err.limit_setting(), Some("object_mib"), "{err}");
    }

    /// A row's text is bounded, not only the file's: two cells of 3 000 characters pass a
    /// 4 KiB record limit one by one but not together (failed before: no row bound, so one
    /// shared string in every cell could make a batch of gigabytes).
    #[tokio::test]
    async fn a_row_longer_than_the_record_limit_stops_the_object() {
        let long = "q".repeat(3000);
        let rows = format!(
            r#"<row r="1">{}{}</row><row r="2">{}</row><row r="3">{}{}</row>"#,
            inline(1, "A", "a"),
            inline(1, "B", "b"),
            inline(2, "A", &long),
            inline(3, "A", &long),
            inline(3, "B", &long),
        );
        let limits = Limits {
            record_bytes: 4096,
            ..Limits::default()
        };
        let got = parse_with(workbook(&rows), limits).await;
        let err = got
            .into_iter()
            .find_map(Result::err)
            .expect("a limit error");
        assert_eq!(err.limit_setting(), Some("record_kib"), "{err}");
        assert!(err.to_string().contains("row 3"), "{err}");
        assert!(!err.to_string().contains("qqq"), "{err}");
    }

    /// An archive that declares more parts than a workbook has is refused before the zip
    /// reader reads a directory entry for each (failed before: the directory was read).
    #[tokio::test]
    async fn an_archive_declaring_too_many_parts_is_refused_first() {
        let mut bytes = workbook("");
        assert_eq!(declared_parts(&bytes), Some(5));
        let end = bytes.len() - 22;
        assert_eq!(bytes[end..end + 4], [0x50, 0x4b, 0x05, 0x06]);
        bytes[end + 8..end + 12].copy_from_slice(&[0xFE, 0xFF, 0xFE, 0xFF]);
        let got = parse_with(bytes, Limits::default()).await;
        let err = got
            .into_iter()
            .find_map(Result::err)
            .expect("a limit error");
        assert!(err.to_string().contains("declares more than"), "{err}");
    }

    /// A header without a declared column names it; rows out of order are refused.
    #[tokio::test]
    async fn missing_columns_and_rows_out_of_order() {
        let rows = format!(r#"<row r="1">{}</row>"#, inline(1, "A", "a"));
        let got = parse_with(workbook(&rows), Limits::default()).await;
        let err = got.into_iter().find_map(Result::err).unwrap().to_string();
        assert!(err.contains("lacks column(s) `b`"), "{err}");
        let rows = format!(
            r#"<row r="1">{}{}</row><row r="5">{}</row><row r="3">{}</row>"#,
            inline(1, "A", "a"),
            inline(1, "B", "b"),
            inline(5, "A", "x"),
            inline(3, "A", "y"),
        );
        let got = parse_with(workbook(&rows), Limits::default()).await;
        let err = got.into_iter().find_map(Result::err).unwrap().to_string();
        assert!(err.contains("row 3 after row 5"), "{err}");
    }
}
