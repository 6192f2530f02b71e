//! External parser programs for Valtava: any language, crash-isolated, time-limited.
//!
//! The engine starts the program once per object, writes the object's bytes to its
//! standard input and reads an [Arrow IPC stream](https://arrow.apache.org/docs/format/Columnar.html#ipc-streaming-format)
//! from its standard output; standard error is kept for the message. The stream must hold
//! the declared columns (found by name; other columns are ignored). A program that exits
//! with a non-zero status, runs past its time limit or writes something that is not an
//! Arrow stream does not stop the run: its object is quarantined as one row (row 0) with the
//! program's message.
//!
//! ```yaml
//! source:
//!   format: external
//!   location: inbox/talous/{period}/*.txt
//!   options: { command: [python3, parsers/kiintea_leveys.py], timeout_seconds: 30 }
//! ```

use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use arrow::array::{ArrayRef, RecordBatch, UInt64Array};
use arrow::datatypes::{DataType, Field, Schema};
use futures::StreamExt;
use futures::stream;
use schemars::JsonSchema;
use serde::Deserialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use valtava_plugin::{
    ParseError, ParseRequest, ParseStream, ParsedBatch, Parser, ROW_COLUMN, RowReject,
    SourceObject, typed_options,
};

/// Options of the `external` format.
#[derive(Debug, Clone, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ExternalOptions {
    /// The program and its arguments, e.g. `[python3, parsers/my_parser.py]`; it runs in the
    /// line file's folder, so relative paths start there. It reads the object on standard
    /// input and writes an Arrow IPC stream on standard output.
    pub command: Vec<String>,
    /// Seconds the program may run for one object. Default 60.
    #[serde(default = "default_timeout")]
    pub timeout_seconds: u64,
}

fn default_timeout() -> u64 {
    60
}

impl Default for ExternalOptions {
    fn default() -> Self {
        Self {
            command: Vec::new(),
            timeout_seconds: default_timeout(),
        }
    }
}

/// The `external` parser.
#[derive(Debug, Default)]
pub struct ExternalParser;

impl Parser for ExternalParser {
    fn format(&self) -> &'static str {
        "external"
    }

    fn options_schema(&self, generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        generator.subschema_for::<ExternalOptions>()
    }

    fn check_options(&self, options: &serde_json::Value) -> Result<(), String> {
        let o = typed_options::<ExternalOptions>(options)?;
        if o.command.is_empty() {
            return Err("`command` names the program to run, e.g. [python3, parsers/x.py]".into());
        }
        if o.timeout_seconds == 0 {
            return Err("`timeout_seconds` must be at least 1".into());
        }
        Ok(())
    }

    fn parse(&self, object: SourceObject, request: ParseRequest) -> ParseStream {
        stream::once(async move {
            let options =
                typed_options::<ExternalOptions>(&request.options).map_err(|message| {
                    ParseError::Object {
                        object: object.name.clone(),
                        message,
                    }
                })?;
            let outcome = run_program(&object, &options, request.base_dir.as_deref()).await;
            Ok::<_, ParseError>(
                match outcome.and_then(|bytes| batches(&bytes, &request, &object.name)) {
                    Ok(parsed) => parsed,
                    Err(reason) => vec![ParsedBatch {
                        batch: RecordBatch::new_empty(valtava_plugin::text_schema(
                            &request.columns,
                        )),
                        rejects: vec![RowReject {
                            row: 0,
                            reason: format!(
                                "external parser `{}`: {reason}",
                                options.command.join(" ")
                            ),
                        }],
                    }],
                },
            )
        })
        .map(|r| match r {
            Ok(v) => stream::iter(v.into_iter().map(Ok)).boxed(),
            Err(e) => stream::once(async move { Err(e) }).boxed(),
        })
        .flatten()
        .boxed()
    }
}

/// Runs the program on the object; returns its standard output, or why it failed.
async fn run_program(
    object: &SourceObject,
    options: &ExternalOptions,
    base_dir: Option<&std::path::Path>,
) -> Result<Vec<u8>, String> {
    let (program, args) = options.command.split_first().ok_or("no command")?;
    let mut command = tokio::process::Command::new(program);
    if let Some(dir) = base_dir.filter(|d| !d.as_os_str().is_empty()) {
        command.current_dir(dir);
    }
    let mut child = command
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot start `{program}`: {e}"))?;
    let mut stdin = child.stdin.take().ok_or("no stdin")?;
    let mut stdout = child.stdout.take().ok_or("no stdout")?;
    let mut stderr = child.stderr.take().ok_or("no stderr")?;
    let mut input = object.open().await.map_err(|e| e.to_string())?;
    let feed = async move {
        while let Some(chunk) = input.next().await {
            let chunk = chunk.map_err(|e| e.to_string())?;
            if stdin.write_all(&chunk).await.is_err() {
                break; // the program stopped reading; its exit status tells why
            }
        }
        drop(stdin);
        Ok::<(), String>(())
    };
    let read_out = async move {
        let mut out = Vec::new();
        stdout.read_to_end(&mut out).await.map(|_| out)
    };
    let read_err = async move {
        let mut err = Vec::new();
        stderr.read_to_end(&mut err).await.map(|_| err)
    };
    let work = async {
        let (fed, out, err) = tokio::join!(feed, read_out, read_err);
        let status = child.wait().await.map_err(|e| e.to_string())?;
        fed?;
        Ok::<_, String>((
            status,
            out.map_err(|e| e.to_string())?,
            err.unwrap_or_default(),
        ))
    };
    let (status, out, err) =
        match tokio::time::timeout(Duration::from_secs(options.timeout_seconds), work).await {
            Ok(r) => r?,
            Err(_) => {
                return Err(format!(
                    "did not finish within {} s",
                    options.timeout_seconds
                ));
            }
        };
    if !status.success() {
        let message = String::from_utf8_lossy(&err);
        let tail: String = message
            .trim()
            .chars()
            .rev()
            .take(500)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        return Err(format!("exited with {status}: {tail}"));
    }
    Ok(out)
}

/// The declared columns of the program's Arrow stream, with row numbers.
fn batches(bytes: &[u8], request: &ParseRequest, object: &str) -> Result<Vec<ParsedBatch>, String> {
    // Check the first message's framing before the reader trusts its length (text read as a
    // length would make it allocate gigabytes).
    let word = |i: usize| {
        bytes
            .get(i..i + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    };
    let first_len = match word(0) {
        Some(0xFFFF_FFFF) => word(4),
        other => other,
    };
    if first_len.is_none_or(|n| n as usize > bytes.len()) {
        return Err("its output is not an Arrow IPC stream".into());
    }
    let reader = arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(bytes), None)
        .map_err(|e| format!("its output is not an Arrow IPC stream: {e}"))?;
    let schema = reader.schema();
    let mut missing = Vec::new();
    let mut idx = Vec::new();
    for c in &request.columns {
        match schema.index_of(c) {
            Ok(i) => idx.push(i),
            Err(_) => missing.push(format!("`{c}`")),
        }
    }
    if !missing.is_empty() {
        return Err(format!(
            "its output lacks declared column(s) {}",
            missing.join(", ")
        ));
    }
    let mut fields: Vec<Field> = idx
        .iter()
        .map(|&i| schema.field(i).clone().with_nullable(true))
        .collect();
    fields.push(Field::new(ROW_COLUMN, DataType::UInt64, false));
    let out_schema = Arc::new(Schema::new(fields));
    let mut next = 1u64;
    let mut out = Vec::new();
    for b in reader {
        let b = b.map_err(|e| format!("its Arrow stream broke off: {e}"))?;
        let n = b.num_rows() as u64;
        let mut cols: Vec<ArrayRef> = idx.iter().map(|&i| b.column(i).clone()).collect();
        cols.push(Arc::new(UInt64Array::from_iter_values(next..next + n)));
        next += n;
        out.push(ParsedBatch {
            batch: RecordBatch::try_new(out_schema.clone(), cols)
                .map_err(|e| format!("{object}: {e}"))?,
            rejects: vec![],
        });
    }
    Ok(out)
}

/// The parser as a registry entry.
pub fn parser() -> Arc<dyn Parser> {
    Arc::new(ExternalParser)
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::memory::InMemory;
    use object_store::path::Path;
    use object_store::{ObjectStoreExt, PutPayload};

    async fn parse(command: Vec<&str>, timeout: u64) -> Vec<ParsedBatch> {
        let store = Arc::new(InMemory::new());
        let path = Path::from("x.txt");
        store
            .put(&path, PutPayload::from_static(b"hello"))
            .await
            .unwrap();
        let object = SourceObject {
            store,
            path,
            size: 5,
            name: "x.txt".into(),
        };
        let request = ParseRequest {
            columns: vec!["a".into()],
            types: vec![],
            options: serde_json::json!({ "command": command, "timeout_seconds": timeout }),
            batch_size: 10,
            base_dir: None,
        };
        ExternalParser
            .parse(object, request)
            .map(|r| r.unwrap())
            .collect()
            .await
    }

    #[tokio::test]
    async fn failures_quarantine_the_object_with_the_message() {
        let failed = parse(
            vec![
                "sh",
                "-c",
                "cat >/dev/null; echo 'rivi 3: huono' >&2; exit 3",
            ],
            10,
        )
        .await;
        assert_eq!(failed.len(), 1);
        assert_eq!(failed[0].rejects[0].row, 0);
        assert!(
            failed[0].rejects[0].reason.contains("rivi 3: huono"),
            "{:?}",
            failed[0].rejects
        );
        assert!(
            failed[0].rejects[0].reason.contains("exit status: 3"),
            "{:?}",
            failed[0].rejects
        );

        let slow = parse(vec!["sh", "-c", "exec sleep 5"], 1).await;
        assert!(
            slow[0].rejects[0].reason.contains("within 1 s"),
            "{:?}",
            slow[0].rejects
        );

        let garbage = parse(vec!["sh", "-c", "cat; echo not arrow"], 10).await;
        assert!(
            garbage[0].rejects[0]
                .reason
                .contains("not an Arrow IPC stream"),
            "{:?}",
            garbage[0].rejects
        );

        let missing = parse(vec!["no-such-program-valtava"], 10).await;
        assert!(
            missing[0].rejects[0].reason.contains("cannot start"),
            "{:?}",
            missing[0].rejects
        );
    }

    #[test]
    fn options_need_a_command() {
        assert!(
            ExternalParser
                .check_options(&serde_json::json!({}))
                .is_err()
        );
        assert!(
            ExternalParser
                .check_options(&serde_json::json!({"command": []}))
                .is_err()
        );
        assert!(
            ExternalParser
                .check_options(&serde_json::json!({"command": ["x"], "timeout_seconds": 0}))
                .is_err()
        );
        assert!(
            ExternalParser
                .check_options(&serde_json::json!({"command": ["x"]}))
                .is_ok()
        );
    }
}
