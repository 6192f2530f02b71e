//! Who may do what: the token file, the bearer token of a request, and how a request that
//! is not allowed is answered.
//!
//! Tokens are read once at start ([`read_tokens`]); a weak one stops the daemon. A request
//! is authorised ([`authorize`]) before any of its body is read, and only then is the body
//! read ([`read_body`], bounded in size and in pauses); a refused request gets its answer
//! after a small body is drained ([`refuse`]), so that a client writing its whole body
//! first sees the 401/403 instead of a reset connection. Apart from the rest of the daemon
//! so that what decides access is in one place and can be read as a whole.

use std::collections::BTreeSet;
use std::path::Path as FsPath;
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, header};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::serve::App;
use crate::serve::error::{ApiError, ServeError};

/// A token from the token file.
pub(super) struct Token {
    name: String,
    digest: [u8; 32],
    roles: BTreeSet<String>,
    /// The lines it may write to (all when `None`).
    lines: Option<BTreeSet<String>>,
    /// The submitters it uploads for (an `upload` token's names, e.g. county codes): the
    /// name of every file it uploads starts with one of them.
    submitters: BTreeSet<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenFile {
    tokens: Vec<TokenSpec>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenSpec {
    name: String,
    /// The token itself…
    #[serde(default)]
    token: Option<String>,
    /// …or its sha256 in hex.
    #[serde(default)]
    sha256: Option<String>,
    roles: Vec<String>,
    #[serde(default)]
    lines: Option<Vec<String>>,
    #[serde(default)]
    submitters: Vec<String>,
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the digest.
        f.debug_struct("Token")
            .field("name", &self.name)
            .field("roles", &self.roles)
            .field("lines", &self.lines)
            .field("submitters", &self.submitters)
            .finish_non_exhaustive()
    }
}

/// `read`: the operational endpoints (runs, quality reports, metrics); `run`: trigger runs;
/// `upload`: submit files for its submitters; `admin`: all of them.
const ROLES: [&str; 4] = ["read", "run", "upload", "admin"];

/// Whether a token is one an attacker would try first: short, or a well-known password or a
/// small number (the digest of each is compared, so a token file holding only digests is
/// checked too).
fn weak_digest(digest: &[u8; 32]) -> bool {
    const WORDS: [&str; 16] = [
        "", "password", "passw0rd", "secret", "token", "admin", "changeme", "test", "testing",
        "valtava", "qwerty", "letmein", "default", "example", "salasana", "demo",
    ];
    let numbers = (0..=99_999u32).map(|n| n.to_string());
    WORDS
        .iter()
        .map(|w| w.to_string())
        .chain(numbers)
        .any(|w| same_digest(&Sha256::digest(w.as_bytes()).into(), digest))
}

/// Reads a token file (YAML): `tokens: [{ name, token | sha256, roles: [read, run, upload,
/// admin], lines: [...], submitters: [...] }]`. A weak token, or an upload token that names
/// no submitter, stops the daemon at start.
pub(super) fn read_tokens(path: &FsPath) -> Result<Vec<Token>, ServeError> {
    let text = std::fs::read_to_string(path).map_err(|source| ServeError::TokenFileRead {
        path: path.to_path_buf(),
        source,
    })?;
    let file: TokenFile =
        serde_saphyr::from_str(&text).map_err(|e| ServeError::TokenFileParse {
            path: path.to_path_buf(),
            source: Box::new(e),
        })?;
    let mut out = Vec::new();
    for t in file.tokens {
        let digest = spec_digest(&t, path)?;
        check_spec(&t, &digest, path)?;
        out.push(Token {
            name: t.name,
            digest,
            roles: t.roles.into_iter().collect(),
            lines: t.lines.map(|l| l.into_iter().collect()),
            submitters: t.submitters.into_iter().collect(),
        });
    }
    Ok(out)
}

/// The digest of a token of the file at `path`: of its `token` (at least 16 characters), or
/// its `sha256` (64 hex digits); exactly one of them is given.
fn spec_digest(t: &TokenSpec, path: &FsPath) -> Result<[u8; 32], ServeError> {
    let path = path.to_path_buf();
    let name = t.name.clone();
    Ok(match (&t.token, &t.sha256) {
        (Some(tok), None) => {
            if tok.len() < 16 {
                return Err(ServeError::ShortToken { path, name });
            }
            Sha256::digest(tok.as_bytes()).into()
        }
        (None, Some(h)) => hex::decode(h)
            .ok()
            .and_then(|b| <[u8; 32]>::try_from(b.as_slice()).ok())
            .ok_or(ServeError::BadDigest { path, name })?,
        _ => return Err(ServeError::TokenOrDigest { path, name }),
    })
}

/// Refuses a token of the file at `path` that is weak, an upload token without submitters,
/// a submitter name that is not letters and digits, or an unknown role.
fn check_spec(t: &TokenSpec, digest: &[u8; 32], path: &FsPath) -> Result<(), ServeError> {
    let path = path.to_path_buf();
    let name = t.name.clone();
    if weak_digest(digest) {
        return Err(ServeError::WeakToken { path, name });
    }
    if t.roles.iter().any(|r| r == "upload") && t.submitters.is_empty() {
        return Err(ServeError::NoSubmitters { path, name });
    }
    // Letters and digits only: with `_` or `-` in a name, `a` would own `a-b_1.csv`
    // as well as `a-b` does, and the separator rule could not tell whose file it is.
    if let Some(s) = t
        .submitters
        .iter()
        .find(|s| s.is_empty() || !s.chars().all(|c| c.is_ascii_alphanumeric()))
    {
        return Err(ServeError::BadSubmitter {
            path,
            name,
            submitter: s.clone(),
        });
    }
    if let Some(r) = t.roles.iter().find(|r| !ROLES.contains(&r.as_str())) {
        return Err(ServeError::UnknownRole {
            path,
            name,
            role: r.clone(),
            roles: ROLES.join(", "),
        });
    }
    Ok(())
}

/// Equality of two digests in time that does not depend on where they differ.
fn same_digest(a: &[u8; 32], b: &[u8; 32]) -> bool {
    let mut diff = 0u8;
    for (x, y) in a.iter().zip(b) {
        diff |= x ^ y;
    }
    std::hint::black_box(diff) == 0
}

/// Who a request was authorised as.
pub(super) struct Caller {
    /// The token's name.
    pub(super) name: String,
    /// The submitters it uploads for; `None` for an admin token (any).
    pub(super) submitters: Option<BTreeSet<String>>,
    /// The lines it may see and act on (all when `None`).
    lines: Option<BTreeSet<String>>,
}

impl Caller {
    /// Whether the caller may see or act on `line`.
    pub(super) fn may(&self, line: &str) -> bool {
        self.lines.as_ref().is_none_or(|l| l.contains(line))
    }

    /// Whether the caller may upload a file of this name: its name starts with one of the
    /// caller's submitters followed by `.`, `_` or `-` (`uusimaa.csv`, `091_2.csv`), so one
    /// county cannot write or overwrite another's file. Returns the submitter.
    pub(super) fn submitter_of(&self, file: &str) -> Option<String> {
        let Some(own) = &self.submitters else {
            return Some(self.name.clone());
        };
        own.iter()
            .find(|s| {
                file.strip_prefix(s.as_str())
                    .is_some_and(|rest| rest.starts_with(['.', '_', '-']))
            })
            .cloned()
    }
}

/// Checks the bearer token for a role (and line, where one is named); answers 401 or 403
/// without saying more. Runs before any body is read.
pub(super) fn authorize(
    app: &App,
    headers: &HeaderMap,
    role: &str,
    line: Option<&str>,
) -> Result<Caller, ApiError> {
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let Some(presented) = presented.filter(|p| !p.is_empty()) else {
        return Err(ApiError::NoToken);
    };
    let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
    // Compare with every token, not stopping at the first match.
    let mut found: Option<&Token> = None;
    for t in &app.tokens {
        if same_digest(&t.digest, &digest) {
            found = Some(t);
        }
    }
    let Some(t) = found else {
        return Err(ApiError::BadToken);
    };
    let admin = t.roles.contains("admin");
    let role_ok = t.roles.contains(role) || admin;
    let line_ok = line.is_none_or(|line| t.lines.as_ref().is_none_or(|l| l.contains(line)));
    if !(role_ok && line_ok) {
        return Err(ApiError::Forbidden);
    }
    Ok(Caller {
        name: t.name.clone(),
        submitters: (!admin).then(|| t.submitters.clone()),
        lines: t.lines.clone(),
    })
}

/// How long a request body may pause between two pieces before the request is dropped.
const BODY_IDLE: Duration = Duration::from_secs(30);

/// A refused request whose declared body is at most this long has its body read and
/// discarded before the answer (a lingering close, as nginx does): a client that writes
/// its whole body before reading, as most do, then gets the 401/403/4xx instead of a reset
/// connection. Larger bodies are never read: the answer goes out and the connection closes.
const LINGER_BYTES: u64 = 1 << 20;

/// How long a refused request's small body may take to arrive before the answer goes out
/// anyway.
const LINGER_TIME: Duration = Duration::from_secs(2);

/// Reads a request body of at most `limit` bytes, after the caller was authorised: a body
/// that pauses longer than [`BODY_IDLE`] or grows past the limit ends the request (408,
/// 413). An `Expect: 100-continue` client is told to send only now.
pub(super) async fn read_body(body: axum::body::Body, limit: usize) -> Result<Bytes, ApiError> {
    use http_body_util::BodyExt;
    let mut body = body;
    let mut out = bytes::BytesMut::new();
    loop {
        let frame = match tokio::time::timeout(BODY_IDLE, body.frame()).await {
            Err(_) => {
                return Err(ApiError::BodyTimeout {
                    seconds: BODY_IDLE.as_secs(),
                });
            }
            Ok(None) => return Ok(out.freeze()),
            Ok(Some(Err(_))) => return Err(ApiError::BadBody),
            Ok(Some(Ok(frame))) => frame,
        };
        if let Ok(data) = frame.into_data() {
            if out.len() + data.len() > limit {
                return Err(ApiError::TooLarge { limit });
            }
            out.extend_from_slice(&data);
        }
    }
}

/// Answers a request refused before its body was read. A body declared at most
/// [`LINGER_BYTES`] long is read and thrown away first, within [`LINGER_TIME`], so the
/// client sees the answer instead of a connection reset by unread data; any other body
/// is never read, nor is the body of a client that asked `Expect: 100-continue` (reading
/// it would tell a refused client to send). Returns the refusal, for the handler to answer.
pub(super) async fn refuse(
    headers: &HeaderMap,
    body: axum::body::Body,
    answer: ApiError,
) -> ApiError {
    use http_body_util::BodyExt;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let waits = headers
        .get(header::EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    if !waits && declared.is_some_and(|n| n > 0 && n <= LINGER_BYTES) {
        let drain = async {
            let mut body = body;
            let mut seen = 0u64;
            while let Some(Ok(frame)) = body.frame().await {
                seen += frame.data_ref().map_or(0, |d| d.len() as u64);
                if seen > LINGER_BYTES {
                    break;
                }
            }
        };
        let _ = tokio::time::timeout(LINGER_TIME, drain).await;
    }
    answer
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_deployment_example_token_file_is_valid() {
        let path =
            FsPath::new(env!("CARGO_MANIFEST_DIR")).join("../examples/deployment/tokens.yaml");
        let tokens = read_tokens(&path).unwrap();
        assert_eq!(tokens.len(), 3);
        assert_eq!(
            tokens[1].submitters,
            BTreeSet::from(["pirkanmaa".to_string()])
        );
        assert_eq!(
            tokens[1].lines,
            Some(BTreeSet::from(["ensihoito".to_string()]))
        );
        assert!(tokens[0].roles.contains("admin"));
    }

    #[test]
    fn token_digests_compare_whole() {
        let a: [u8; 32] = Sha256::digest(b"first-token-0123456789").into();
        let b: [u8; 32] = Sha256::digest(b"other-token-0123456789").into();
        assert!(same_digest(&a, &a));
        assert!(!same_digest(&a, &b));
        let mut c = a;
        c[31] ^= 1;
        assert!(!same_digest(&a, &c));
    }

    #[test]
    fn token_files_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.yaml");
        std::fs::write(&p, "tokens:\n  - { name: a, token: short, roles: [run] }\n").unwrap();
        let err = |p: &FsPath| read_tokens(p).unwrap_err().to_string();
        assert!(err(&p).contains("shorter than 16"));
        std::fs::write(
            &p,
            "tokens:\n  - { name: a, token: 0123456789abcdef0123, roles: [runner] }\n",
        )
        .unwrap();
        assert!(err(&p).contains("unknown role"));
        let h = hex::encode(Sha256::digest(b"0123456789abcdef0123"));
        std::fs::write(
            &p,
            format!(
                "tokens:\n  - {{ name: a, sha256: {h}, roles: [upload], lines: [ensihoito] }}\n"
            ),
        )
        .unwrap();
        assert!(err(&p).contains("names no `submitters`"));
        // Weak tokens are refused, also as digests (the old example shipped sha256("1")).
        for weak in ["1", "password", "12345", "changeme"] {
            let w = hex::encode(Sha256::digest(weak.as_bytes()));
            std::fs::write(
                &p,
                format!("tokens:\n  - {{ name: a, sha256: {w}, roles: [run] }}\n"),
            )
            .unwrap();
            assert!(err(&p).contains("weak"), "{weak}");
        }
        let upload_token = |submitter: &str| {
            std::fs::write(
                &p,
                format!(
                    "tokens:\n  - {{ name: a, sha256: {h}, roles: [upload], lines: [ensihoito], submitters: [\"{submitter}\"] }}\n"
                ),
            )
            .unwrap()
        };
        // Not a name; and `a` and `a-b` would both own `a-b_1.csv`.
        for bad in ["../x", "a-b", ""] {
            upload_token(bad);
            let message = err(&p);
            assert!(message.contains("letters and digits"), "{bad}: {message}");
        }
        upload_token("091");
        let t = read_tokens(&p).unwrap();
        assert_eq!(
            t[0].digest,
            <[u8; 32]>::from(Sha256::digest(b"0123456789abcdef0123"))
        );
        assert!(t[0].lines.as_ref().unwrap().contains("ensihoito"));
        let caller = Caller {
            name: "a".into(),
            submitters: Some(t[0].submitters.clone()),
            lines: None,
        };
        assert_eq!(caller.submitter_of("091.csv").as_deref(), Some("091"));
        assert_eq!(
            caller.submitter_of("091_2025-03.csv").as_deref(),
            Some("091")
        );
        assert_eq!(caller.submitter_of("0911.csv"), None);
        assert_eq!(caller.submitter_of("092.csv"), None);
    }
}
