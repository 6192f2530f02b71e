//! Publishing: datasets written under a run-specific prefix, then a manifest, then the
//! release pointer — so a reader following `latest.json` never sees a half-written release.
//!
//! ```text
//! releases/<line>/<period>/<run-id>/<dataset>.{parquet,csv}
//! releases/<line>/<period>/<run-id>/_manifest.json
//! releases/<line>/<period>/latest.json
//! ```

pub(crate) mod disclosure;
mod error;
pub mod jsonstat;
pub(crate) mod manifest;
pub(crate) mod releases;
pub(crate) mod revision;

pub use error::PublishError;

use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use datafusion::physical_plan::SendableRecordBatchStream;
use futures::StreamExt;
use object_store::buffered::BufWriter;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use parquet::arrow::AsyncArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use serde::Serialize;
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use crate::line::spec::{CsvStyle, PublishFormat};

/// One written object.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, PartialOrd, Ord)]
pub struct ObjectEntry {
    pub path: String,
    pub bytes: u64,
    pub sha256: String,
}

/// Rows per Parquet row group. A writer holds the row group it is filling in memory, so
/// this and [`ROW_GROUP_BYTES`] bound a writer's memory however many rows it writes (a
/// quarantine of half a million rejected rows, a register); readers still get large enough
/// groups to skip by.
pub const ROW_GROUP_ROWS: usize = 65_536;

/// Encoded bytes per Parquet row group, whichever of this and [`ROW_GROUP_ROWS`] comes
/// first. Wide rows reach it first: 65 536 rejected rows with their reasons are ≈ 16 MB
/// before compression. Small enough that a run's quarantine fills a group early at any
/// size of input, so the memory its writers hold does not grow with the input.
pub const ROW_GROUP_BYTES: usize = 4 << 20;

/// Parquet settings shared by every writer: zstd, row groups of at most [`ROW_GROUP_ROWS`]
/// and [`ROW_GROUP_BYTES`], and a fixed `created_by` so the bytes depend only on the data.
pub fn writer_properties() -> WriterProperties {
    WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(3).unwrap_or_default()))
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        .set_max_row_group_bytes(Some(ROW_GROUP_BYTES))
        .set_created_by(format!("valtava {}", env!("CARGO_PKG_VERSION")))
        .build()
}

/// Streams batches into the requested formats at `<prefix>/<name>.<ext>`; returns the
/// number of rows.
pub async fn write_stream(
    store: &Arc<dyn ObjectStore>,
    prefix: &str,
    name: &str,
    formats: &[PublishFormat],
    schema: SchemaRef,
    stream: SendableRecordBatchStream,
    on_batch: impl FnMut(&RecordBatch) -> Result<(), String>,
) -> Result<u64, PublishError> {
    write_stream_styled(
        store,
        prefix,
        name,
        formats,
        CsvStyle::International,
        schema,
        stream,
        on_batch,
    )
    .await
}

/// A batch with its decimals written with a comma, as text (Finnish CSV).
fn decimal_commas(batch: &RecordBatch) -> Result<RecordBatch, PublishError> {
    use arrow::array::{Array, AsArray, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};
    let mut fields = Vec::new();
    let mut columns = Vec::new();
    for (f, a) in batch.schema().fields().iter().zip(batch.columns()) {
        if matches!(
            f.data_type(),
            DataType::Float16 | DataType::Float32 | DataType::Float64 | DataType::Decimal128(..)
        ) {
            let text = arrow::compute::cast(a, &DataType::Utf8).map_err(PublishError::Encode)?;
            let text = text.as_string::<i32>();
            let out: StringArray = (0..text.len())
                .map(|i| text.is_valid(i).then(|| text.value(i).replace('.', ",")))
                .collect();
            fields.push(Field::new(f.name(), DataType::Utf8, true));
            columns.push(Arc::new(out) as arrow::array::ArrayRef);
        } else {
            fields.push(f.as_ref().clone());
            columns.push(a.clone());
        }
    }
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).map_err(PublishError::Encode)
}

/// [`write_stream`] with a choice of CSV conventions.
#[allow(
    clippy::too_many_arguments,
    reason = "the one writer of every format; options are plain values"
)]
pub async fn write_stream_styled(
    store: &Arc<dyn ObjectStore>,
    prefix: &str,
    name: &str,
    formats: &[PublishFormat],
    style: CsvStyle,
    schema: SchemaRef,
    mut stream: SendableRecordBatchStream,
    mut on_batch: impl FnMut(&RecordBatch) -> Result<(), String>,
) -> Result<u64, PublishError> {
    let delimiter = match style {
        CsvStyle::International => b',',
        CsvStyle::Finnish => b';',
    };
    let (mut parquet, mut csv) = open_writers(store, prefix, name, formats, &schema)?;
    let mut rows = 0u64;
    while let Some(batch) = stream.next().await {
        let batch = batch.map_err(PublishError::Stream)?;
        on_batch(&batch).map_err(PublishError::Batch)?;
        rows += batch.num_rows() as u64;
        if let Some(w) = parquet.as_mut() {
            w.write(&batch).await.map_err(PublishError::Parquet)?;
        }
        if let Some((w, first)) = csv.as_mut() {
            let buf = match style {
                CsvStyle::International => csv_bytes(&batch, *first, delimiter)?,
                CsvStyle::Finnish => csv_bytes(&decimal_commas(&batch)?, *first, delimiter)?,
            };
            *first = false;
            w.write_all(&buf).await.map_err(PublishError::Upload)?;
        }
    }
    if let Some(w) = parquet {
        w.close().await.map_err(PublishError::Parquet)?;
    }
    if let Some((mut w, first)) = csv {
        if first {
            // No rows: still a valid CSV with its header.
            let buf = csv_bytes(&RecordBatch::new_empty(schema.clone()), true, delimiter)?;
            w.write_all(&buf).await.map_err(PublishError::Upload)?;
        }
        w.shutdown().await.map_err(PublishError::Upload)?;
    }
    Ok(rows)
}

/// The Parquet writer and the CSV writer (with whether its header is still to be written)
/// of the requested formats.
type Writers = (
    Option<AsyncArrowWriter<BufWriter>>,
    Option<(BufWriter, bool)>,
);

/// Opens a writer at `<prefix>/<name>.<ext>` for each requested file format.
fn open_writers(
    store: &Arc<dyn ObjectStore>,
    prefix: &str,
    name: &str,
    formats: &[PublishFormat],
    schema: &SchemaRef,
) -> Result<Writers, PublishError> {
    let mut parquet = None;
    let mut csv = None;
    for f in formats {
        match f {
            PublishFormat::Jsonstat => {}
            PublishFormat::Parquet => {
                let w = BufWriter::new(
                    store.clone(),
                    Path::from(format!("{prefix}/{name}.parquet")),
                );
                parquet = Some(
                    AsyncArrowWriter::try_new(w, schema.clone(), Some(writer_properties()))
                        .map_err(PublishError::Parquet)?,
                );
            }
            PublishFormat::Csv => {
                csv = Some((
                    BufWriter::new(store.clone(), Path::from(format!("{prefix}/{name}.csv"))),
                    true,
                ));
            }
        }
    }
    Ok((parquet, csv))
}

/// A batch as CSV bytes, with or without the header line.
fn csv_bytes(batch: &RecordBatch, header: bool, delimiter: u8) -> Result<Vec<u8>, PublishError> {
    let mut buf = Vec::new();
    {
        let mut cw = arrow::csv::WriterBuilder::new()
            .with_header(header)
            .with_delimiter(delimiter)
            .build(&mut buf);
        cw.write(batch).map_err(PublishError::Encode)?;
    }
    Ok(buf)
}

/// Lists the objects under a prefix with their sizes and checksums, sorted by path.
pub async fn describe(
    store: &Arc<dyn ObjectStore>,
    prefix: &str,
) -> Result<Vec<ObjectEntry>, PublishError> {
    use futures::TryStreamExt;
    let metas: Vec<_> = store
        .list(Some(&Path::from(prefix)))
        .try_collect()
        .await
        .map_err(PublishError::Describe)?;
    let mut out = Vec::new();
    for m in metas {
        let mut hasher = Sha256::new();
        let mut s = store
            .get(&m.location)
            .await
            .map_err(PublishError::Describe)?
            .into_stream();
        while let Some(chunk) = s.next().await {
            hasher.update(chunk.map_err(PublishError::Describe)?);
        }
        out.push(ObjectEntry {
            path: m.location.to_string(),
            bytes: m.size,
            sha256: hex::encode(hasher.finalize()),
        });
    }
    out.sort();
    Ok(out)
}

/// Writes a JSON document.
pub async fn put_json<T: Serialize>(
    store: &Arc<dyn ObjectStore>,
    path: &str,
    value: &T,
) -> Result<(), PublishError> {
    let mut bytes = serde_json::to_vec_pretty(value).map_err(PublishError::Json)?;
    bytes.push(b'\n');
    store
        .put(&Path::from(path), PutPayload::from(bytes))
        .await
        .map_err(|source| PublishError::Put {
            path: path.to_string(),
            source,
        })?;
    Ok(())
}

/// Writes a JSON document that carries messages or names from the data (run and quality
/// reports, lineage events): every string passes the scrubber ([`crate::redact`]).
pub async fn put_text_json<T: Serialize>(
    store: &Arc<dyn ObjectStore>,
    path: &str,
    value: &T,
) -> Result<(), PublishError> {
    let mut value = serde_json::to_value(value).map_err(PublishError::Json)?;
    crate::redact::scrub_json(&mut value);
    put_json(store, path, &value).await
}

/// Removes every object under a prefix (a failed run's partial outputs).
pub async fn remove_prefix(store: &Arc<dyn ObjectStore>, prefix: &str) {
    use futures::TryStreamExt;
    if let Ok(metas) = store
        .list(Some(&Path::from(prefix)))
        .try_collect::<Vec<_>>()
        .await
    {
        for m in metas {
            let _ = store.delete(&m.location).await;
        }
    }
}

/// Applies small-cell suppression to a whole (aggregated, hence small) table: empties the
/// measures of suppressed cells and marks them in the status column, empties each measure
/// decided by a count of its own where that count is small (its `status_<measure>` marked),
/// and keeps only the published columns (`schema`): unpublished deciding counts are dropped.
pub fn protect(
    batches: &[RecordBatch],
    schema: SchemaRef,
    dimensions: &[String],
    disclosure: Option<&crate::plan::Disclosure>,
) -> Result<(RecordBatch, usize), PublishError> {
    use arrow::array::{ArrayRef, BooleanArray, StringArray};
    let own = batches
        .first()
        .map(|b| b.schema())
        .unwrap_or_else(|| schema.clone());
    let table = arrow::compute::concat_batches(&own, batches).map_err(PublishError::Table)?;
    let pick = |n: &str| {
        table
            .column_by_name(n)
            .cloned()
            .ok_or_else(|| PublishError::NoColumn {
                name: n.to_string(),
            })
    };
    let Some(d) = disclosure.filter(|_| table.num_rows() > 0) else {
        let columns = (schema.fields().iter())
            .map(|f| pick(f.name().as_str()))
            .collect::<Result<Vec<_>, _>>()?;
        let out = RecordBatch::try_new(schema, columns).map_err(PublishError::Table)?;
        return Ok((out, 0));
    };
    let keys = cell_keys(&table, dimensions)?;
    let counts = deciding_counts(&table, &d.counts)?;
    let (hidden, _) = crate::publish::disclosure::suppress(&keys, &counts, d.min_count);
    let suppressed = hidden.iter().filter(|h| **h).count();
    let own = own_hidden(&table, &keys, &hidden, d)?;
    let status_of = |mask: &[bool]| {
        Arc::new(StringArray::from(
            mask.iter()
                .map(|h| h.then_some("suppressed"))
                .collect::<Vec<_>>(),
        )) as ArrayRef
    };
    let mut columns = Vec::with_capacity(schema.fields().len());
    for f in schema.fields() {
        let n = f.name();
        let marked = own
            .iter()
            .find(|(m, _)| crate::publish::jsonstat::measure_status_column(m.as_str()) == *n);
        if n == crate::plan::STATUS_COLUMN {
            columns.push(status_of(hidden.as_slice()));
        } else if let Some((_, mask)) = marked {
            columns.push(status_of(mask.as_slice()));
        } else if let Some(mask) = own.get(n).or((d.measures.contains(n)).then_some(&hidden)) {
            let mask = BooleanArray::from(mask.clone());
            columns.push(
                arrow::compute::nullif(&pick(n.as_str())?, &mask).map_err(PublishError::Table)?,
            );
        } else {
            columns.push(pick(n.as_str())?);
        }
    }
    let out = RecordBatch::try_new(schema, columns).map_err(PublishError::Table)?;
    Ok((out, suppressed))
}

/// The cells to empty of each measure decided by a count of its own, and of each such
/// count that is published, given the cells suppressed whole (`rows`).
fn own_hidden(
    table: &RecordBatch,
    keys: &[Vec<String>],
    rows: &[bool],
    d: &crate::plan::Disclosure,
) -> Result<std::collections::BTreeMap<String, Vec<bool>>, PublishError> {
    use std::collections::BTreeMap;
    let mut by_count: BTreeMap<&str, Vec<bool>> = BTreeMap::new();
    for (_, c) in &d.own {
        if by_count.contains_key(c.as_str()) {
            continue;
        }
        let count = deciding_counts(table, std::slice::from_ref(c))?;
        let published = !c.starts_with(crate::plan::DECIDING_PREFIX);
        let mask = crate::publish::disclosure::suppress_own(
            keys,
            &count[0],
            (d.min_count, published),
            rows,
        );
        by_count.insert(c.as_str(), mask);
    }
    let mut out = BTreeMap::new();
    for (m, c) in &d.own {
        let mask = &by_count[c.as_str()];
        if !c.starts_with(crate::plan::DECIDING_PREFIX) {
            out.insert(c.clone(), mask.clone());
        }
        out.insert(m.clone(), mask.clone());
    }
    Ok(out)
}

/// Each row's cell: its dimensions' codes as text (empty for a null).
fn cell_keys(table: &RecordBatch, dimensions: &[String]) -> Result<Vec<Vec<String>>, PublishError> {
    use arrow::array::{Array, AsArray};
    let dim_text: Vec<arrow::array::ArrayRef> = dimensions
        .iter()
        .map(|name| {
            let a = table
                .column_by_name(name)
                .ok_or_else(|| PublishError::NoColumn {
                    name: name.to_string(),
                })?;
            arrow::compute::cast(a, &arrow::datatypes::DataType::Utf8).map_err(PublishError::Table)
        })
        .collect::<Result<_, _>>()?;
    Ok((0..table.num_rows())
        .map(|i| {
            dim_text
                .iter()
                .map(|a| {
                    let a = a.as_string::<i32>();
                    if a.is_valid(i) {
                        a.value(i).to_string()
                    } else {
                        String::new()
                    }
                })
                .collect()
        })
        .collect())
}

/// Each deciding count column's values, rounded to whole persons or events.
fn deciding_counts(
    table: &RecordBatch,
    columns: &[String],
) -> Result<Vec<Vec<Option<i64>>>, PublishError> {
    use arrow::array::{Array, AsArray};
    columns
        .iter()
        .map(|c| {
            let a = table
                .column_by_name(c)
                .ok_or_else(|| PublishError::NoColumn { name: c.clone() })?;
            let a = arrow::compute::cast(a, &arrow::datatypes::DataType::Float64)
                .map_err(PublishError::Table)?;
            let a = a.as_primitive::<arrow::datatypes::Float64Type>();
            Ok((0..table.num_rows())
                .map(|i| a.is_valid(i).then(|| a.value(i).round() as i64))
                .collect())
        })
        .collect()
}

/// The schema with each column's description and unit as Arrow field metadata.
pub fn describe_columns(
    schema: &SchemaRef,
    p: &crate::line::spec::PublishSpec,
) -> arrow::datatypes::Schema {
    use std::collections::HashMap;
    let fields: Vec<arrow::datatypes::Field> = schema
        .fields()
        .iter()
        .map(|f| {
            let mut meta = HashMap::new();
            if let Some(c) = p.columns.get(f.name().as_str()) {
                if let Some(d) = &c.description {
                    meta.insert("description".to_string(), d.fi().to_string());
                    if let crate::line::spec::Text::Languages(l) = d {
                        if let Some(sv) = &l.sv {
                            meta.insert("description_sv".to_string(), sv.clone());
                        }
                        if let Some(en) = &l.en {
                            meta.insert("description_en".to_string(), en.clone());
                        }
                    }
                }
                if let Some(u) = &c.unit {
                    meta.insert("unit".to_string(), u.clone());
                }
            }
            if f.name() == crate::plan::STATUS_COLUMN {
                meta.insert(
                    "description".to_string(),
                    "suppressed: the cell is hidden by disclosure control".to_string(),
                );
            }
            f.as_ref().clone().with_metadata(meta)
        })
        .collect();
    arrow::datatypes::Schema::new(fields)
}

fn languages(t: &crate::line::spec::Text) -> [Option<String>; 3] {
    match t {
        crate::line::spec::Text::Plain(s) => [Some(s.clone()), None, None],
        crate::line::spec::Text::Languages(l) => [Some(l.fi.clone()), l.sv.clone(), l.en.clone()],
    }
}

/// What the JSON-stat writer needs: labels from the line, the publish step and code sets,
/// with the table's dimensions and which of them is the area.
pub fn jsonstat_meta<'a>(
    line: &crate::line::load::Line,
    p: &crate::line::spec::PublishSpec,
    dimensions: &'a [String],
    area: Option<&'a str>,
    codesets: &std::collections::BTreeMap<String, Arc<datafusion::datasource::MemTable>>,
) -> Result<crate::publish::jsonstat::DatasetMeta<'a>, PublishError> {
    use arrow::array::{Array, AsArray};
    use datafusion::datasource::TableProvider;
    let mut column_labels = std::collections::BTreeMap::new();
    let mut units = std::collections::BTreeMap::new();
    for (name, c) in &p.columns {
        if let Some(d) = &c.description {
            column_labels.insert(name.value.clone(), languages(d));
        }
        if let Some(u) = &c.unit {
            units.insert(name.value.clone(), u.clone());
        }
    }
    let mut code_labels = std::collections::BTreeMap::new();
    for (dim, spec) in &p.labels {
        let table = codesets.get(spec.codeset.value.as_str()).ok_or_else(|| {
            PublishError::UnknownCodeset {
                name: spec.codeset.value.clone(),
            }
        })?;
        let key = &line.spec.codesets[spec.codeset.value.as_str()].key.value;
        let schema = table.schema();
        let pick = |given: &Option<crate::line::spec::Name>, defaults: &[&str]| -> Option<String> {
            match given {
                Some(n) => Some(n.value.clone()),
                None => defaults
                    .iter()
                    .find(|d| schema.index_of(d).is_ok())
                    .map(|d| d.to_string()),
            }
        };
        let cols = [
            pick(&spec.fi, &["name_fi", "display", "kunta_nimi"]),
            pick(&spec.sv, &["name_sv", "display_sv"]),
            pick(&spec.en, &["name_en", "display_en"]),
        ];
        let mut labels = crate::publish::jsonstat::Labels::new();
        for partition in table.batches.iter() {
            let batches = partition.try_read().map_err(PublishError::CodesetBusy)?;
            for b in batches.iter() {
                let text = |c: &str| b.column_by_name(c).map(|a| a.as_string::<i32>().clone());
                let Some(k) = text(key) else {
                    return Err(PublishError::CodesetNoKey { key: key.clone() });
                };
                let ls: Vec<Option<arrow::array::StringArray>> =
                    cols.iter().map(|c| c.as_deref().and_then(text)).collect();
                for i in 0..b.num_rows() {
                    if !k.is_valid(i) {
                        continue;
                    }
                    let get = |j: usize| {
                        ls[j]
                            .as_ref()
                            .and_then(|a| a.is_valid(i).then(|| a.value(i).to_string()))
                    };
                    labels.insert(k.value(i).to_string(), [get(0), get(1), get(2)]);
                }
            }
        }
        code_labels.insert(dim.value.clone(), labels);
    }
    Ok(crate::publish::jsonstat::DatasetMeta {
        label: languages(&line.spec.title.value),
        source: line.spec.owner.clone(),
        dimensions,
        area,
        column_labels,
        units,
        code_labels,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use arrow::array::UInt64Array;
    use arrow::datatypes::{DataType, Field, Schema};
    use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
    use object_store::ObjectStoreExt;

    /// A published Parquet file of many rows is written in bounded row groups, and keeps
    /// every row.
    #[tokio::test]
    async fn parquet_is_written_in_bounded_row_groups() {
        let store: Arc<dyn ObjectStore> = Arc::new(object_store::memory::InMemory::new());
        let schema = Arc::new(Schema::new(vec![Field::new("n", DataType::UInt64, false)]));
        let batches: Vec<Result<RecordBatch, datafusion::error::DataFusionError>> = (0..20u64)
            .map(|b| {
                let values = UInt64Array::from_iter_values(b * 10_000..(b + 1) * 10_000);
                Ok(RecordBatch::try_new(schema.clone(), vec![Arc::new(values)]).unwrap())
            })
            .collect();
        let stream = Box::pin(RecordBatchStreamAdapter::new(
            schema.clone(),
            futures::stream::iter(batches),
        ));
        let rows = write_stream(
            &store,
            "out",
            "n",
            &[PublishFormat::Parquet],
            schema,
            stream,
            |_| Ok(()),
        )
        .await
        .unwrap();
        assert_eq!(rows, 200_000);
        let bytes = store
            .get(&Path::from("out/n.parquet"))
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        let reader = parquet::file::reader::SerializedFileReader::new(bytes).unwrap();
        assert_row_groups(&reader, 200_000, 4);
    }

    /// The Parquet file read by `reader` holds `rows` rows in `groups` row groups, none
    /// larger than [`ROW_GROUP_ROWS`].
    pub(crate) fn assert_row_groups(
        reader: &impl parquet::file::reader::FileReader,
        rows: i64,
        groups: usize,
    ) {
        let meta = reader.metadata();
        assert_eq!(meta.file_metadata().num_rows(), rows);
        assert_eq!(meta.num_row_groups(), groups);
        assert!(
            meta.row_groups()
                .iter()
                .all(|g| g.num_rows() as usize <= ROW_GROUP_ROWS)
        );
    }
}

#[cfg(test)]
mod protect_tests;
