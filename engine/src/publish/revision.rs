//! A release's status and revision note.
//!
//! Statistics are revised: figures published early are `preliminary` and replaced by a
//! later release, and a release can be declared `final` — or `withdrawn`, when its figures
//! must not be served any more. A run gives its release a status and an optional note
//! ([`ReleaseRequest`], the line's `release_status` when the run does not say), recorded in
//! the manifest, which never changes. An operator who later changes them writes
//! `_status.json` beside the manifest ([`set_label`]), keeping who changed what and when;
//! every reader of releases takes it over the manifest's.
//!
//! A note is public text shown on pages and in terminals: it is bounded, one paragraph,
//! without control or invisible formatting characters (which could reorder or hide text),
//! and refused when it looks like it carries an identity code ([`check_note`]).

use serde::{Deserialize, Serialize};

use crate::publish::PublishError;
use crate::store::Store;

pub use crate::line::spec::ReleaseStatus;

/// The longest revision note, in characters.
pub const MAX_NOTE_CHARS: usize = 500;

/// A release's status and revision note.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseLabel {
    pub status: ReleaseStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// What a run is asked to give its release: a status (none: the line's `release_status`,
/// or `final`) and a note.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<ReleaseStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl ReleaseRequest {
    /// A request whose note is checked; a run publishes `preliminary` or `final` figures,
    /// never `withdrawn` ones.
    pub fn new(status: Option<ReleaseStatus>, note: Option<String>) -> Result<Self, PublishError> {
        if status == Some(ReleaseStatus::Withdrawn) {
            return Err(PublishError::BadNote {
                reason:
                    "a run publishes preliminary or final figures; an operator withdraws a release"
                        .into(),
            });
        }
        Ok(ReleaseRequest {
            status,
            note: check_note(note)?,
        })
    }

    /// The label of the release, the line's `release_status` standing in for a status not
    /// asked for.
    pub fn resolve(&self, line_default: Option<ReleaseStatus>) -> ReleaseLabel {
        ReleaseLabel {
            status: self.status.or(line_default).unwrap_or_default(),
            note: self.note.clone(),
        }
    }
}

impl ReleaseLabel {
    /// A label whose note is checked ([`check_note`]).
    pub fn new(status: ReleaseStatus, note: Option<String>) -> Result<Self, PublishError> {
        Ok(ReleaseLabel {
            status,
            note: check_note(note)?,
        })
    }
}

/// Characters that change how text is shown without being seen: bidirectional overrides
/// and isolates, zero-width characters, line and paragraph separators, the byte-order mark.
fn invisible(c: char) -> bool {
    matches!(c,
        '\u{061C}' | '\u{200B}'..='\u{200F}' | '\u{2028}'..='\u{202E}'
        | '\u{2060}'..='\u{206F}' | '\u{FEFF}' | '\u{FFF9}'..='\u{FFFB}')
}

/// A checked note: trimmed (empty is none), at most [`MAX_NOTE_CHARS`] characters, without
/// control or invisible formatting characters, and not carrying what looks like an
/// identity code.
pub fn check_note(note: Option<String>) -> Result<Option<String>, PublishError> {
    let Some(n) = note.map(|n| n.trim().to_string()).filter(|n| !n.is_empty()) else {
        return Ok(None);
    };
    let refuse = |reason: &str| {
        Err(PublishError::BadNote {
            reason: reason.to_string(),
        })
    };
    if n.chars().count() > MAX_NOTE_CHARS {
        return refuse(&format!("longer than {MAX_NOTE_CHARS} characters"));
    }
    if n.chars().any(|c| c.is_control() || invisible(c)) {
        return refuse(
            "it contains control or invisible formatting characters (line breaks, tabs, escapes, direction overrides)",
        );
    }
    // A note is public: one that looks like it names a person is refused whole.
    if crate::redact::scrub(&n) != n.as_str() {
        return refuse("it contains what looks like a personal identity code");
    }
    Ok(Some(n))
}

/// One change of a release's label by an operator.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StatusChange {
    #[serde(flatten)]
    pub label: ReleaseLabel,
    /// When the change was made (RFC 3339, UTC).
    pub changed: String,
    /// Who made it: the name of the operator's token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
}

/// `_status.json`: the release's label as last changed, and the earlier changes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StatusFile {
    #[serde(flatten)]
    pub last: StatusChange,
    /// The changes before the last, oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub earlier: Vec<StatusChange>,
}

/// The outcome of [`set_label`].
#[derive(Debug, PartialEq, Eq)]
pub enum Set {
    Done,
    /// There is no such release (its manifest was never written).
    NoRelease,
}

/// Sets the status and note of a release that exists: writes `_status.json` beside its
/// manifest, the change on top of those made before.
pub async fn set_label(
    store: &Store,
    (line, period, run): (&str, &str, &str),
    label: ReleaseLabel,
    by: Option<String>,
) -> Result<Set, PublishError> {
    use object_store::ObjectStoreExt as _;
    let folder = crate::store::layout::release(line, period, run);
    let manifest = object_store::path::Path::from(crate::store::layout::manifest(&folder));
    match store.inner.head(&manifest).await {
        Ok(_) => {}
        Err(object_store::Error::NotFound { .. }) => return Ok(Set::NoRelease),
        Err(e) => return Err(PublishError::ReadObject(e)),
    }
    let path = crate::store::layout::release_status(&folder);
    let mut earlier = match store
        .inner
        .get(&object_store::path::Path::from(path.as_str()))
        .await
    {
        Ok(got) => {
            let bytes = got.bytes().await.map_err(PublishError::ReadObject)?;
            serde_json::from_slice::<StatusFile>(&bytes)
                .map(|f| {
                    let mut e = f.earlier;
                    e.push(f.last);
                    e
                })
                .unwrap_or_default()
        }
        Err(object_store::Error::NotFound { .. }) => Vec::new(),
        Err(e) => return Err(PublishError::ReadObject(e)),
    };
    // The history is kept, within bounds: the newest changes.
    const KEPT: usize = 100;
    if earlier.len() > KEPT {
        earlier.drain(..earlier.len() - KEPT);
    }
    let file = StatusFile {
        last: StatusChange {
            label,
            changed: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            by,
        },
        earlier,
    };
    crate::publish::put_json(&store.inner, &path, &file).await?;
    crate::store::sync(store, &path)?;
    Ok(Set::Done)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notes_are_one_bounded_paragraph_of_visible_text_naming_no_one() {
        assert_eq!(check_note(Some("  ".into())).unwrap(), None);
        assert_eq!(
            check_note(Some(" Korjattu: myöhästyneet ilmoitukset ".into())).unwrap(),
            Some("Korjattu: myöhästyneet ilmoitukset".into())
        );
        for bad in [
            "rivi\nrivi",
            "\u{1b}[31mpunainen",
            "abc\u{202E}fed",
            "näkymätön\u{200B}väli",
            "erotin\u{2028}tässä",
            "potilas 010101-123N",
        ] {
            assert!(check_note(Some(bad.into())).is_err(), "{bad:?}");
        }
        assert!(check_note(Some("x".repeat(MAX_NOTE_CHARS + 1))).is_err());
        assert!(check_note(Some("ä".repeat(MAX_NOTE_CHARS))).is_ok());
    }

    #[test]
    fn a_run_takes_the_lines_status_unless_it_asks_and_never_withdraws() {
        let plain = ReleaseRequest::new(None, None).unwrap();
        assert_eq!(
            plain.resolve(Some(ReleaseStatus::Preliminary)).status,
            ReleaseStatus::Preliminary
        );
        assert_eq!(plain.resolve(None).status, ReleaseStatus::Final);
        let asked = ReleaseRequest::new(Some(ReleaseStatus::Final), None).unwrap();
        assert_eq!(
            asked.resolve(Some(ReleaseStatus::Preliminary)).status,
            ReleaseStatus::Final
        );
        assert!(ReleaseRequest::new(Some(ReleaseStatus::Withdrawn), None).is_err());
    }
}
