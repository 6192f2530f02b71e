//! What a run read, and whether a run would read the same again.
//!
//! Each source lists its objects before it reads them; the run records them (path, size and
//! version: the store's entity tag, or the modification time where there is none) and the
//! release's manifest keeps them with a fingerprint over everything that decides a release:
//! the line (its hash), the engine's version, the parameters, the code sets (their hashes)
//! and those objects. Rerunning a range of periods asks [`unchanged`] first: a period whose
//! current release has the fingerprint the run would have is not run again.

use std::collections::BTreeMap;

use object_store::ObjectMeta;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::run::{RunError, RunFailure, RunOptions};

/// One object a source read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputObject {
    /// Its path, scrubbed: an object's name is a submitter's text and may hold an identity
    /// code ([`crate::redact`]).
    pub path: String,
    pub size: u64,
    /// The store's entity tag, or the modification time.
    pub version: String,
}

impl InputObject {
    pub(crate) fn of(meta: &ObjectMeta) -> Self {
        InputObject {
            path: crate::redact::scrubbed(meta.location.as_ref()),
            size: meta.size,
            version: meta
                .e_tag
                .clone()
                .unwrap_or_else(|| meta.last_modified.to_rfc3339()),
        }
    }
}

/// The objects each source step read, by step.
pub type Inputs = BTreeMap<String, Vec<InputObject>>;

/// What decides a release, hashed: see the module doc.
pub fn fingerprint(
    line_hash: &str,
    params: &BTreeMap<String, String>,
    codesets: &BTreeMap<String, crate::line::codeset::CodesetUse>,
    inputs: &Inputs,
) -> String {
    let mut h = Sha256::new();
    let mut put = |part: &str| {
        h.update((part.len() as u64).to_le_bytes());
        h.update(part.as_bytes());
    };
    put(line_hash);
    put(env!("CARGO_PKG_VERSION"));
    for (k, v) in params {
        put(k);
        put(v);
    }
    for (name, c) in codesets {
        put(name);
        put(&c.sha256);
    }
    for (step, objects) in inputs {
        put(step);
        let mut sorted: Vec<&InputObject> = objects.iter().collect();
        sorted.sort_by(|a, b| a.path.cmp(&b.path));
        for o in sorted {
            put(&o.path);
            put(&o.size.to_string());
            put(&o.version);
        }
    }
    hex::encode(h.finalize())
}

/// The run id of the period's current release when a run with `opts` would make it again
/// (same fingerprint); `None` when something changed or there is no release.
pub async fn unchanged(
    path: &std::path::Path,
    opts: &RunOptions,
) -> Result<Option<String>, RunError> {
    let prepared = crate::run::prepare(path, opts)?;
    let checked = &prepared.checked;
    let fill = &prepared.id.params_text;
    let mut inputs = Inputs::new();
    for (name, step) in &checked.line.spec.steps {
        let Some(spec) = &step.source else { continue };
        let listing = crate::run::source::source_objects(
            &opts.store,
            &opts.sources,
            (fill, &prepared.id.parts),
            &name.value,
            spec,
        )
        .await
        .map_err(|f| RunError::Failed(f, None))?;
        inputs.insert(
            name.value.clone(),
            (listing.objects.iter())
                .map(|(_, meta)| InputObject::of(meta))
                .collect(),
        );
    }
    let codesets = checked
        .codesets
        .iter()
        .map(|(k, v)| (k.clone(), v.usage()))
        .collect();
    let want = fingerprint(&checked.line.hash, fill, &codesets, &inputs);
    let current = current_fingerprint(opts, &prepared.id.line_name, &prepared.id.period)
        .await
        .map_err(|f| RunError::Failed(f, None))?;
    Ok(current.and_then(|(run, have)| (have == want).then_some(run)))
}

/// The run id and fingerprint of a period's current release, if it has one that is served.
async fn current_fingerprint(
    opts: &RunOptions,
    line: &str,
    period: &str,
) -> Result<Option<(String, String)>, RunFailure> {
    let current = crate::publish::releases::current_release(&opts.store, line, period)
        .await
        .map_err(|e| crate::run::report::fail(e.code(), e))?;
    let served = current.filter(|c| c.status != crate::publish::revision::ReleaseStatus::Withdrawn);
    Ok(served.and_then(|c| {
        let fingerprint = c.manifest["fingerprint"].as_str().map(String::from);
        fingerprint.map(|f| (c.run_id, f))
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(path: &str, version: &str) -> InputObject {
        InputObject {
            path: path.into(),
            size: 10,
            version: version.into(),
        }
    }

    #[test]
    fn the_fingerprint_changes_with_what_decides_a_release_only() {
        let params = BTreeMap::from([("period".to_string(), "2025-03".to_string())]);
        let inputs = Inputs::from([(
            "s".to_string(),
            vec![object("a.csv", "1"), object("b.csv", "1")],
        )]);
        let base = fingerprint("h", &params, &BTreeMap::new(), &inputs);
        // The order objects are listed in does not matter.
        let reversed = Inputs::from([(
            "s".to_string(),
            vec![object("b.csv", "1"), object("a.csv", "1")],
        )]);
        assert_eq!(base, fingerprint("h", &params, &BTreeMap::new(), &reversed));
        // A changed object, line, parameter or added object does.
        let changed = Inputs::from([(
            "s".to_string(),
            vec![object("a.csv", "2"), object("b.csv", "1")],
        )]);
        assert_ne!(base, fingerprint("h", &params, &BTreeMap::new(), &changed));
        assert_ne!(base, fingerprint("h2", &params, &BTreeMap::new(), &inputs));
        let other = BTreeMap::from([("period".to_string(), "2025-04".to_string())]);
        assert_ne!(base, fingerprint("h", &other, &BTreeMap::new(), &inputs));
        let more = Inputs::from([(
            "s".to_string(),
            vec![
                object("a.csv", "1"),
                object("b.csv", "1"),
                object("c.csv", "1"),
            ],
        )]);
        assert_ne!(base, fingerprint("h", &params, &BTreeMap::new(), &more));
    }
}
