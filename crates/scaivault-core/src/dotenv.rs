//! Lossless `.env` parsing and rendering.
//!
//! Accepted: blank lines and `#` comments, an optional `export ` prefix, `KEY=value` with `=`
//! allowed inside values, unquoted values (trailing whitespace and ` # comment` dropped),
//! single-quoted values (literal, may span lines), double-quoted values (escapes `\n \r \t \"
//! \\ \$ \'`, may span lines), empty values, CRLF line ends. Variables are not expanded. A key that
//! appears twice is reported; the last value wins, as in every dotenv loader.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub key: String,
    pub value: String,
    /// 1-based line where the entry starts.
    pub line: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    pub line: usize,
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Parsed {
    /// In file order, duplicates resolved (the last value wins, at the first key's position).
    pub entries: Vec<Entry>,
    /// `(key, first line, repeated line)` for every repetition.
    pub duplicates: Vec<(String, usize, usize)>,
}

fn is_key_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_'
}

fn is_key_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '.' || c == '-'
}

pub fn parse(text: &str) -> Result<Parsed, ParseError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0usize;
    let mut line = 1usize;
    let mut out = Parsed::default();
    let err = |line: usize, m: &str| ParseError {
        line,
        message: m.to_owned(),
    };

    while i < chars.len() {
        // Start of a logical line: skip horizontal whitespace.
        while i < chars.len() && (chars[i] == ' ' || chars[i] == '\t') {
            i += 1;
        }
        if i >= chars.len() {
            break;
        }
        match chars[i] {
            '\n' => {
                line += 1;
                i += 1;
                continue;
            }
            '\r' if chars.get(i + 1) == Some(&'\n') || i + 1 == chars.len() => {
                i += 1;
                continue;
            }
            '#' => {
                while i < chars.len() && chars[i] != '\n' {
                    i += 1;
                }
                continue;
            }
            _ => {}
        }
        let start_line = line;
        // Optional `export `.
        if chars[i..].starts_with(&['e', 'x', 'p', 'o', 'r', 't'])
            && matches!(chars.get(i + 6), Some(' ' | '\t'))
        {
            i += 6;
            while i < chars.len() && (chars[i] == ' ' || chars[i] == '\t') {
                i += 1;
            }
        }
        let key_start = i;
        if i >= chars.len() || !is_key_start(chars[i]) {
            return Err(err(
                line,
                "expected a variable name (letters, digits, '_', starting with a letter or '_')",
            ));
        }
        while i < chars.len() && is_key_char(chars[i]) {
            i += 1;
        }
        let key: String = chars[key_start..i].iter().collect();
        while i < chars.len() && (chars[i] == ' ' || chars[i] == '\t') {
            i += 1;
        }
        if chars.get(i) != Some(&'=') {
            return Err(err(line, &format!("expected '=' after {key}")));
        }
        i += 1;
        while i < chars.len() && (chars[i] == ' ' || chars[i] == '\t') {
            i += 1;
        }
        let mut value = String::new();
        match chars.get(i) {
            Some(&q) if q == '\'' || q == '"' => {
                i += 1;
                let mut closed = false;
                while i < chars.len() {
                    let c = chars[i];
                    if c == q {
                        closed = true;
                        i += 1;
                        break;
                    }
                    if c == '\n' {
                        line += 1;
                    }
                    if q == '"' && c == '\\' && i + 1 < chars.len() {
                        let n = chars[i + 1];
                        match n {
                            'n' => value.push('\n'),
                            'r' => value.push('\r'),
                            't' => value.push('\t'),
                            // `\'` as python-dotenv and compose read it.
                            '"' | '\\' | '$' | '\'' => value.push(n),
                            other => {
                                value.push('\\');
                                value.push(other);
                                if other == '\n' {
                                    line += 1;
                                }
                            }
                        }
                        i += 2;
                        continue;
                    }
                    // CRLF inside a quoted value is one line end.
                    if c == '\r' && chars.get(i + 1) == Some(&'\n') {
                        i += 1;
                        continue;
                    }
                    value.push(c);
                    i += 1;
                }
                if !closed {
                    return Err(err(
                        start_line,
                        &format!("the quoted value of {key} is never closed"),
                    ));
                }
                // Only whitespace or a comment may follow.
                while i < chars.len() && (chars[i] == ' ' || chars[i] == '\t') {
                    i += 1;
                }
                match chars.get(i) {
                    None | Some('\n') => {}
                    Some('\r') if matches!(chars.get(i + 1), None | Some('\n')) => i += 1,
                    Some('#') => {
                        while i < chars.len() && chars[i] != '\n' {
                            i += 1;
                        }
                    }
                    Some(_) => {
                        return Err(err(
                            line,
                            &format!("unexpected text after the closing quote of {key}"),
                        ));
                    }
                }
            }
            _ => {
                let v_start = i;
                while i < chars.len() && chars[i] != '\n' {
                    // ` #` starts a comment in an unquoted value.
                    if chars[i] == '#'
                        && i > v_start
                        && (chars[i - 1] == ' ' || chars[i - 1] == '\t')
                    {
                        break;
                    }
                    i += 1;
                }
                let raw: String = chars[v_start..i].iter().collect();
                value = raw.trim_end_matches(['\r', ' ', '\t']).to_owned();
                while i < chars.len() && chars[i] != '\n' {
                    i += 1;
                }
            }
        }
        match out.entries.iter_mut().find(|e| e.key == key) {
            Some(e) => {
                out.duplicates.push((key, e.line, start_line));
                e.value = value;
            }
            None => out.entries.push(Entry {
                key,
                value,
                line: start_line,
            }),
        }
    }
    Ok(out)
}

fn is_safe_unquoted(v: &str) -> bool {
    v.chars()
        .all(|c| c.is_ascii_alphanumeric() || "_./:@%+,=-".contains(c))
}

/// How a value is written so that the readers people load `.env` files with read it back
/// exactly: bash (`set -a; . file`), python-dotenv, docker compose's `env_file`, and [`parse`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quoting {
    /// `KEY=value`: only characters no reader treats specially.
    Bare,
    /// `KEY='value'`: literal in every reader (newlines included), when the value holds no
    /// `'`, no `\` (python-dotenv unescapes `\\` and `\'` inside single quotes) and no CR
    /// (python-dotenv reads files with universal newlines).
    Single,
    /// `KEY="value"` with `\\` and `\"` escaped and newlines literal: what bash and
    /// python-dotenv agree on, when every `$` is one bash leaves alone and no backtick or CR
    /// is present.
    Double,
    /// No quoting reads back exactly in bash: the value holds a `'` or `\` (so it cannot be
    /// single-quoted) together with a `$` bash would expand, a backtick or a CR.
    /// Double-quoted as for python-dotenv (`$` raw, CR as `\r`); [`inexact_in`] names the
    /// readers that differ.
    Inexact,
}

/// The readers that read `v` back differently however it is quoted, if any (`"bash and
/// python-dotenv"`, …): bash when [`quoting`] says [`Quoting::Inexact`]; python-dotenv whenever
/// `v` holds a `${name}` or `${name:-default}` (it expands those inside any quotes and has
/// no escape for them; a `${` without its `}` stays literal); docker
/// compose when an inexact value holds `${` or `$name` (compose expands both inside double
/// quotes, and an inexact value is double-quoted).
pub fn inexact_in(v: &str) -> Option<String> {
    if v.contains('\0') {
        return Some("every reader: no environment variable can hold a NUL byte".into());
    }
    let inexact = quoting(v) == Quoting::Inexact;
    let chars: Vec<char> = v.chars().collect();
    let compose_expands = chars
        .windows(2)
        .any(|w| w[0] == '$' && (w[1] == '{' || w[1] == '_' || w[1].is_ascii_alphabetic()));
    let readers: Vec<&str> = [
        (inexact, "bash"),
        (python_dotenv_expands(v), "python-dotenv"),
        (inexact && compose_expands, "docker compose"),
    ]
    .into_iter()
    .filter_map(|(differs, reader)| differs.then_some(reader))
    .collect();
    match readers.as_slice() {
        [] => None,
        [one] => Some((*one).to_owned()),
        [init @ .., last] => Some(format!("{} and {last}", init.join(", "))),
    }
}

/// Whether python-dotenv's interpolation matches somewhere in `v`: its pattern is
/// `\$\{[^}:]*(:-[^}]*)?\}`.
fn python_dotenv_expands(v: &str) -> bool {
    v.match_indices("${").any(|(i, _)| {
        let rest = &v[i + 2..];
        let name_end = rest.find(['}', ':']).unwrap_or(rest.len());
        let after = &rest[name_end..];
        after.starts_with('}') || (after.starts_with(":-") && after[2..].contains('}'))
    })
}

/// Whether docker compose refuses the whole exported file because of `v`: an inexact value is
/// double-quoted, and compose reads a `${` there as a variable that must be well formed.
pub fn compose_may_refuse(v: &str) -> bool {
    quoting(v) == Quoting::Inexact && v.contains("${")
}

/// Whether bash leaves `$` literal inside double quotes when `next` follows it.
fn dollar_is_literal_in_bash(next: Option<char>) -> bool {
    matches!(
        next,
        None | Some(
            ' ' | '/' | '.' | ',' | ':' | '%' | '=' | '+' | ']' | '}' | '~' | '^' | '\n' | '\t'
        )
    )
}

/// The quoting [`render`] uses for `v`.
pub fn quoting(v: &str) -> Quoting {
    if is_safe_unquoted(v) {
        return Quoting::Bare;
    }
    if !v.contains(['\'', '\\', '\r']) {
        return Quoting::Single;
    }
    let chars: Vec<char> = v.chars().collect();
    let exact = chars.iter().enumerate().all(|(i, &c)| match c {
        '`' | '\r' => false,
        // bash expands most `$x` (python-dotenv only `${…}`, which bash expands too).
        '$' => dollar_is_literal_in_bash(chars.get(i + 1).copied()),
        _ => true,
    });
    if exact {
        Quoting::Double
    } else {
        Quoting::Inexact
    }
}

/// Renders variables so that [`parse`] gives them back exactly, in order, and so do bash,
/// python-dotenv and docker compose, except in the readers [`inexact_in`] names for a value.
pub fn render(vars: &[(String, String)]) -> String {
    let mut out = String::new();
    for (k, v) in vars {
        out.push_str(k);
        out.push('=');
        match quoting(v) {
            Quoting::Bare => out.push_str(v),
            Quoting::Single => {
                out.push('\'');
                out.push_str(v);
                out.push('\'');
            }
            q @ (Quoting::Double | Quoting::Inexact) => {
                out.push('"');
                for c in v.chars() {
                    match c {
                        '\\' => out.push_str("\\\\"),
                        '"' => out.push_str("\\\""),
                        '\r' if q == Quoting::Inexact => out.push_str("\\r"),
                        c => out.push(c),
                    }
                }
                out.push('"');
            }
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn kv(text: &str) -> Vec<(String, String)> {
        parse(text)
            .unwrap()
            .entries
            .into_iter()
            .map(|e| (e.key, e.value))
            .collect()
    }

    #[test]
    fn real_world_shapes() {
        let text = "# comment\r\nexport A=1\r\nB = two words  # trailing\nC='single $HOME \\n'\nD=\"line1\\nline2 \\\"q\\\" \\$X\"\nE=\nF=a=b=c\nG=\"multi\nline\"\nH=url#frag\n  I=indented\n";
        assert_eq!(
            kv(text),
            vec![
                ("A".into(), "1".into()),
                ("B".into(), "two words".into()),
                ("C".into(), "single $HOME \\n".into()),
                ("D".into(), "line1\nline2 \"q\" $X".into()),
                ("E".into(), "".into()),
                ("F".into(), "a=b=c".into()),
                ("G".into(), "multi\nline".into()),
                ("H".into(), "url#frag".into()),
                ("I".into(), "indented".into()),
            ]
        );
    }

    #[test]
    fn duplicates_are_reported_and_the_last_wins() {
        let p = parse("A=1\nB=2\nA=3\n").unwrap();
        assert_eq!(p.entries[0].value, "3");
        assert_eq!(p.duplicates, vec![("A".into(), 1, 3)]);
    }

    #[test]
    fn errors_name_the_line() {
        for (text, line) in [
            ("A=1\nnot a var\n", 2),
            ("A=1\nB=\"open\n\nC=3", 2),
            ("A='x' y", 1),
            ("1A=x", 1),
            ("A=1\n=x", 2),
        ] {
            let e = parse(text).unwrap_err();
            assert_eq!(e.line, line, "{text:?}: {e}");
        }
    }

    #[test]
    fn each_value_gets_the_quoting_every_reader_agrees_on() {
        for (v, q) in [
            ("plain-value_1", Quoting::Bare),
            ("", Quoting::Bare),
            ("$HOME/x", Quoting::Single),
            ("two words # not a comment", Quoting::Single),
            ("line1\nline2", Quoting::Single),
            ("${HOME}", Quoting::Single),
            ("it's", Quoting::Double),
            ("C:\\path\\n", Quoting::Double),
            ("it's $5 or $", Quoting::Inexact),
            ("it's `cmd`", Quoting::Inexact),
            ("a\\${B}", Quoting::Inexact),
            ("crlf\r\n", Quoting::Inexact),
            ("it's 100$ / $.", Quoting::Double),
        ] {
            assert_eq!(quoting(v), q, "{v:?}");
        }
        assert_eq!(
            inexact_in("a\\${B}").as_deref(),
            Some("bash, python-dotenv and docker compose")
        );
        assert_eq!(inexact_in("${B}").as_deref(), Some("python-dotenv"));
        assert_eq!(inexact_in("${B:-x}").as_deref(), Some("python-dotenv"));
        // python-dotenv leaves a `${` without its `}` (or with `:x`) alone.
        assert_eq!(inexact_in("${B"), None);
        assert_eq!(inexact_in("a ${B:x}"), None);
        assert!(compose_may_refuse("it's ${x") && !compose_may_refuse("${x"));
        assert_eq!(inexact_in("it's $5").as_deref(), Some("bash"));
        assert_eq!(
            inexact_in("it's $HOME").as_deref(),
            Some("bash and docker compose")
        );
        assert_eq!(inexact_in("it's"), None);
        assert!(inexact_in("a\0b").unwrap().contains("NUL"));
        assert_eq!(
            render(&[("A".into(), "it's".into()), ("B".into(), "$x".into())]),
            "A=\"it's\"\nB='$x'\n"
        );
    }

    proptest! {
        #[test]
        fn render_then_parse_is_identity(vars in proptest::collection::vec(("[A-Z_][A-Z0-9_]{0,8}", "\\PC{0,20}|[ -~\\n\\r\\t]{0,20}"), 0..8)) {
            let mut seen = std::collections::HashSet::new();
            let vars: Vec<(String, String)> = vars.into_iter().filter(|(k, _)| seen.insert(k.clone())).collect();
            let text = render(&vars);
            let back: Vec<(String, String)> = parse(&text).unwrap().entries.into_iter().map(|e| (e.key, e.value)).collect();
            prop_assert_eq!(back, vars);
        }

        #[test]
        fn never_panics(text in "\\PC{0,200}") {
            let _ = parse(&text);
        }
    }
}
