//! External parser programs for Valtava: any language, crash-isolated, time-limited.
//!
//! The engine starts the program once per object, writes the object's bytes to its
//! standard input and reads an [Arrow IPC stream](https://arrow.apache.org/docs/format/Columnar.html#ipc-streaming-format)
//! from its standard output. The stream must hold the declared columns (found by name; other
//! columns are ignored). A program that exits with a non-zero status, runs past its time
//! limit, writes more than its limits or something that is not an Arrow stream does not stop
//! the run: its object is quarantined as one row (row 0) with a reason that says what went
//! wrong, never what the program printed.
//!
//! The program is not trusted with anything it does not need:
//! - its environment is cleared: it gets `PATH`, `LANG`, `TZ` and the variables the line's
//!   `env` option names, never the pseudonymisation key or the store's credentials;
//! - it runs in a process group of its own, and the whole group is killed at the time limit
//!   (and when it is done, so that nothing it started lives on);
//! - its standard output is read up to `max_output_mib`, its standard error up to 64 KiB;
//!   standard error goes to the run's log (through the engine's scrubber), not into the
//!   quarantine, since a program's message may quote the data it choked on.
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
    /// Largest Arrow stream the program may write for one object, in MiB. Default 256.
    #[serde(default = "default_max_output")]
    pub max_output_mib: u64,
    /// Environment variables passed on to the program besides `PATH`, `LANG` and `TZ`
    /// (names only; their values come from the engine's environment). Secrets are refused.
    #[serde(default)]
    pub env: Vec<String>,
}

fn default_timeout() -> u64 {
    60
}

fn default_max_output() -> u64 {
    256
}

/// Variables every program gets from the engine's environment.
const BASE_ENV: [&str; 3] = ["PATH", "LANG", "TZ"];

/// Standard error kept for the log, in bytes; the rest is read and dropped.
const MAX_STDERR: usize = 64 * 1024;

/// Whether a variable name looks like it holds a secret (the pseudonymisation key, store
/// credentials, tokens): never handed to a parser program.
fn secret(name: &str) -> bool {
    let n = name.to_ascii_uppercase();
    n.starts_with("VALTAVA_")
        || n.starts_with("AWS_")
        || ["KEY", "SECRET", "TOKEN", "PASSWORD", "CREDENTIAL"]
            .iter()
            .any(|w| n.contains(w))
}

impl Default for ExternalOptions {
    fn default() -> Self {
        Self {
            command: Vec::new(),
            timeout_seconds: default_timeout(),
            max_output_mib: default_max_output(),
            env: Vec::new(),
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
        if o.max_output_mib == 0 {
            return Err("`max_output_mib` must be at least 1".into());
        }
        if let Some(s) = o.env.iter().find(|n| secret(n)) {
            return Err(format!(
                "`env` names `{s}`, which looks like a secret: a parser program never gets keys, tokens or credentials"
            ));
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

/// Runs the program on the object; returns its standard output, or why it failed (a reason
/// that never quotes what the program printed; its standard error goes to the log).
async fn run_program(
    object: &SourceObject,
    options: &ExternalOptions,
    base_dir: Option<&std::path::Path>,
) -> Result<Vec<u8>, String> {
    let (program, args) = options.command.split_first().ok_or("no command")?;
    let mut child = command(program, args, options, base_dir)
        .spawn()
        .map_err(|e| format!("cannot start `{program}`: {}", e.kind()))?;
    let group = Group(child.id());
    let mut stdin = child.stdin.take().ok_or("no stdin")?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let stderr = child.stderr.take().ok_or("no stderr")?;
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
    let max_out =
        usize::try_from(options.max_output_mib.saturating_mul(1 << 20)).unwrap_or(usize::MAX);
    let read_out = bounded(stdout, max_out, false);
    let read_err = bounded(stderr, MAX_STDERR, true);
    let work = async {
        let (fed, out, err) = tokio::join!(feed, read_out, read_err);
        let status = child.wait().await.map_err(|e| e.to_string())?;
        fed?;
        Ok::<_, String>((status, out, err.map(|(e, _)| e).unwrap_or_default()))
    };
    let outcome = tokio::time::timeout(Duration::from_secs(options.timeout_seconds), work).await;
    // Whatever the program started ends with it.
    drop(group);
    let (status, out, err) = match outcome {
        Ok(r) => r?,
        Err(_) => {
            return Err(format!(
                "did not finish within {} s (its process group was killed)",
                options.timeout_seconds
            ));
        }
    };
    judge(status, out, &err, object, program, options)
}

/// The command that runs the program: in the line file's folder, with only the variables it
/// may have, its pipes to the engine, in a process group of its own.
fn command(
    program: &str,
    args: &[String],
    options: &ExternalOptions,
    base_dir: Option<&std::path::Path>,
) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(program);
    if let Some(dir) = base_dir.filter(|d| !d.as_os_str().is_empty()) {
        command.current_dir(dir);
    }
    command.env_clear();
    for name in BASE_ENV
        .iter()
        .copied()
        .chain(options.env.iter().map(String::as_str))
        .filter(|n| !secret(n))
    {
        if let Some(v) = std::env::var_os(name) {
            command.env(name, v);
        }
    }
    command
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    command
}

/// What a program that finished gave: its output, or why it failed (output over the limit,
/// unreadable, or a failing exit status). Its standard error goes to the log.
fn judge(
    status: std::process::ExitStatus,
    out: std::io::Result<(Vec<u8>, bool)>,
    err: &[u8],
    object: &SourceObject,
    program: &str,
    options: &ExternalOptions,
) -> Result<Vec<u8>, String> {
    if !err.is_empty() {
        tracing::warn!(
            object = %object.name,
            program = %program,
            "external parser's standard error: {}",
            String::from_utf8_lossy(err).trim()
        );
    }
    let out = match out {
        Ok((_, true)) => {
            return Err(format!(
                "wrote more than {} MiB (`max_output_mib`)",
                options.max_output_mib
            ));
        }
        Ok((out, false)) => out,
        Err(e) => return Err(format!("reading its output failed: {}", e.kind())),
    };
    if !status.success() {
        return Err(format!(
            "exited with {status}; its standard error ({} bytes) is in the run's log",
            err.len()
        ));
    }
    Ok(out)
}

/// Reads at most `limit` bytes of a pipe: (the bytes, whether there was more). With `drain`
/// the rest is read and dropped (so that the program does not block on a full pipe);
/// without it the pipe is closed at the limit.
async fn bounded(
    mut pipe: impl tokio::io::AsyncRead + Unpin,
    limit: usize,
    drain: bool,
) -> std::io::Result<(Vec<u8>, bool)> {
    let mut out = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    let mut over = false;
    loop {
        let n = pipe.read(&mut chunk).await?;
        if n == 0 {
            return Ok((out, over));
        }
        let room = limit.saturating_sub(out.len());
        out.extend_from_slice(&chunk[..n.min(room)]);
        if n > room {
            over = true;
            if !drain {
                return Ok((out, over));
            }
        }
    }
}

/// The program's process group, killed when dropped.
struct Group(Option<u32>);

impl Drop for Group {
    fn drop(&mut self) {
        if let Some(pid) = self
            .0
            .and_then(|p| i32::try_from(p).ok())
            .filter(|p| *p > 0)
        {
            // SAFETY: kill(2) with a negative pid signals the process group the program
            // leads (it was started with process_group(0)); no memory is touched.
            unsafe {
                libc::kill(-pid, libc::SIGKILL);
            }
        }
    }
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
        parse_with(serde_json::json!({ "command": command, "timeout_seconds": timeout })).await
    }

    async fn parse_with(options: serde_json::Value) -> Vec<ParsedBatch> {
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
            options,
            batch_size: 10,
            base_dir: None,
            limits: Default::default(),
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
                "cat >/dev/null; echo \"rivi $((1 + 2)): huono\" >&2; exit 3",
            ],
            10,
        )
        .await;
        assert_eq!(failed.len(), 1);
        assert_eq!(failed[0].rejects[0].row, 0);
        // What the program printed may quote the data: it goes to the log, not the reason.
        assert!(
            !failed[0].rejects[0].reason.contains("rivi 3: huono")
                && failed[0].rejects[0].reason.contains("14 bytes"),
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

    #[tokio::test]
    async fn the_program_sees_no_secret() {
        // SAFETY: the only test of this binary that changes the environment; the others do
        // not read these variables.
        unsafe {
            std::env::set_var("VALTAVA_PSEUDONYM_KEY", "0123456789abcdef0123");
            std::env::set_var("AWS_SECRET_ACCESS_KEY", "secret");
            std::env::set_var("PARSER_TEST_MODE", "yes");
        }
        let check = "cat >/dev/null; [ -z \"$VALTAVA_PSEUDONYM_KEY$AWS_SECRET_ACCESS_KEY$HOME\" ] && [ -n \"$PATH\" ] || exit 7; [ \"$PARSER_TEST_MODE\" = yes ] || exit 8; exit 3";
        let out = parse_with(serde_json::json!({
            "command": ["sh", "-c", check],
            "env": ["PARSER_TEST_MODE", "VALTAVA_PSEUDONYM_KEY"],
        }))
        .await;
        // A variable named in `env` is passed on; a secret is not, even when named.
        assert!(
            out[0].rejects[0].reason.contains("exit status: 3"),
            "{:?}",
            out[0].rejects
        );
        let out = parse_with(serde_json::json!({"command": ["sh", "-c", check]})).await;
        assert!(
            out[0].rejects[0].reason.contains("exit status: 8"),
            "{:?}",
            out[0].rejects
        );
        assert!(
            ExternalParser
                .check_options(
                    &serde_json::json!({"command": ["x"], "env": ["VALTAVA_PSEUDONYM_KEY"]})
                )
                .is_err()
        );
        assert!(
            ExternalParser
                .check_options(&serde_json::json!({"command": ["x"], "env": ["PGPASSWORD"]}))
                .is_err()
        );
        assert!(
            ExternalParser
                .check_options(&serde_json::json!({"command": ["x"], "env": ["LC_ALL"]}))
                .is_ok()
        );
    }

    #[tokio::test]
    async fn the_whole_process_group_is_killed_at_the_time_limit() {
        let dir = std::env::temp_dir().join(format!("valtava-ext-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let pidfile = dir.join("pid");
        let script = format!(
            "sleep 60 & echo $! > {}; cat >/dev/null; sleep 60",
            pidfile.display()
        );
        let out = parse(vec!["sh", "-c", &script], 1).await;
        assert!(
            out[0].rejects[0].reason.contains("within 1 s"),
            "{:?}",
            out[0].rejects
        );
        let pid = std::fs::read_to_string(&pidfile).unwrap();
        let pid = pid.trim();
        // The grandchild is gone (or a zombie waiting for its reaper), not sleeping on.
        std::thread::sleep(Duration::from_millis(200));
        let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let alive = state
            .rsplit(") ")
            .next()
            .is_some_and(|s| !s.starts_with('Z') && !s.is_empty());
        assert!(!alive, "the program's child {pid} lives on: {state}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn output_beyond_the_limit_quarantines_the_object() {
        let out = parse_with(serde_json::json!({
            "command": ["sh", "-c", "cat >/dev/null; head -c 3000000 /dev/zero; echo lots >&2; head -c 200000 /dev/zero >&2"],
            "max_output_mib": 1,
        }))
        .await;
        assert!(
            out[0].rejects[0].reason.contains("more than 1 MiB"),
            "{:?}",
            out[0].rejects
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
