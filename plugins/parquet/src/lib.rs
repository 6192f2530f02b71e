//! The Parquet source parser of Valtava.
//!
//! Reads the declared columns (found by name, projected so that other columns are never
//! decoded) in their native Arrow types, streaming row groups from object storage; the
//! engine casts them to the declared types. Row numbers are 1-based positions in the
//! object.

use std::sync::Arc;

use arrow::array::{ArrayRef, UInt64Array};
use arrow::datatypes::{DataType, Field, Schema};
use arrow::record_batch::RecordBatch;
use bytes::Bytes;
use futures::FutureExt;
use futures::future::BoxFuture;
use futures::stream::{self, StreamExt, TryStreamExt};
use object_store::{ObjectStore, ObjectStoreExt};
use parquet::arrow::arrow_reader::ArrowReaderOptions;
use parquet::arrow::async_reader::AsyncFileReader;
use parquet::arrow::{ParquetRecordBatchStreamBuilder, ProjectionMask};
use parquet::file::metadata::{ParquetMetaData, ParquetMetaDataReader};
use schemars::JsonSchema;
use serde::Deserialize;
use valtava_plugin::{
    ParseError, ParseRequest, ParseStream, ParsedBatch, Parser, ROW_COLUMN, SourceObject,
    typed_options,
};

/// Options of the `parquet` format (none yet; the key is reserved).
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ParquetOptions {}

/// The `parquet` parser.
#[derive(Debug, Default)]
pub struct ParquetParser;

impl Parser for ParquetParser {
    fn format(&self) -> &'static str {
        "parquet"
    }

    fn options_schema(&self, generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        generator.subschema_for::<ParquetOptions>()
    }

    fn check_options(&self, options: &serde_json::Value) -> Result<(), String> {
        typed_options::<ParquetOptions>(options).map(|_| ())
    }

    fn parse(&self, object: SourceObject, request: ParseRequest) -> ParseStream {
        let open = async move {
            let obj_err = |message: String| ParseError::Object {
                object: object.name.clone(),
                message,
            };
            let reader = ObjectReader {
                store: object.store.clone(),
                path: object.path.clone(),
                size: object.size,
            };
            // The Arrow schema a writer may embed is not read: the declared columns say
            // the types, and a malformed embedded schema makes arrow-ipc panic (found by
            // the fuzzing harness).
            let options = ArrowReaderOptions::new().with_skip_arrow_metadata(true);
            let builder = ParquetRecordBatchStreamBuilder::new_with_options(reader, options)
                .await
                .map_err(|e| obj_err(format!("not a readable Parquet file: {e}")))?;
            let file_schema = builder.schema().clone();
            let mut indices = Vec::with_capacity(request.columns.len());
            let mut missing = Vec::new();
            for c in &request.columns {
                match file_schema.index_of(c) {
                    Ok(i) => indices.push(i),
                    Err(_) => missing.push(format!("`{c}`")),
                }
            }
            if !missing.is_empty() {
                return Err(obj_err(format!(
                    "the file lacks declared column(s) {}",
                    missing.join(", ")
                )));
            }
            let mask = ProjectionMask::roots(builder.parquet_schema(), indices.iter().copied());
            let stream = builder
                .with_projection(mask)
                .with_batch_size(request.batch_size)
                .build()
                .map_err(|e| obj_err(e.to_string()))?;
            Ok::<_, ParseError>((stream, request, object.name))
        };
        stream::once(open)
            .map_ok(move |(stream, request, name)| {
                let mut next_row: u64 = 1;
                stream
                    .map(move |batch| {
                        let batch = batch.map_err(|e| ParseError::Object {
                            object: name.clone(),
                            message: e.to_string(),
                        })?;
                        let n = batch.num_rows() as u64;
                        let rows: ArrayRef =
                            Arc::new(UInt64Array::from_iter_values(next_row..next_row + n));
                        next_row += n;
                        reorder(batch, &request.columns, rows, &name)
                    })
                    .boxed()
            })
            .try_flatten()
            .boxed()
    }
}

/// The number of rows of a Parquet object, from its footer.
pub async fn row_count(object: &SourceObject) -> Result<u64, String> {
    let reader = ObjectReader {
        store: object.store.clone(),
        path: object.path.clone(),
        size: object.size,
    };
    let builder = ParquetRecordBatchStreamBuilder::new(reader)
        .await
        .map_err(|e| format!("{}: {e}", object.name))?;
    Ok(builder.metadata().file_metadata().num_rows().max(0) as u64)
}

/// Reads byte ranges of one object; the footer is found from the listed size, so opening
/// costs one request.
struct ObjectReader {
    store: Arc<dyn ObjectStore>,
    path: object_store::path::Path,
    size: u64,
}

impl AsyncFileReader for ObjectReader {
    fn get_bytes(
        &mut self,
        range: std::ops::Range<u64>,
    ) -> BoxFuture<'_, parquet::errors::Result<Bytes>> {
        async move {
            self.store
                .get_range(&self.path, range)
                .await
                .map_err(|e| parquet::errors::ParquetError::External(Box::new(e)))
        }
        .boxed()
    }

    fn get_metadata<'a>(
        &'a mut self,
        _options: Option<&'a ArrowReaderOptions>,
    ) -> BoxFuture<'a, parquet::errors::Result<Arc<ParquetMetaData>>> {
        async move {
            let size = self.size;
            let metadata = ParquetMetaDataReader::new()
                .with_prefetch_hint(Some(64 * 1024))
                .load_and_finish(self, size)
                .await?;
            Ok(Arc::new(metadata))
        }
        .boxed()
    }
}

/// Puts the projected columns in declared order and appends the row numbers.
fn reorder(
    batch: RecordBatch,
    columns: &[String],
    rows: ArrayRef,
    object: &str,
) -> Result<ParsedBatch, ParseError> {
    let schema = batch.schema();
    let mut fields = Vec::with_capacity(columns.len() + 1);
    let mut arrays = Vec::with_capacity(columns.len() + 1);
    for c in columns {
        let i = schema.index_of(c).map_err(|source| ParseError::Arrow {
            object: object.to_string(),
            source,
        })?;
        fields.push(Field::new(c, schema.field(i).data_type().clone(), true));
        arrays.push(batch.column(i).clone());
    }
    fields.push(Field::new(ROW_COLUMN, DataType::UInt64, false));
    arrays.push(rows);
    let batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays).map_err(|source| {
        ParseError::Arrow {
            object: object.to_string(),
            source,
        }
    })?;
    Ok(ParsedBatch {
        batch,
        rejects: Vec::new(),
    })
}

/// The parser as a registry entry.
pub fn parser() -> Arc<dyn Parser> {
    Arc::new(ParquetParser)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{AsArray, Int32Array, StringArray};
    use arrow::datatypes::{Int32Type, UInt64Type};
    use object_store::PutPayload;
    use object_store::memory::InMemory;
    use object_store::path::Path;
    use parquet::arrow::ArrowWriter;

    #[tokio::test]
    async fn projects_declared_columns_in_order_with_row_numbers() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("a", DataType::Int32, false),
            Field::new("b", DataType::Utf8, false),
            Field::new("c", DataType::Utf8, false),
        ]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(Int32Array::from(vec![1, 2, 3])),
                Arc::new(StringArray::from(vec!["x", "y", "z"])),
                Arc::new(StringArray::from(vec!["p", "q", "r"])),
            ],
        )
        .unwrap();
        let mut buf = Vec::new();
        let mut w = ArrowWriter::try_new(&mut buf, schema, None).unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();
        let store = Arc::new(InMemory::new());
        let path = Path::from("t.parquet");
        let size = buf.len() as u64;
        store.put(&path, PutPayload::from(buf)).await.unwrap();
        let object = SourceObject {
            store: store.clone(),
            path: path.clone(),
            size,
            name: "t.parquet".into(),
        };
        let request = ParseRequest {
            columns: vec!["c".into(), "a".into()],
            types: vec![],
            options: serde_json::Value::Null,
            batch_size: 2,
            base_dir: None,
            limits: Default::default(),
        };
        let parts: Vec<ParsedBatch> = ParquetParser
            .parse(object, request)
            .map(|b| b.unwrap())
            .collect()
            .await;
        assert_eq!(parts.len(), 2);
        let first = &parts[0].batch;
        assert_eq!(first.schema().field(0).name(), "c");
        assert_eq!(first.column(1).as_primitive::<Int32Type>().value(1), 2);
        assert_eq!(
            parts[1]
                .batch
                .column(2)
                .as_primitive::<UInt64Type>()
                .value(0),
            3
        );

        let object = SourceObject {
            store,
            path,
            size,
            name: "t.parquet".into(),
        };
        let request = ParseRequest {
            columns: vec!["kunta".into()],
            types: vec![],
            options: serde_json::Value::Null,
            batch_size: 2,
            base_dir: None,
            limits: Default::default(),
        };
        let err = ParquetParser
            .parse(object, request)
            .next()
            .await
            .unwrap()
            .unwrap_err()
            .to_string();
        assert!(err.contains("`kunta`"), "{err}");
    }
}
