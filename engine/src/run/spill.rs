//! Local Arrow IPC files that one task writes and other plans read when it is complete: a
//! step's output read by several consumers (or scanned twice by one).
//!
//! Writing a file is the dearest part of a spill: the kernel copies every byte into pages
//! it allocates for the file (a fifth of `hoitoonpaasy`'s CPU, PROFILE.md, twenty-first
//! round). Every row carries the name of the object it came from (`_object`), the same
//! few names over and over and often half a row's bytes, so the file holds a number for
//! each and the names once, in memory: the readers get them when the file is complete and
//! give their consumers the names again.
//!
//! A reader reads the batches of its partition straight from the file: each is one seek
//! and one read of its exact bytes (through a buffer, every batch after a seek filled a
//! whole buffer first: a 15 MB file was read as 465 MB).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, RecordBatch, StringArray, UInt32Array, UInt32Builder};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::error::ArrowError;
use datafusion::common::DataFusionError;
use datafusion::physical_plan::SendableRecordBatchStream;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use futures::StreamExt;
use tokio::sync::watch;

use crate::plan::OBJECT_COLUMN;
use crate::run::RunIoError;

/// What readers need of a complete spill file: the object names its `_object` column
/// numbers (`None` when the file has no such column).
#[derive(Debug, Clone, Default)]
pub struct Written {
    objects: Option<(usize, Arc<StringArray>)>,
}

/// Whether a spill file is complete: `None` while it is written, then the writer's outcome.
pub type Ready = Option<Result<Written, RunIoError>>;

/// Writes a spill file of batches of `schema`, `_object` as numbers (see the module).
pub struct Writer {
    file: arrow::ipc::writer::FileWriter<std::io::BufWriter<std::fs::File>>,
    objects: Option<(usize, Objects)>,
    /// The last batch's schema and its numbered form: a batch is written with its own
    /// schema (the physical one, which may differ from the plan's in nullability or a
    /// type's metadata) but for `_object`, as the file always took batches.
    numbered: Option<(SchemaRef, SchemaRef)>,
}

/// Most object names one spill file numbers, and most bytes of them: a SQL step may make
/// `_object` of anything, a name a row, which would otherwise all be held in memory.
const MOST_NAMES: usize = 1 << 20;
const MOST_NAME_BYTES: usize = 64 << 20;

/// The object names met so far, each numbered by its first appearance.
#[derive(Default)]
struct Objects {
    names: Vec<Arc<str>>,
    numbers: HashMap<Arc<str>, u32>,
    bytes: usize,
}

impl Objects {
    /// The column's names as numbers. Rows come object by object, so a name is looked up
    /// once for each run of rows that name it.
    fn encode(&mut self, names: &StringArray) -> Result<UInt32Array, ArrowError> {
        let mut out = UInt32Builder::with_capacity(names.len());
        let mut failed = None;
        super::quarantine::count_runs(
            names,
            names.len(),
            |_| true,
            |name, rows| {
                let rows = rows as usize;
                match name.map(|name| self.number(name)).transpose() {
                    Ok(Some(number)) => out.append_value_n(number, rows),
                    Ok(None) => out.append_nulls(rows),
                    Err(e) => {
                        failed.get_or_insert(e);
                    }
                }
            },
        );
        match failed {
            Some(e) => Err(e),
            None => Ok(out.finish()),
        }
    }

    fn number(&mut self, name: &str) -> Result<u32, ArrowError> {
        if let Some(&n) = self.numbers.get(name) {
            return Ok(n);
        }
        self.bytes += name.len();
        if self.names.len() >= MOST_NAMES || self.bytes > MOST_NAME_BYTES {
            return Err(ArrowError::ComputeError(format!(
                "the rows name more than {MOST_NAMES} objects or {} MiB of object names in `{OBJECT_COLUMN}`",
                MOST_NAME_BYTES >> 20
            )));
        }
        let n = self.names.len() as u32;
        let name: Arc<str> = name.into();
        self.names.push(name.clone());
        self.numbers.insert(name, n);
        Ok(n)
    }
}

/// `schema` with `_object` (at `at`) as numbers.
fn numbered(schema: &Schema, at: usize) -> SchemaRef {
    let mut fields: Vec<Field> = schema.fields().iter().map(|f| f.as_ref().clone()).collect();
    fields[at] = Field::new(OBJECT_COLUMN, DataType::UInt32, true);
    Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()))
}

impl Writer {
    /// A new file at `path` for batches of `schema`.
    pub fn create(path: &Path, schema: &Schema) -> Result<Self, ArrowError> {
        let at = schema
            .index_of(OBJECT_COLUMN)
            .ok()
            .filter(|&i| schema.field(i).data_type() == &DataType::Utf8);
        let stored = match at {
            Some(i) => numbered(schema, i),
            None => Arc::new(schema.clone()),
        };
        let file = std::fs::File::create(path)?;
        Ok(Self {
            file: arrow::ipc::writer::FileWriter::try_new(
                std::io::BufWriter::with_capacity(1 << 20, file),
                &stored,
            )?,
            objects: at.map(|i| (i, Objects::default())),
            numbered: None,
        })
    }

    pub fn write(&mut self, batch: &RecordBatch) -> Result<(), ArrowError> {
        let Some((at, objects)) = &mut self.objects else {
            return self.file.write(batch);
        };
        let names = (batch.column(*at).as_any().downcast_ref::<StringArray>())
            .ok_or_else(|| ArrowError::SchemaError(format!("{OBJECT_COLUMN} is not text")))?;
        let mut columns = batch.columns().to_vec();
        columns[*at] = Arc::new(objects.encode(names)?);
        let schema = match &self.numbered {
            // Each batch has a schema of its own (a projection makes one), mostly equal.
            Some((of, schema)) if Arc::ptr_eq(of, &batch.schema()) || **of == *batch.schema() => {
                schema.clone()
            }
            _ => {
                let schema = numbered(&batch.schema(), *at);
                self.numbered = Some((batch.schema(), schema.clone()));
                schema
            }
        };
        self.file.write(&RecordBatch::try_new(schema, columns)?)
    }

    /// Completes the file; what its readers need to read it.
    pub fn finish(mut self) -> Result<Written, ArrowError> {
        self.file.finish()?;
        Ok(Written {
            objects: (self.objects).map(|(at, o)| {
                let names = StringArray::from_iter_values(o.names.iter().map(|n| &**n));
                (at, Arc::new(names))
            }),
        })
    }
}

impl Written {
    /// Whether a file's columns as read (`got`) are those of `schema`, the consumer's (with
    /// `_object` as numbers where it is read): the file is the run's own, but its folder is
    /// open to programs running as the same user, and a column of another type than the
    /// plan's would reach its operators.
    fn check(&self, schema: &Schema, got: &Schema) -> Result<(), ArrowError> {
        let numbers = Field::new(OBJECT_COLUMN, DataType::UInt32, true);
        let same = schema.fields().len() == got.fields().len()
            && (schema.fields().iter().zip(got.fields()).enumerate()).all(|(i, (want, got))| {
                let want = match &self.objects {
                    Some((at, _)) if *at == i => &numbers,
                    _ => want.as_ref(),
                };
                want.name() == got.name()
                    && want.data_type() == got.data_type()
                    && want.is_nullable() == got.is_nullable()
            });
        if !same {
            return Err(ArrowError::SchemaError(
                "the spill file's columns are not those it was written with".into(),
            ));
        }
        Ok(())
    }

    /// What a reader of only the file's columns `projection` (in that order) needs: the
    /// names again only if it reads `_object`, at its place among them.
    fn projected(&self, projection: Option<&[usize]>) -> Written {
        let Some(projection) = projection else {
            return self.clone();
        };
        let objects = (self.objects.as_ref()).and_then(|(at, names)| {
            let place = projection.iter().position(|i| i == at)?;
            Some((place, names.clone()))
        });
        Written { objects }
    }

    /// A batch of the file as its consumers see it (`schema`): the object names again.
    fn restored(&self, schema: &SchemaRef, batch: RecordBatch) -> Result<RecordBatch, ArrowError> {
        let Some((at, names)) = &self.objects else {
            return Ok(batch);
        };
        let numbers = (batch.column(*at).as_any().downcast_ref::<UInt32Array>())
            .ok_or_else(|| ArrowError::SchemaError(format!("{OBJECT_COLUMN} is not numbered")))?;
        let mut columns: Vec<ArrayRef> = batch.columns().to_vec();
        let checked = arrow::compute::TakeOptions { check_bounds: true };
        columns[*at] = arrow::compute::take(names.as_ref(), numbers, Some(checked))?;
        RecordBatch::try_new(schema.clone(), columns)
    }
}

/// Partition `part` of `parts` of the file at `path`: every `parts`-th batch from `part`,
/// once `ready` says the file is complete (an error if its writer failed). Only the file's
/// columns `projection` are decoded, in that order (all when `None`): `schema` is theirs.
pub fn read_when_ready(
    schema: SchemaRef,
    path: PathBuf,
    mut ready: watch::Receiver<Ready>,
    (part, parts): (usize, usize),
    projection: Option<Vec<usize>>,
) -> SendableRecordBatchStream {
    let restore_as = schema.clone();
    let expected = schema.clone();
    let stream = futures::stream::once(async move {
        let written = match ready.wait_for(|v| v.is_some()).await {
            Ok(v) => match &*v {
                Some(Ok(w)) => Ok(w.clone()),
                Some(Err(e)) => Err(e.to_string()),
                None => Err(RunIoError::WriterGone.to_string()),
            },
            Err(_) => Err(RunIoError::WriterGone.to_string()),
        };
        let written = written.map_err(DataFusionError::Execution)?;
        let file = std::fs::File::open(&path)?;
        // Validated as it is read (2.6 % of hoitoonpaasy's CPU): the folder is the run's
        // own, but an external parser program runs as the same user while it exists.
        let written = written.projected(projection.as_deref());
        let reader = arrow::ipc::reader::FileReader::try_new(file, projection.clone())?;
        // The reader's schema is the file's whole; the columns read are those projected.
        let read = match &projection {
            Some(p) => Arc::new(reader.schema().project(p)?),
            None => reader.schema(),
        };
        written.check(&expected, &read)?;
        Ok((reader, written))
    })
    .flat_map(
        move |opened| -> futures::stream::BoxStream<'static, Result<RecordBatch, DataFusionError>> {
            match opened {
                Ok((mut r, written)) => {
                    // This partition's batches: every `parts`-th from `part` (the file's
                    // footer indexes them), read only when the partition is polled.
                    let batches = (part..r.num_batches()).step_by(parts.max(1));
                    let schema = restore_as.clone();
                    futures::stream::iter(batches.map(move |i| {
                        // Arrow's reader stops with a panic, not an error, on a batch cut
                        // short in a column it skips.
                        let read = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                            r.set_index(i)?;
                            r.next().unwrap_or_else(|| {
                                Err(ArrowError::IpcError(format!("spill file has no batch {i}")))
                            })
                        }));
                        let batch = read.unwrap_or_else(|_| {
                            Err(ArrowError::IpcError(format!(
                                "spill file's batch {i} is broken"
                            )))
                        })?;
                        written.restored(&schema, batch)
                    }))
                    .map(|b| b.map_err(DataFusionError::from))
                    .boxed()
                }
                Err(e) => futures::stream::once(async move { Err(e) }).boxed(),
            }
        },
    );
    Box::pin(RecordBatchStreamAdapter::new(schema, stream))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::UInt64Array;

    /// Rows of a number `n` and an object, either nullable or not.
    fn numbered_rows(n_nullable: bool, object_nullable: bool) -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("n", DataType::UInt64, n_nullable),
            Field::new(OBJECT_COLUMN, DataType::Utf8, object_nullable),
        ]))
    }

    fn batch(schema: &SchemaRef, objects: &[&str], first: u64) -> RecordBatch {
        let n = objects.len() as u64;
        RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(UInt64Array::from_iter_values(first..first + n)),
                Arc::new(StringArray::from(objects.to_vec())),
            ],
        )
        .unwrap()
    }

    /// A spill file holds a number for each row's object and the names once; its readers,
    /// in two partitions, get every row back with its object's name. The file is smaller
    /// than one that spells each name out (as spills were written before).
    #[tokio::test]
    async fn a_spill_file_numbers_object_names_and_its_readers_get_them_back() {
        let dir = tempfile::tempdir().unwrap();
        let schema = numbered_rows(false, false);
        let a = "inbox/hoitoonpaasy/2025-03/avohilmo-etela-pohjanmaa.csv";
        let b = "inbox/hoitoonpaasy/2025-03/avohilmo-pohjois-savo.csv";
        let batches = [
            batch(&schema, &[a; 300], 0),
            batch(&schema, &[&[a; 100][..], &[b; 200][..]].concat(), 300),
            batch(&schema, &[b, a, b, a], 600),
            batch(&schema, &[b; 300], 604),
        ];
        let path = dir.path().join("vaihe.arrow");
        let mut w = Writer::create(&path, &schema).unwrap();
        let plain_path = dir.path().join("nimin.arrow");
        let mut plain = arrow::ipc::writer::FileWriter::try_new(
            std::fs::File::create(&plain_path).unwrap(),
            &schema,
        )
        .unwrap();
        for b in &batches {
            w.write(b).unwrap();
            plain.write(b).unwrap();
        }
        let written = w.finish().unwrap();
        plain.finish().unwrap();
        let size = |p: &Path| std::fs::metadata(p).unwrap().len();
        assert!(
            size(&path) * 3 < size(&plain_path),
            "{} bytes, with names {}",
            size(&path),
            size(&plain_path)
        );

        let (_tx, ready) = watch::channel(Some(Ok(written)));
        let mut read = Vec::new();
        for part in 0..2 {
            let mut s =
                read_when_ready(schema.clone(), path.clone(), ready.clone(), (part, 2), None);
            while let Some(b) = s.next().await {
                let b = b.unwrap();
                assert_eq!(b.schema(), schema);
                read.push(b);
            }
        }
        read.sort_by_key(|b| {
            b.column(0)
                .as_any()
                .downcast_ref::<UInt64Array>()
                .unwrap()
                .value(0)
        });
        assert_eq!(read, batches);

        // A reader of some columns gets them in its order, `_object`'s names where it
        // reads it (first here), and none made where it does not.
        for projection in [vec![1, 0], vec![0], vec![1]] {
            let projected = Arc::new(schema.project(&projection).unwrap());
            let mut s = read_when_ready(
                projected.clone(),
                path.clone(),
                ready.clone(),
                (0, 1),
                Some(projection.clone()),
            );
            let mut back = Vec::new();
            while let Some(b) = s.next().await {
                let b = b.unwrap();
                assert_eq!(b.schema(), projected);
                back.push(b);
            }
            let expected: Vec<RecordBatch> = (batches.iter())
                .map(|b| b.project(&projection).unwrap())
                .collect();
            assert_eq!(back, expected, "{projection:?}");
        }
    }

    /// A spill file whose columns are not those it was written with (another program in
    /// its folder rewrote it) is refused when it is opened, whichever columns a reader
    /// reads, before a column of another type reaches a plan's operators.
    #[tokio::test]
    async fn a_spill_file_of_other_columns_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let schema = numbered_rows(false, false);
        let path = dir.path().join("vaihe.arrow");
        let mut w = Writer::create(&path, &schema).unwrap();
        w.write(&batch(&schema, &["a.csv"; 3], 0)).unwrap();
        let written = w.finish().unwrap();
        // The same file name, rewritten with `n` as signed numbers.
        let other = Arc::new(Schema::new(vec![
            Field::new("n", DataType::Int64, false),
            Field::new(OBJECT_COLUMN, DataType::UInt32, true),
        ]));
        let mut plain =
            arrow::ipc::writer::FileWriter::try_new(std::fs::File::create(&path).unwrap(), &other)
                .unwrap();
        let rows = RecordBatch::try_new(
            other.clone(),
            vec![
                Arc::new(arrow::array::Int64Array::from(vec![-1, 2])),
                Arc::new(UInt32Array::from(vec![0, 0])),
            ],
        )
        .unwrap();
        plain.write(&rows).unwrap();
        plain.finish().unwrap();
        let (_tx, ready) = watch::channel(Some(Ok(written)));
        for projection in [None, Some(vec![0]), Some(vec![1])] {
            let read_as = match &projection {
                Some(p) => Arc::new(schema.project(p).unwrap()),
                None => schema.clone(),
            };
            let mut s = read_when_ready(
                read_as,
                path.clone(),
                ready.clone(),
                (0, 1),
                projection.clone(),
            );
            let result = s.next().await.unwrap();
            if projection == Some(vec![1]) {
                // `_object` alone is as written.
                assert_eq!(result.unwrap().num_rows(), 2);
                continue;
            }
            let e = result.expect_err("a file of other columns was read");
            assert!(
                e.to_string().contains("not those it was written with"),
                "{e}"
            );
        }
    }

    /// Rows without an object keep none; a batch whose schema differs from the file's in
    /// nullability is written as before; a step whose rows name more objects than a spill
    /// numbers fails with an error that names the bound, not a name.
    #[tokio::test]
    async fn objects_may_be_missing_and_their_names_are_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let schema = numbered_rows(false, true);
        let loose = numbered_rows(true, true);
        let rows = RecordBatch::try_new(
            loose,
            vec![
                Arc::new(UInt64Array::from(vec![1, 2, 3])),
                Arc::new(StringArray::from(vec![Some("a.csv"), None, Some("a.csv")])),
            ],
        )
        .unwrap();
        let path = dir.path().join("vaihe.arrow");
        let mut w = Writer::create(&path, &schema).unwrap();
        w.write(&rows).unwrap();
        let (_tx, ready) = watch::channel(Some(Ok(w.finish().unwrap())));
        let mut s = read_when_ready(schema.clone(), path.clone(), ready, (0, 1), None);
        let back = s.next().await.unwrap().unwrap();
        assert_eq!(back.column(1).as_ref(), rows.column(1).as_ref());
        assert_eq!(back.schema(), schema);

        let many: Vec<String> = (0..=MOST_NAMES).map(|i| format!("o{i}")).collect();
        let mut w = Writer::create(&dir.path().join("monta.arrow"), &schema).unwrap();
        let e = w
            .write(&batch(
                &schema,
                &many.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
                0,
            ))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("more than 1048576 objects") && !e.contains("o1048576"),
            "{e}"
        );
    }

    /// A reader of a file whose writer failed fails, naming no content.
    #[tokio::test]
    async fn the_readers_of_a_failed_spill_fail() {
        let schema = Arc::new(Schema::new(vec![Field::new("n", DataType::UInt64, false)]));
        let (_tx, ready) = watch::channel(Some(Err(RunIoError::ProducerFailed)));
        let mut s = read_when_ready(schema, PathBuf::from("/nonexistent"), ready, (0, 1), None);
        let e = s.next().await.unwrap().unwrap_err().to_string();
        assert!(e.contains("the producing step failed"), "{e}");
    }
}
