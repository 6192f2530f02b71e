//! What several commands share: the parsers of flag values, the logs, diagnostics and errors
//! on the terminal (every text through the scrubber), the pseudonymisation key and the store
//! of `run` and `serve`, and the runtimes the commands block on.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use crate::diag::Diagnostic;

use super::{DiagFormat, LogFormat};

/// A `NAME=VALUE` flag (`--param`, `--source`).
pub(super) fn key_value(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .filter(|(k, _)| !k.is_empty())
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("`{s}` is not NAME=VALUE"))
}

/// A number of seconds given on the command line: finite, not negative, at most a year
/// (`inf` or `1e300` would panic when turned into a duration).
pub(super) fn seconds(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .parse()
        .map_err(|_| format!("{s:?} is not a number of seconds"))?;
    if v.is_finite() && (0.0..=31_536_000.0).contains(&v) {
        Ok(v)
    } else {
        Err(format!("{s} is not between 0 and 31536000 seconds"))
    }
}

pub(super) fn init_logs(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,valtava=info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(crate::redact::stderr);
    match format {
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).init(),
        LogFormat::Json => builder.json().init(),
    }
}

pub(super) fn print_diags(
    diags: &[Diagnostic],
    format: DiagFormat,
    sources: &dyn Fn(&str) -> Option<String>,
) {
    match format {
        DiagFormat::Json => println!(
            "{}",
            serde_json::to_string_pretty(diags).unwrap_or_default()
        ),
        DiagFormat::Human => {
            for d in diags {
                eprint!("{}", d.render(sources(&d.file).as_deref()));
            }
        }
    }
}

/// An error for the person at the terminal, through the scrubber like every text.
pub(super) fn error(e: impl std::fmt::Display) {
    eprintln!("error: {}", crate::redact::scrub(&e.to_string()));
}

pub(super) fn read_source(file: &str) -> Option<String> {
    std::fs::read_to_string(file).ok()
}

/// The pseudonymisation key and the store of `run` and `serve`; usage errors exit 2.
pub(super) fn key_and_store(
    key_file: Option<&PathBuf>,
    store: &str,
) -> Result<(Option<Vec<u8>>, crate::store::Store), ExitCode> {
    let fail = |e: String| {
        error(&e);
        ExitCode::from(2)
    };
    let key = pseudonym_key(key_file).map_err(fail)?;
    let store = crate::store::open(store).map_err(|e| fail(e.to_string()))?;
    Ok((key, store))
}

/// The multi-threaded runtime of `run`, `serve`, `gc` and `cluster`.
pub(super) fn runtime() -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Builder::new_multi_thread()
        .max_blocking_threads(crate::run::blocking_threads())
        .enable_all()
        .build()
        .map_err(|e| {
            eprintln!("error: cannot start the runtime: {e}");
            ExitCode::from(1)
        })
}

/// The single-threaded runtime of `releases` and `show`, which only read a few objects.
pub(super) fn current_runtime() -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            error(&e);
            ExitCode::from(1)
        })
}

fn pseudonym_key(file: Option<&PathBuf>) -> Result<Option<Vec<u8>>, String> {
    let key = match file {
        Some(f) => {
            let bytes = std::fs::read(f)
                .map_err(|e| format!("cannot read the key file {}: {e}", f.display()))?;
            let text_len = bytes
                .iter()
                .rposition(|b| !b.is_ascii_whitespace())
                .map_or(0, |i| i + 1);
            bytes[..text_len].to_vec()
        }
        None => match std::env::var("VALTAVA_PSEUDONYM_KEY") {
            Ok(k) => k.into_bytes(),
            Err(_) => return Ok(None),
        },
    };
    if key.len() < 16 {
        return Err(
            "the pseudonymisation key is shorter than 16 bytes; use a long random key".into(),
        );
    }
    crate::redact::set_key(&key);
    Ok(Some(key))
}

/// `VALTAVA_MEMORY_LIMIT` (bytes, or with `K`, `M`, `G`): the memory the query engine may
/// use before it spills to disk; unset: no limit. A value that is not a size is a usage
/// error (exit status 2), never a run without its limit.
pub(super) fn memory_limit() -> Result<Option<usize>, ExitCode> {
    let Ok(v) = std::env::var("VALTAVA_MEMORY_LIMIT") else {
        return Ok(None);
    };
    parse_size(&v).map(Some).ok_or_else(|| {
        error(format!(
            "VALTAVA_MEMORY_LIMIT `{v}`: expected bytes, or a number with K, M or G (e.g. 512M)"
        ));
        ExitCode::from(2)
    })
}

/// A size in bytes: `1048576`, `512K`, `512M`, `1.5G`.
fn parse_size(v: &str) -> Option<usize> {
    let v = v.trim();
    let (num, mult) = match v.chars().last()? {
        'k' | 'K' => (&v[..v.len() - 1], 1usize << 10),
        'm' | 'M' => (&v[..v.len() - 1], 1 << 20),
        'g' | 'G' => (&v[..v.len() - 1], 1 << 30),
        _ => (v, 1),
    };
    let n = num.trim().parse::<f64>().ok()?;
    (n.is_finite() && n > 0.0).then_some((n * mult as f64) as usize)
}

#[cfg(test)]
mod tests {
    use super::parse_size;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("512M"), Some(512 << 20));
        assert_eq!(parse_size(" 1.5g "), Some(3 << 29));
        assert_eq!(parse_size("2048"), Some(2048));
        assert_eq!(parse_size("64k"), Some(64 << 10));
        for bad in ["", "M", "abc", "-1G", "inf", "NaN", "0"] {
            assert_eq!(parse_size(bad), None, "{bad}");
        }
    }
}
