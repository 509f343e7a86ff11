//! Glob patterns for policy `path_pattern`s.
//!
//! Semantics (spec §1.5, with the open questions decided):
//! - patterns are anchored at both ends and use the path alphabet plus `*`, `?` and `**`
//!   (and `.`, accepted because the spec's own example `secrets/*.key` uses it, though no
//!   valid path contains one);
//! - `*` matches a run of characters within one segment (possibly empty, as in `secrets/*.key`
//!   … but a whole-segment `*` needs a non-empty segment, since paths have no empty segments);
//! - `?` matches exactly one character within a segment;
//! - `**` must be a whole segment and matches **one or more** whole segments.
//!
//! So `app/**` matches everything *below* `app/` but not `app` itself, and `a/**/b` does not
//! match `a/b`. This is the only reading under which every row of the spec's table holds
//! (`**/ssl/*` must not match `ssl/cert`), and it equals the spec's suggested translation
//! (`**` → any characters including `/`) on valid paths — a property test checks that.
//! To grant a prefix and its root, write two rules: `app` and `app/**`.

use std::fmt;

use crate::error::{Error, ErrorCode};
use crate::path::{MAX_PATH_LEN, MAX_SEGMENTS, is_path_char};

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    /// `**`: one or more whole segments.
    Any,
    /// A segment pattern with `*` and `?` (or a literal).
    Part(Vec<Token>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Token {
    Lit(char),
    Star,
    Question,
}

/// A compiled, validated `path_pattern`.
#[derive(Clone, PartialEq, Eq)]
pub struct Glob {
    source: String,
    segments: Vec<Segment>,
}

impl fmt::Debug for Glob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Glob({:?})", self.source)
    }
}

fn invalid(raw: &str, why: &str) -> Error {
    let shown: String = raw.chars().take(80).collect();
    Error::new(
        ErrorCode::InvalidGlob,
        format!("invalid path pattern: {why}"),
    )
    .with("path_pattern", shown)
    .with("reason", why)
}

impl Glob {
    pub fn parse(raw: &str) -> Result<Glob, Error> {
        if raw.is_empty() {
            return Err(invalid(raw, "pattern is empty"));
        }
        if raw.len() > MAX_PATH_LEN {
            return Err(invalid(raw, "pattern is longer than 512 characters"));
        }
        if raw.starts_with('/') || raw.ends_with('/') {
            return Err(invalid(raw, "pattern must not start or end with '/'"));
        }
        let mut segments = Vec::new();
        for seg in raw.split('/') {
            if seg.is_empty() {
                return Err(invalid(raw, "pattern has an empty segment ('//')"));
            }
            if seg == "**" {
                if segments.last() == Some(&Segment::Any) {
                    return Err(invalid(raw, "'**/**' is redundant"));
                }
                segments.push(Segment::Any);
                continue;
            }
            if seg.contains("**") {
                return Err(invalid(raw, "'**' must be a whole segment"));
            }
            let mut tokens = Vec::with_capacity(seg.len());
            for c in seg.chars() {
                tokens.push(match c {
                    '*' => Token::Star,
                    '?' => Token::Question,
                    c if is_path_char(c) || c == '.' => Token::Lit(c),
                    c if c.is_ascii_uppercase() => {
                        return Err(invalid(raw, "upper-case letters never match a path"));
                    }
                    c => return Err(invalid(raw, &format!("character {c:?} is not allowed"))),
                });
            }
            segments.push(Segment::Part(tokens));
        }
        if segments.len() > MAX_SEGMENTS {
            return Err(invalid(raw, "pattern has more than 10 segments"));
        }
        Ok(Glob {
            source: raw.to_owned(),
            segments,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// True when `path` (a valid secret path) matches the whole pattern.
    pub fn matches(&self, path: &str) -> bool {
        let parts: Vec<&str> = path.split('/').collect();
        match_segments(&self.segments, &parts)
    }

    /// True when some path starting with `prefix/` could match; lets a lister skip subtrees.
    pub fn could_match_below(&self, prefix: &str) -> bool {
        let parts: Vec<&str> = prefix.split('/').filter(|s| !s.is_empty()).collect();
        could_match_prefix(&self.segments, &parts)
    }
}

fn match_segments(pat: &[Segment], path: &[&str]) -> bool {
    match pat.split_first() {
        None => path.is_empty(),
        Some((Segment::Any, rest)) => {
            (1..=path.len()).any(|take| match_segments(rest, &path[take..]))
        }
        Some((Segment::Part(tokens), rest)) => match path.split_first() {
            Some((first, tail)) => {
                match_tokens(tokens, first.as_bytes()) && match_segments(rest, tail)
            }
            None => false,
        },
    }
}

fn could_match_prefix(pat: &[Segment], path: &[&str]) -> bool {
    match (pat.split_first(), path.split_first()) {
        (_, None) => !pat.is_empty(),
        (None, Some(_)) => false,
        (Some((Segment::Any, _)), Some(_)) => true,
        (Some((Segment::Part(tokens), rest)), Some((first, tail))) => {
            match_tokens(tokens, first.as_bytes()) && could_match_prefix(rest, tail)
        }
    }
}

/// Matches one segment; paths are ASCII, so bytes are characters.
fn match_tokens(tokens: &[Token], s: &[u8]) -> bool {
    // Classic iterative wildcard match with single-star backtracking: linear in practice,
    // never exponential, whatever the pattern.
    let (mut t, mut i) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while i < s.len() {
        match tokens.get(t) {
            Some(Token::Lit(c)) if *c as u32 == s[i] as u32 => {
                t += 1;
                i += 1;
            }
            Some(Token::Question) => {
                t += 1;
                i += 1;
            }
            Some(Token::Star) => {
                star = Some((t, i));
                t += 1;
            }
            _ => match star {
                Some((st, si)) => {
                    t = st + 1;
                    i = si + 1;
                    star = Some((st, si + 1));
                }
                None => return false,
            },
        }
    }
    tokens[t..].iter().all(|tok| *tok == Token::Star)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn m(p: &str, path: &str) -> bool {
        Glob::parse(p).unwrap().matches(path)
    }

    #[test]
    fn spec_table_rows() {
        assert!(m("app/db", "app/db"));
        assert!(!m("app/db", "app/db/password"));
        assert!(m("app/db/*", "app/db/password"));
        assert!(m("app/db/*", "app/db/user"));
        assert!(!m("app/db/*", "app/db/primary/password"));
        assert!(m("app/**", "app/db"));
        assert!(m("app/**", "app/db/password"));
        assert!(m("app/**", "app/a/b/c/d/e/f/g/h/i"));
        assert!(!m("app/**", "other/app/db"));
        assert!(m("**/ssl/*", "app/ssl/cert"));
        assert!(m("**/ssl/*", "service/ssl/key"));
        assert!(!m("**/ssl/*", "ssl/cert"));
        // Accepted because the spec uses it as a valid example; '.' never occurs in a path,
        // so it matches nothing.
        assert!(!m("secrets/*.key", "secrets/server-key"));
        assert!(m("secrets/*-key", "secrets/server-key"));
        assert!(m("secrets/*-key", "secrets/-key"));
    }

    #[test]
    fn decided_open_questions() {
        // `**` is one or more segments: the root of a subtree is not included.
        assert!(!m("app/**", "app"));
        assert!(!m("a/**/b", "a/b"));
        assert!(m("a/**/b", "a/x/b"));
        assert!(m("a/**/b", "a/x/y/b"));
    }

    #[test]
    fn question_mark_is_one_character_in_a_segment() {
        assert!(m("db-?", "db-1"));
        assert!(!m("db-?", "db-12"));
        assert!(!m("a?b", "a/b"));
        assert!(m(
            "environments/*/billing/**",
            "environments/production/billing/stripe"
        ));
        assert!(!m(
            "environments/*/billing/**",
            "environments/production/reporting/db"
        ));
    }

    #[test]
    fn invalid_globs() {
        for bad in [
            "", "/a", "a/", "a//b", "a/**b", "***", "a/**/**", "A/b", "a/[b]", "a b", "a/%2e",
        ] {
            assert_eq!(
                Glob::parse(bad).unwrap_err().code,
                ErrorCode::InvalidGlob,
                "{bad:?}"
            );
        }
    }

    #[test]
    fn subtree_pruning() {
        let g = Glob::parse("environments/*/billing/**").unwrap();
        assert!(g.could_match_below("environments/production"));
        assert!(g.could_match_below("environments/production/billing"));
        assert!(!g.could_match_below("shared"));
        assert!(!Glob::parse("a/b").unwrap().could_match_below("a/b"));
    }

    /// The spec's suggested translation, character by character: `**` → any run including
    /// `/`, `*` → any run without `/`, `?` → one non-`/` character.
    fn reference(p: &[u8], s: &[u8]) -> bool {
        if p.is_empty() {
            return s.is_empty();
        }
        if p.starts_with(b"**") {
            return (0..=s.len()).any(|k| reference(&p[2..], &s[k..]));
        }
        match p[0] {
            b'*' => (0..=s.len())
                .take_while(|&k| !s[..k].contains(&b'/'))
                .any(|k| reference(&p[1..], &s[k..])),
            b'?' => !s.is_empty() && s[0] != b'/' && reference(&p[1..], &s[1..]),
            c => !s.is_empty() && s[0] == c && reference(&p[1..], &s[1..]),
        }
    }

    fn seg_pattern() -> impl Strategy<Value = String> {
        prop_oneof![Just("**".to_owned()), "[ab*?]{1,3}",]
    }

    proptest! {
        #[test]
        fn agrees_with_the_spec_translation(
            pat in proptest::collection::vec(seg_pattern(), 1..5),
            path in proptest::collection::vec("[ab]{1,3}", 1..6),
        ) {
            let pat = pat.join("/");
            // Only valid patterns are compared: '**' inside a segment is rejected by design.
            prop_assume!(Glob::parse(&pat).is_ok());
            let path = path.join("/");
            let glob = Glob::parse(&pat).unwrap();
            prop_assert_eq!(glob.matches(&path), reference(pat.as_bytes(), path.as_bytes()),
                "pattern {} path {}", pat, path);
        }

        #[test]
        fn literal_patterns_match_only_themselves(
            a in proptest::collection::vec("[a-c]{1,3}", 1..5),
            b in proptest::collection::vec("[a-c]{1,3}", 1..5),
        ) {
            let (a, b) = (a.join("/"), b.join("/"));
            prop_assert_eq!(Glob::parse(&a).unwrap().matches(&b), a == b);
        }

        #[test]
        fn never_panics_on_garbage(s in "\\PC{0,40}") {
            let _ = Glob::parse(&s).map(|g| g.matches("a/b/c"));
        }
    }
}
