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
//! The manifest also records when the release was made and the status and revision note
//! its run gave it ([`crate::publish::revision`]).

use std::collections::BTreeMap;

use serde::Serialize;

use crate::publish::PublishError;
use crate::store::Store;

use crate::publish::revision::ReleaseLabel;

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
    /// The objects each source read, by step.
    pub inputs: serde_json::Value,
    /// A hash over what decides the release: line, engine, parameters, code sets, inputs.
    pub fingerprint: String,
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
