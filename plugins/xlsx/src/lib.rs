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

use std::io::Cursor;
use std::sync::Arc;

use calamine::{Data, Reader, Xlsx};
use schemars::JsonSchema;
use serde::Deserialize;
use valtava_plugin::{
    ParseRequest, ParseStream, ParsedBatch, Parser, SourceObject, TextBatchBuilder, typed_options,
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
        valtava_plugin::whole_object(object, request, |bytes, request| {
            let options = typed_options::<XlsxOptions>(&request.options)?;
            read(bytes, &options, request)
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

fn read(
    bytes: Vec<u8>,
    options: &XlsxOptions,
    request: &ParseRequest,
) -> Result<Vec<ParsedBatch>, String> {
    let mut book: Xlsx<_> = calamine::open_workbook_from_rs(Cursor::new(bytes))
        .map_err(|e| format!("not a readable xlsx workbook ({})", xlsx_kind(&e)))?;
    let sheets = book.sheet_names();
    let sheet = match &options.sheet {
        Some(s) if sheets.contains(s) => s.clone(),
        Some(s) => {
            return Err(format!(
                "no sheet `{s}`; the workbook has {} sheet(s)",
                sheets.len()
            ));
        }
        None => sheets
            .first()
            .cloned()
            .ok_or("the workbook has no sheets")?,
    };
    let is_1904 = false;
    let range = book
        .worksheet_range(&sheet)
        .map_err(|e| format!("the sheet cannot be read ({})", xlsx_kind(&e)))?;
    let (first_row, first_col) = range.start().unwrap_or((0, 0));
    let header_index = (options.header_row - 1)
        .checked_sub(first_row)
        .ok_or("the header row is above the sheet's data")?;
    let rows: Vec<&[Data]> = range.rows().collect();
    let header = rows
        .get(header_index as usize)
        .ok_or_else(|| format!("sheet `{sheet}` has no row {}", options.header_row))?;
    let names: Vec<String> = header
        .iter()
        .map(|c| c.to_string().trim().to_string())
        .collect();
    let mut positions = Vec::new();
    let mut missing = Vec::new();
    for c in &request.columns {
        match names.iter().position(|n| n == c) {
            Some(p) => positions.push(p),
            None => missing.push(format!("`{c}`")),
        }
    }
    if !missing.is_empty() {
        return Err(format!(
            "sheet `{sheet}` row {} lacks column(s) {}",
            options.header_row,
            missing.join(", ")
        ));
    }
    let _ = first_col;
    let mut builder = TextBatchBuilder::new(request.columns.clone());
    let mut out = Vec::new();
    for (i, row) in rows.iter().enumerate().skip(header_index as usize + 1) {
        let line = first_row as u64 + i as u64 + 1;
        if row.iter().all(|c| matches!(c, Data::Empty)) {
            continue;
        }
        let mut values: Vec<Option<String>> = Vec::with_capacity(positions.len());
        let mut bad = None;
        for (k, &p) in positions.iter().enumerate() {
            let cell = row.get(p).unwrap_or(&Data::Empty);
            values.push(match cell {
                Data::Empty => None,
                Data::String(s) if s.trim().is_empty() => None,
                Data::String(s) => Some(s.clone()),
                Data::Int(i) => Some(i.to_string()),
                Data::Float(f) => Some(number(*f)),
                Data::Bool(b) => Some(b.to_string()),
                Data::DateTime(d) => Some(excel_date(d.as_f64(), is_1904)),
                Data::DateTimeIso(s) | Data::DurationIso(s) => Some(s.clone()),
                Data::Error(e) => {
                    bad = Some(format!(
                        "column `{}` holds the spreadsheet error {e}",
                        request.columns[k]
                    ));
                    None
                }
            });
        }
        match bad {
            Some(reason) => builder.reject(line, reason),
            None => builder.push_row(line, values.iter().map(|v| v.as_deref())),
        }
        if builder.len() >= request.batch_size {
            out.push(builder.finish().map_err(|e| e.to_string())?);
        }
    }
    if !builder.is_empty() {
        out.push(builder.finish().map_err(|e| e.to_string())?);
    }
    Ok(out)
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
}
