//! Lossless `.env` parsing and rendering.
//!
//! Accepted: blank lines and `#` comments, an optional `export ` prefix, `KEY=value` with `=`
//! allowed inside values, unquoted values (trailing whitespace and ` # comment` dropped),
//! single-quoted values (literal, may span lines), double-quoted values (escapes `\n \r \t \"
//! \\ \$`, may span lines), empty values, CRLF line ends. Variables are not expanded. A key that
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
                            '"' | '\\' | '$' => value.push(n),
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

/// Renders variables so that [`parse`] gives them back exactly, in order.
pub fn render(vars: &[(String, String)]) -> String {
    let mut out = String::new();
    for (k, v) in vars {
        out.push_str(k);
        out.push('=');
        if is_safe_unquoted(v) {
            out.push_str(v);
        } else {
            out.push('"');
            for c in v.chars() {
                match c {
                    '\\' => out.push_str("\\\\"),
                    '"' => out.push_str("\\\""),
                    '\n' => out.push_str("\\n"),
                    '\r' => out.push_str("\\r"),
                    '\t' => out.push_str("\\t"),
                    '$' => out.push_str("\\$"),
                    c => out.push(c),
                }
            }
            out.push('"');
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
