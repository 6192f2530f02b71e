//! The syntax of field paths: steps of element names separated by `/`, each step with at
//! most one predicate (`observation[code/@code='kunta']`), and an optional `@attribute` at
//! the end. A path is read once, in `check_options` (and again per document); a malformed
//! one is an option error that quotes the path, never a panic.

/// A test on an element: the value of a path relative to it (the first match: an attribute
/// value or an element's text) equals a literal.
#[derive(Debug, Clone)]
pub(crate) struct Predicate {
    /// Child element names below the tested element; none when the test reads the
    /// element's own attribute (`id[@root='1.2.246.21']`).
    pub(crate) steps: Vec<Step>,
    pub(crate) attribute: Option<String>,
    /// The literal as written between the quotes (compared with the unescaped value).
    pub(crate) literal: String,
}

/// One element step of a path: a local name and its predicate, if any.
#[derive(Debug, Clone)]
pub(crate) struct Step {
    pub(crate) name: String,
    pub(crate) test: Option<Predicate>,
}

#[derive(Debug, Clone)]
pub(crate) struct Path {
    pub(crate) absolute: bool,
    pub(crate) steps: Vec<Step>,
    pub(crate) attribute: Option<String>,
    /// The step of a header path that carries a predicate (a header path has at most one).
    pub(crate) test_at: Option<usize>,
}

impl Path {
    /// The tested step of a header path and its predicate.
    pub(crate) fn header_test(&self) -> Option<(usize, &Predicate)> {
        let k = self.test_at?;
        self.steps.get(k)?.test.as_ref().map(|t| (k, t))
    }
}

/// A step as written: its name and the relative path and literal of its predicate.
type Segment<'p> = (&'p str, Option<(&'p str, &'p str)>);

/// The text inside a predicate's brackets, `r` starting after the `[`: its relative path,
/// its literal and what follows the `]`.
fn bracket(r: &str) -> Result<(&str, &str, &str), String> {
    let Some(at) = r.find(['=', ']', '[', '\'', '"']) else {
        return Err("`[` is not closed".into());
    };
    if !r[at..].starts_with('=') {
        return Err(
            "a predicate is written `[path='value']` (a path, `=` and a quoted value)".into(),
        );
    }
    let rel = r[..at].trim();
    let after = r[at + 1..].trim_start();
    let Some(quote) = after.chars().next().filter(|c| *c == '\'' || *c == '"') else {
        return Err("the value of a predicate must be in quotes (`'…'` or `\"…\"`)".into());
    };
    let body = &after[1..];
    let Some(end) = body.find(quote) else {
        return Err("the quoted value of a predicate is not closed".into());
    };
    let literal = &body[..end];
    let Some(rest) = body[end + 1..].trim_start().strip_prefix(']') else {
        return Err("`[` is not closed after the quoted value".into());
    };
    Ok((rel, literal, rest))
}

/// The steps of a path, split at `/` outside predicates (empty steps dropped).
fn segments(p: &str) -> Result<Vec<Segment<'_>>, String> {
    let mut out = Vec::new();
    let mut rest = p;
    loop {
        rest = rest.trim_start_matches('/');
        if rest.is_empty() {
            return Ok(out);
        }
        let end = rest.find(['/', '[', ']']).unwrap_or(rest.len());
        let name = &rest[..end];
        rest = &rest[end..];
        let mut test = None;
        if let Some(r) = rest.strip_prefix('[') {
            let (rel, literal, after) = bracket(r)?;
            test = Some((rel, literal));
            rest = after;
        }
        if rest.starts_with('[') {
            return Err("a step may carry only one predicate `[…]`".into());
        }
        if rest.starts_with(']') {
            return Err("`]` without `[`".into());
        }
        if !rest.is_empty() && !rest.starts_with('/') {
            return Err("a predicate `[…]` must end its step".into());
        }
        out.push((name, test));
    }
}

/// A predicate's relative path: child names, optionally ending in `@attribute`, or just
/// `@attribute`.
fn predicate(rel: &str, literal: &str) -> Result<Predicate, String> {
    if rel.is_empty() {
        return Err("a predicate tests an empty path (write `[child/@attr='value']`)".into());
    }
    let mut parts: Vec<&str> = rel.split('/').collect();
    let attribute = match parts.last() {
        Some(s) if s.starts_with('@') => parts.pop().map(|a| a[1..].to_string()),
        _ => None,
    };
    let bad = |s: &str| s.is_empty() || s.starts_with('@') || s.contains(char::is_whitespace);
    if attribute.as_deref() == Some("") || parts.iter().any(|s| bad(s)) {
        return Err(format!(
            "the predicate path `{rel}` is not child element names with an optional \
             `@attribute` at the end"
        ));
    }
    Ok(Predicate {
        steps: parts
            .into_iter()
            .map(|n| Step {
                name: n.to_string(),
                test: None,
            })
            .collect(),
        attribute,
        literal: literal.to_string(),
    })
}

/// Reads a field path: `/header/path[rel='value']/@attr` or `entry/relative/path`.
pub(crate) fn compile(p: &str) -> Result<Path, String> {
    let absolute = p.starts_with('/');
    let mut segments = segments(p).map_err(|e| format!("path `{p}`: {e}"))?;
    let attribute = match segments.last() {
        Some((s, None)) if s.starts_with('@') => segments.pop().map(|(a, _)| a[1..].to_string()),
        _ => None,
    };
    if segments.is_empty() {
        return Err(format!("path `{p}` names no element"));
    }
    let mut steps = Vec::with_capacity(segments.len());
    for (name, test) in segments {
        if name.is_empty() || (name.starts_with('@') && test.is_some()) {
            return Err(format!(
                "path `{p}`: a predicate `[…]` must follow an element name"
            ));
        }
        // Steps that could never match read nothing without a word: refuse them.
        if name.starts_with('@') {
            return Err(format!(
                "path `{p}`: `{name}` is an attribute: it can only end the path"
            ));
        }
        if name.contains(':') || name.contains(char::is_whitespace) {
            return Err(format!(
                "path `{p}`: `{name}` is not an element's local name (namespaces are ignored:                  write `{}`)",
                name.rsplit(':').next().unwrap_or(name).trim()
            ));
        }
        let test = test
            .map(|(rel, literal)| predicate(rel, literal))
            .transpose()
            .map_err(|e| format!("path `{p}`: {e}"))?;
        steps.push(Step {
            name: name.to_string(),
            test,
        });
    }
    let tested = steps.iter().filter(|s| s.test.is_some()).count();
    if absolute && tested > 1 {
        return Err(format!(
            "path `{p}`: a header path may carry a predicate `[…]` on one step only"
        ));
    }
    let test_at = if absolute {
        steps.iter().position(|s| s.test.is_some())
    } else {
        None
    };
    Ok(Path {
        absolute,
        steps,
        attribute,
        test_at,
    })
}
