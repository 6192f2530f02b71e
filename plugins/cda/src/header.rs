//! Following header paths (those that start with `/`) through the open elements, with the
//! predicate one of their steps may carry.
//!
//! A header path is followed by `matched`, the number of its leading steps (by name) that
//! the open elements below the root match. When an element of a tested step opens (the
//! steps before it matched), it becomes the path's *candidate*: inside its subtree the
//! reader keeps only the first value of the predicate's path and the first value of the
//! rest of the path, each followed by its own count of matched steps, and decides when the
//! candidate closes, since the tested child may come after the value. At most one candidate
//! per path is open at a time (candidates are elements at one depth), each costs a bounded
//! amount of work per event, and the first that passes gives the value.

use quick_xml::events::BytesStart;
use valtava_plugin::Stop;

use super::{Walk, attribute, too_long};

/// The open element of a header path's tested step, with what its subtree has shown.
#[derive(Debug, Clone, Default)]
pub(super) struct Candidate {
    /// The first value of the rest of the path inside the element.
    value: Option<String>,
    /// The first value of the predicate's path.
    test: Option<String>,
    /// How many steps of the predicate's path the open elements below the candidate match.
    matched: usize,
    /// The text gathered so far of the open element the predicate's path names.
    reading: Option<String>,
}

/// Appends `text` to a kept value, refusing one longer than `limit`.
fn gather(kept: &mut String, text: &str, limit: usize, line: u64) -> Result<(), Stop> {
    if kept.len() + text.len() > limit {
        return Err(too_long("an element's text", limit, line));
    }
    kept.push_str(text);
    Ok(())
}

impl Walk<'_> {
    /// Raises the match of the header paths whose next step this element (below the root)
    /// is; where it is a tested step, opens a candidate; where it completes a path, takes
    /// its attribute or starts gathering its text.
    pub(super) fn follow_header(&mut self, e: &BytesStart<'_>, name: &[u8]) -> Result<(), Stop> {
        let level = self.stack.len() - 1;
        let paths = self.paths;
        for (i, p) in paths.iter().enumerate() {
            if !p.absolute {
                continue;
            }
            self.follow_test(i, e, name, level)?;
            if self.matched[i] != level
                || p.steps.get(level).is_none_or(|s| s.name.as_bytes() != name)
            {
                continue;
            }
            self.matched[i] = level + 1;
            if self.header[i].is_some() {
                continue;
            }
            if p.test_at == Some(level) {
                self.open_candidate(i, e)?;
            }
            if level + 1 == p.steps.len() {
                self.take(i, e)?;
            }
        }
        Ok(())
    }

    /// Opens path `i`'s candidate; a predicate on the element's own attribute is read now.
    fn open_candidate(&mut self, i: usize, e: &BytesStart<'_>) -> Result<(), Stop> {
        let paths = self.paths;
        let mut candidate = Candidate::default();
        if let Some((_, t)) = paths[i].header_test()
            && t.steps.is_empty()
            && let Some(a) = &t.attribute
        {
            candidate.test = attribute(e, a, self.limits.record_bytes, self.line)?;
        }
        self.cands[i] = Some(candidate);
        Ok(())
    }

    /// Raises the match of the predicate's path of path `i`'s open candidate, if this
    /// element is its next step; where it completes it, takes the attribute or starts
    /// gathering the text.
    fn follow_test(
        &mut self,
        i: usize,
        e: &BytesStart<'_>,
        name: &[u8],
        level: usize,
    ) -> Result<(), Stop> {
        let paths = self.paths;
        let (Some((k, t)), Some(c)) = (paths[i].header_test(), self.cands[i].as_mut()) else {
            return Ok(());
        };
        if level != k + 1 + c.matched
            || t.steps
                .get(c.matched)
                .is_none_or(|s| s.name.as_bytes() != name)
        {
            return Ok(());
        }
        c.matched += 1;
        if c.matched < t.steps.len() || c.test.is_some() {
            return Ok(());
        }
        match &t.attribute {
            Some(a) => c.test = attribute(e, a, self.limits.record_bytes, self.line)?,
            None => c.reading = Some(String::new()),
        }
        Ok(())
    }

    /// The element that completes path `i` opened: takes its attribute or starts gathering
    /// its text, unless a value was found.
    fn take(&mut self, i: usize, e: &BytesStart<'_>) -> Result<(), Stop> {
        if self.cands[i].as_ref().is_some_and(|c| c.value.is_some()) {
            return Ok(());
        }
        let paths = self.paths;
        match &paths[i].attribute {
            Some(a) => {
                if let Some(v) = attribute(e, a, self.limits.record_bytes, self.line)? {
                    self.found(i, v);
                }
            }
            None => self.reading[i] = Some(String::new()),
        }
        Ok(())
    }

    /// Path `i` found a value: its candidate's, if one is open, or else the header value
    /// (the first counts).
    fn found(&mut self, i: usize, value: String) {
        match &mut self.cands[i] {
            Some(c) => {
                if c.value.is_none() {
                    c.value = Some(value);
                }
            }
            None => {
                if self.header[i].is_none() {
                    self.header[i] = Some(value);
                    self.missing -= 1;
                }
            }
        }
    }

    /// Whether text here is gathered for a header path or a predicate.
    pub(super) fn reads_header_text(&self) -> bool {
        self.reading.iter().any(Option::is_some)
            || self.cands.iter().flatten().any(|c| c.reading.is_some())
    }

    /// Text directly inside the current element, gathered for the header paths and
    /// predicates that name it.
    pub(super) fn header_text(&mut self, text: &str) -> Result<(), Stop> {
        let limit = self.limits.record_bytes;
        let line = self.line;
        let level = self.stack.len().saturating_sub(1);
        let paths = self.paths;
        for (i, p) in paths.iter().enumerate() {
            if let Some(r) = &mut self.reading[i]
                && level == p.steps.len()
            {
                gather(r, text, limit, line)?;
            }
            if let (Some((k, t)), Some(c)) = (p.header_test(), &mut self.cands[i])
                && let Some(r) = &mut c.reading
                && level == k + 1 + t.steps.len()
            {
                gather(r, text, limit, line)?;
            }
        }
        Ok(())
    }

    /// The element `closed` steps below the root has closed: the header paths it matched
    /// lose that step, one whose text was being gathered takes it as its value, and a
    /// candidate that closes gives its value if its predicate holds.
    pub(super) fn close_header(&mut self, closed: usize) {
        if closed == 0 {
            return;
        }
        let paths = self.paths;
        for (i, p) in paths.iter().enumerate() {
            self.close_test(i, closed);
            if self.matched[i] != closed {
                continue;
            }
            self.matched[i] -= 1;
            if let Some(text) = self.reading[i].take() {
                let t = text.trim();
                if !t.is_empty() {
                    self.found(i, t.to_string());
                }
            }
            if p.test_at == Some(closed - 1) {
                self.close_candidate(i);
            }
        }
    }

    /// The predicate's path of path `i`'s candidate loses the step that closed; the text
    /// of the element it names, gathered, becomes the tested value.
    fn close_test(&mut self, i: usize, closed: usize) {
        let paths = self.paths;
        let (Some((k, _)), Some(c)) = (paths[i].header_test(), self.cands[i].as_mut()) else {
            return;
        };
        if c.matched == 0 || closed != k + 1 + c.matched {
            return;
        }
        c.matched -= 1;
        if let Some(text) = c.reading.take() {
            let t = text.trim();
            if !t.is_empty() && c.test.is_none() {
                c.test = Some(t.to_string());
            }
        }
    }

    /// Path `i`'s candidate closes: its value becomes the header value if its tested value
    /// equals the predicate's literal; otherwise it is dropped.
    fn close_candidate(&mut self, i: usize) {
        let paths = self.paths;
        let (Some((_, t)), Some(c)) = (paths[i].header_test(), self.cands[i].take()) else {
            return;
        };
        if c.test.as_deref() == Some(t.literal.as_str())
            && let Some(v) = c.value
            && self.header[i].is_none()
        {
            self.header[i] = Some(v);
            self.missing -= 1;
        }
    }
}
