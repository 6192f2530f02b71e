//! The manifest of a release and the pointer to it.
//!
//! A run writes its datasets under a prefix of its own (`releases/<line>/<period>/<run-id>/`);
//! [`release`] then makes them durable, lists them with their sizes and hashes in
//! `_manifest.json` ([`Manifest`]), and only then points `releases/<line>/<period>/latest.json`
//! at that manifest. A reader that follows the pointer never sees a half-written release,
//! and a run that stops at any write leaves the previous release current. The run decides
//! when to release and fills in what the manifest says of it; this module knows only what a
//! release is made of, so `publish` does not depend on `run` (its errors name run codes from `diag`).
//!
//! A release also carries its status ([`ReleaseStatus`]: preliminary figures that will be
//! revised, or final ones) and an optional revision note ([`ReleaseLabel`]). The run records
//! them in the manifest, which never changes; an operator who later declares a release
//! final (or corrects its note) writes `_status.json` beside it ([`set_label`]), which
//! readers take over the manifest's.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::publish::PublishError;

use crate::store::Store;

pub use crate::line::spec::ReleaseStatus;

/// The longest revision note, in characters.
pub const MAX_NOTE_CHARS: usize = 500;

/// A release's status and revision note, as a run or an operator gives them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct ReleaseLabel {
    pub status: ReleaseStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl ReleaseLabel {
    /// A label whose note is checked: at most [`MAX_NOTE_CHARS`] characters, one paragraph
    /// of text without control characters (it is shown on pages and in terminals). An
    /// empty note is none.
    pub fn new(status: ReleaseStatus, note: Option<String>) -> Result<Self, PublishError> {
        let note = note.map(|n| n.trim().to_string()).filter(|n| !n.is_empty());
        if let Some(n) = &note {
            if n.chars().count() > MAX_NOTE_CHARS {
                return Err(PublishError::BadNote {
                    reason: format!("longer than {MAX_NOTE_CHARS} characters"),
                });
            }
            if n.chars().any(char::is_control) {
                return Err(PublishError::BadNote {
                    reason: "it contains control characters (line breaks, tabs, escapes)".into(),
                });
            }
            // A note is public: one that looks like it names a person is refused whole.
            if crate::redact::scrub(n) != n.as_str() {
                return Err(PublishError::BadNote {
                    reason: "it contains what looks like a personal identity code".into(),
                });
            }
        }
        Ok(ReleaseLabel { status, note })
    }
}

/// The manifest of a release; `D` is how the run describes a published dataset.
#[derive(Debug, Serialize)]
pub struct Manifest<'a, D> {
    pub line: &'a str,
    pub period: &'a str,
    pub run_id: &'a str,
    /// When the release was made (RFC 3339, UTC): the time its data are "updated".
    pub released: String,
    /// Its status and revision note as the run gave them.
    #[serde(flatten)]
    pub label: &'a ReleaseLabel,
    pub line_hash: &'a str,
    pub engine_version: &'a str,
    pub params: &'a BTreeMap<String, String>,
    pub codesets: &'a BTreeMap<String, crate::line::codeset::CodesetUse>,
    pub datasets: &'a [D],
    /// The objects under the release's prefix; [`release`] lists them.
    pub objects: Vec<crate::publish::ObjectEntry>,
}

/// Releases what is written under `release_prefix`, with `manifest`'s objects listed from
/// the store.
pub async fn release<D: Serialize>(
    store: &Store,
    release_prefix: &str,
    mut manifest: Manifest<'_, D>,
) -> Result<(), PublishError> {
    let inner = &store.inner;
    // Durable in order: the data, then the manifest naming it, then the pointer naming that.
    crate::store::sync(store, release_prefix)?;
    manifest.objects = crate::publish::describe(inner, release_prefix).await?;
    let manifest_path = crate::store::layout::manifest(release_prefix);
    crate::publish::put_json(inner, &manifest_path, &manifest).await?;
    crate::store::sync(store, &manifest_path)?;
    let pointer = serde_json::json!({
        "run_id": manifest.run_id,
        "manifest": crate::store::layout::manifest(release_prefix),
    });
    let pointer_path = crate::store::layout::release_pointer(manifest.line, manifest.period);
    crate::publish::put_json(inner, &pointer_path, &pointer).await?;
    crate::store::sync(store, &pointer_path)?;
    Ok(())
}

/// What an operator's later change of a release's status says: the label and when.
#[derive(Debug, Serialize, serde::Deserialize)]
pub struct StatusChange {
    #[serde(flatten)]
    pub label: ReleaseLabel,
    /// When the change was made (RFC 3339, UTC).
    pub changed: String,
}

/// Sets the status and note of a release that exists (its manifest was written): writes
/// `_status.json` beside the manifest. Returns false when there is no such release.
pub async fn set_label(
    store: &Store,
    line: &str,
    period: &str,
    run: &str,
    label: ReleaseLabel,
) -> Result<bool, PublishError> {
    use object_store::ObjectStoreExt as _;
    let folder = crate::store::layout::release(line, period, run);
    let manifest = object_store::path::Path::from(crate::store::layout::manifest(&folder));
    match store.inner.head(&manifest).await {
        Ok(_) => {}
        Err(object_store::Error::NotFound { .. }) => return Ok(false),
        Err(e) => return Err(PublishError::ReadObject(e)),
    }
    let change = StatusChange {
        label,
        changed: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
    };
    let path = crate::store::layout::release_status(&folder);
    crate::publish::put_json(&store.inner, &path, &change).await?;
    crate::store::sync(store, &path)?;
    Ok(true)
}
