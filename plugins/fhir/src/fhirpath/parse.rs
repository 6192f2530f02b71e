//! The FHIRPath subset's grammar: text to [`Expr`], with the usual precedence of
//! operators. A view's paths are parsed once, when the view is checked.

use std::borrow::Cow;

use super::Expr;
use crate::json::Json;

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Ident(String),
    Str(String),
    Num(String),
    Var(String),
    Sym(String),
}

fn lex(s: &str) -> Result<Vec<Token>, String> {
    let chars: Vec<char> = s.chars().collect();
    let mut i = 0;
    let mut out = Vec::new();
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c == '\'' {
            let mut t = String::new();
            i += 1;
            while i < chars.len() && chars[i] != '\'' {
                if chars[i] == '\\' && i + 1 < chars.len() {
                    i += 1;
                    t.push(match chars[i] {
                        'n' => '\n',
                        't' => '\t',
                        'r' => '\r',
                        other => other,
                    });
                } else {
                    t.push(chars[i]);
                }
                i += 1;
            }
            if i >= chars.len() {
                return Err(format!("unterminated string in `{s}`"));
            }
            i += 1;
            out.push(Token::Str(t));
        } else if c == '`' {
            let start = i + 1;
            i = start;
            while i < chars.len() && chars[i] != '`' {
                i += 1;
            }
            out.push(Token::Ident(
                chars[start..i.min(chars.len())].iter().collect(),
            ));
            i += 1;
        } else if c.is_ascii_digit() {
            let start = i;
            while i < chars.len()
                && (chars[i].is_ascii_digit()
                    || (chars[i] == '.' && i + 1 < chars.len() && chars[i + 1].is_ascii_digit()))
            {
                i += 1;
            }
            out.push(Token::Num(chars[start..i].iter().collect()));
        } else if c.is_alphabetic() || c == '_' || c == '$' || c == '%' {
            let start = i;
            i += 1;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            if let Some(v) = word.strip_prefix('%') {
                out.push(Token::Var(v.to_string()));
            } else {
                out.push(Token::Ident(word));
            }
        } else {
            let two: String = chars[i..(i + 2).min(chars.len())].iter().collect();
            if ["!=", "<=", ">=", "!~"].contains(&two.as_str()) {
                out.push(Token::Sym(two));
                i += 2;
            } else if "().,[]=<>|+-*/&~".contains(c) {
                out.push(Token::Sym(c.to_string()));
                i += 1;
            } else {
                return Err(format!("unexpected `{c}` in `{s}`"));
            }
        }
    }
    Ok(out)
}

struct P {
    t: Vec<Token>,
    i: usize,
}

const LEVELS: &[&[&str]] = &[
    &["implies"],
    &["or", "xor"],
    &["and"],
    &["in", "contains"],
    &["=", "!=", "~", "!~"],
    &["<", ">", "<=", ">="],
    &["|"],
    &["+", "-", "&"],
    &["*", "/", "div", "mod"],
];

impl P {
    fn peek_op(&self) -> Option<String> {
        match self.t.get(self.i)? {
            Token::Sym(s) => Some(s.clone()),
            Token::Ident(s)
                if [
                    "and", "or", "xor", "implies", "div", "mod", "in", "contains",
                ]
                .contains(&s.as_str()) =>
            {
                Some(s.clone())
            }
            _ => None,
        }
    }
    fn expect(&mut self, sym: &str) -> Result<(), String> {
        match self.t.get(self.i) {
            Some(Token::Sym(s)) if s == sym => {
                self.i += 1;
                Ok(())
            }
            other => Err(format!("expected `{sym}`, found {other:?}")),
        }
    }
    fn binary(&mut self, level: usize) -> Result<Expr, String> {
        if level == LEVELS.len() {
            return self.unary();
        }
        let mut left = self.binary(level + 1)?;
        while let Some(op) = self
            .peek_op()
            .filter(|o| LEVELS[level].contains(&o.as_str()))
        {
            self.i += 1;
            let right = self.binary(level + 1)?;
            left = Expr::Binary(op, Box::new(left), Box::new(right));
        }
        Ok(left)
    }
    fn unary(&mut self) -> Result<Expr, String> {
        if let Some(Token::Sym(s)) = self.t.get(self.i)
            && (s == "-" || s == "+")
        {
            let neg = s == "-";
            self.i += 1;
            let e = self.unary()?;
            return Ok(if neg { Expr::Negate(Box::new(e)) } else { e });
        }
        self.postfix()
    }
    fn postfix(&mut self) -> Result<Expr, String> {
        let mut e = self.term()?;
        loop {
            match self.t.get(self.i) {
                Some(Token::Sym(s)) if s == "." => {
                    self.i += 1;
                    e = self.invocation(e)?;
                }
                Some(Token::Sym(s)) if s == "[" => {
                    self.i += 1;
                    let idx = self.binary(0)?;
                    self.expect("]")?;
                    e = Expr::Index(Box::new(e), Box::new(idx));
                }
                _ => return Ok(e),
            }
        }
    }
    fn invocation(&mut self, on: Expr) -> Result<Expr, String> {
        let name = match self.t.get(self.i) {
            Some(Token::Ident(n)) => n.clone(),
            other => return Err(format!("expected a name, found {other:?}")),
        };
        self.i += 1;
        if let Some(Token::Sym(s)) = self.t.get(self.i)
            && s == "("
        {
            self.i += 1;
            let mut args = Vec::new();
            if !matches!(self.t.get(self.i), Some(Token::Sym(s)) if s == ")") {
                loop {
                    args.push(self.binary(0)?);
                    match self.t.get(self.i) {
                        Some(Token::Sym(s)) if s == "," => self.i += 1,
                        _ => break,
                    }
                }
            }
            self.expect(")")?;
            return Ok(Expr::Call(Box::new(on), name, args));
        }
        Ok(Expr::Member(Box::new(on), name))
    }
    fn term(&mut self) -> Result<Expr, String> {
        let t = self
            .t
            .get(self.i)
            .cloned()
            .ok_or("unexpected end of expression")?;
        match t {
            Token::Str(s) => {
                self.i += 1;
                Ok(Expr::Literal(Json::String(Cow::Owned(s))))
            }
            Token::Num(n) => {
                self.i += 1;
                let v: serde_json::Value = serde_json::from_str(&n).map_err(|e| e.to_string())?;
                Ok(Expr::Literal(Json::from_value(&v)))
            }
            Token::Var(v) => {
                self.i += 1;
                Ok(Expr::Variable(v))
            }
            Token::Sym(s) if s == "(" => {
                self.i += 1;
                let e = self.binary(0)?;
                self.expect(")")?;
                Ok(e)
            }
            Token::Ident(w) if w == "true" || w == "false" => {
                self.i += 1;
                Ok(Expr::Literal(Json::Bool(w == "true")))
            }
            Token::Ident(w) if w == "$this" => {
                self.i += 1;
                Ok(Expr::This)
            }
            Token::Ident(_) => self.invocation(Expr::This),
            Token::Sym(s) => Err(format!("unexpected `{s}`")),
        }
    }
}

/// Most tokens one path may have.
const MAX_TOKENS: usize = 1024;

/// Most brackets (`(`, `[`) one path may open inside each other: the parser recurses at
/// each, through every level of precedence.
const MAX_BRACKETS: usize = 32;

/// Most levels an expression may nest (`a.b.c` is three, as is `x or y or z`):
/// evaluation, the view's checks (`prune.rs`) and dropping the expression recurse over it.
const MAX_DEPTH: usize = 256;

/// Parses an expression. A path is part of a line file, which is input like any other:
/// one too long or too deep is refused here, before anything recurses over it (a path of
/// 60 000 steps overflowed the stack of `valtava check`).
pub fn parse(s: &str) -> Result<Expr, String> {
    let t = lex(s)?;
    if t.len() > MAX_TOKENS {
        return Err(format!("a path may have at most {MAX_TOKENS} tokens"));
    }
    let mut open = 0usize;
    for token in &t {
        match token {
            Token::Sym(b) if b == "(" || b == "[" => open += 1,
            Token::Sym(b) if b == ")" || b == "]" => open = open.saturating_sub(1),
            _ => {}
        }
        if open > MAX_BRACKETS {
            return Err(format!(
                "a path may open at most {MAX_BRACKETS} brackets inside each other"
            ));
        }
    }
    let mut p = P { t, i: 0 };
    let e = p.binary(0)?;
    if p.i != p.t.len() {
        return Err(format!("unexpected {:?} in `{s}`", p.t[p.i]));
    }
    if depth(&e) > MAX_DEPTH {
        return Err(format!("a path may nest at most {MAX_DEPTH} levels"));
    }
    Ok(e)
}

/// How many levels `e` nests, found with a stack of its own.
fn depth(e: &Expr) -> usize {
    let mut deepest = 0;
    let mut stack = vec![(e, 1usize)];
    while let Some((e, level)) = stack.pop() {
        deepest = deepest.max(level);
        let below = level + 1;
        match e {
            Expr::This | Expr::Literal(_) | Expr::Variable(_) => {}
            Expr::Member(on, _) | Expr::Negate(on) => stack.push((on, below)),
            Expr::Call(on, _, args) => {
                stack.push((on, below));
                stack.extend(args.iter().map(|a| (a, below)));
            }
            Expr::Index(l, r) | Expr::Binary(_, l, r) => {
                stack.push((l, below));
                stack.push((r, below));
            }
        }
    }
    deepest
}

#[cfg(test)]
mod tests {
    use super::parse;

    /// Paths too long or too deep are refused with a reason, not a crash; paths of the
    /// same kinds within the bounds parse.
    #[test]
    fn long_and_deep_paths_are_refused_before_anything_recurses() {
        let chain = |n: usize| format!("a{}", ".b".repeat(n));
        let brackets = |n: usize| format!("{}a{}", "(".repeat(n), ")".repeat(n));
        let or = |n: usize| vec!["a"; n].join(" or ");
        for (path, refused) in [
            (chain(60_000), "tokens"),
            (chain(300), "levels"),
            (brackets(33), "brackets"),
            (or(300), "levels"),
            (format!("{}1", "-".repeat(2_000)), "tokens"),
        ] {
            let err = parse(&path).err().unwrap_or_default();
            assert!(err.contains(refused), "{refused}: {err}");
        }
        for path in [chain(200), brackets(32), or(200)] {
            assert!(parse(&path).is_ok(), "{path}");
        }
    }
}
