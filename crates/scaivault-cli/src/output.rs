use comfy_table::presets::UTF8_BORDERS_ONLY;
use comfy_table::{ContentArrangement, Table};
use serde_json::Value;

use crate::args::Format;

/// Human tables by default; JSON with `--json` or `--format json`, YAML with `--format yaml`.
pub struct Out {
    /// Whether the answer is machine-readable JSON (commands that stream or print progress
    /// ask this).
    pub json: bool,
    pub format: Format,
}

impl Out {
    pub fn new(json: bool, format: Option<Format>) -> Out {
        let format = format.unwrap_or(if json { Format::Json } else { Format::Table });
        Out {
            json: format == Format::Json,
            format,
        }
    }

    pub fn emit<T: serde::Serialize + ?Sized>(&self, value: &T, human: impl FnOnce()) {
        match self.format {
            Format::Json => println!(
                "{}",
                serde_json::to_string_pretty(value).unwrap_or_default()
            ),
            Format::Yaml => print!(
                "{}",
                yaml(&serde_json::to_value(value).unwrap_or(Value::Null))
            ),
            Format::Table | Format::Env | Format::Jsonl | Format::Csv => human(),
        }
    }
}

/// A JSON value as a YAML 1.2 block document. Every string (keys too) is written as a JSON
/// string, which YAML reads as the same double-quoted scalar: no value is ever taken for a
/// number, a boolean, `null` or a tag (`no`, `1e3`, `!!python`), and nothing needs escaping
/// rules of its own.
pub fn yaml(v: &Value) -> String {
    fn scalar(v: &Value) -> Option<String> {
        match v {
            Value::Object(m) if m.is_empty() => Some("{}".into()),
            Value::Array(a) if a.is_empty() => Some("[]".into()),
            Value::Object(_) | Value::Array(_) => None,
            other => Some(other.to_string()),
        }
    }
    fn block(v: &Value, indent: usize, out: &mut String) {
        let pad = " ".repeat(indent);
        match v {
            Value::Object(m) if !m.is_empty() => {
                for (k, v) in m {
                    let key = Value::String(k.clone()).to_string();
                    match scalar(v) {
                        Some(s) => out.push_str(&format!("{pad}{key}: {s}\n")),
                        None => {
                            out.push_str(&format!("{pad}{key}:\n"));
                            block(v, indent + 2, out);
                        }
                    }
                }
            }
            Value::Array(a) if !a.is_empty() => {
                for v in a {
                    match scalar(v) {
                        Some(s) => out.push_str(&format!("{pad}- {s}\n")),
                        None => {
                            out.push_str(&format!("{pad}-\n"));
                            block(v, indent + 2, out);
                        }
                    }
                }
            }
            other => out.push_str(&format!("{pad}{}\n", scalar(other).unwrap_or_default())),
        }
    }
    let mut out = String::new();
    block(v, 0, &mut out);
    out
}

/// A JSON value as a table cell: strings bare, null empty, anything else as JSON.
pub fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// `--tag a,b --tag c` → `[a, b, c]`.
pub fn split_tags(tags: &[String]) -> Vec<String> {
    tags.iter()
        .flat_map(|t| t.split(','))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Text as it may reach a terminal: control characters (an escape sequence that clears the
/// screen or writes the clipboard, a newline that forges a line) are shown escaped (`\u{1b}`,
/// `\n`), never acted on. Anyone who can write a secret chooses its bytes; whoever reads it
/// should see them, not obey them.
pub fn shown(s: &str) -> std::borrow::Cow<'_, str> {
    if !s.chars().any(char::is_control) {
        return std::borrow::Cow::Borrowed(s);
    }
    std::borrow::Cow::Owned(
        s.chars()
            .map(|c| {
                if c.is_control() {
                    c.escape_default().to_string()
                } else {
                    c.to_string()
                }
            })
            .collect(),
    )
}

/// A table for a person at a terminal; for a pipe or a file, plain tab-separated lines with
/// the header first (what `cut`, `awk` and a spreadsheet read). Cells are never wrapped: a
/// long value (a token) stays on one line, so what is copied is the value itself.
pub fn print_table(headers: &[&str], rows: Vec<Vec<String>>) {
    let rows: Vec<Vec<String>> = rows
        .into_iter()
        .map(|r| r.iter().map(|c| shown(c).into_owned()).collect())
        .collect();
    if !std::io::IsTerminal::is_terminal(&std::io::stdout()) {
        println!("{}", headers.join("\t"));
        for r in rows {
            println!("{}", r.join("\t"));
        }
        return;
    }
    if rows.is_empty() {
        println!("(none)");
        return;
    }
    let mut t = Table::new();
    t.load_preset(UTF8_BORDERS_ONLY)
        .set_content_arrangement(ContentArrangement::Disabled)
        .set_header(headers.to_vec());
    for r in rows {
        t.add_row(r);
    }
    println!("{t}");
}

#[cfg(test)]
mod shown_tests {
    use super::shown;

    #[test]
    fn control_characters_are_shown_not_obeyed() {
        assert_eq!(shown("plain value"), "plain value");
        assert_eq!(shown("pwn\u{1b}[2J"), "pwn\\u{1b}[2J");
        assert_eq!(shown("x\nadmin: y"), "x\\nadmin: y");
        assert_eq!(shown("a\tb"), "a\\tb");
        assert_eq!(shown("é ünïcode"), "é ünïcode");
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::yaml;

    #[test]
    fn yaml_quotes_every_string_and_nests_in_blocks() {
        let v = json!({
            "path": "a/b", "version": 2, "no": "no", "empty": {}, "list": [],
            "data": {"port": "5432", "tags": ["x", {"k": null}]}
        });
        assert_eq!(
            yaml(&v),
            concat!(
                "\"data\":\n",
                "  \"port\": \"5432\"\n",
                "  \"tags\":\n",
                "    - \"x\"\n",
                "    -\n",
                "      \"k\": null\n",
                "\"empty\": {}\n",
                "\"list\": []\n",
                "\"no\": \"no\"\n",
                "\"path\": \"a/b\"\n",
                "\"version\": 2\n",
            )
        );
        assert_eq!(yaml(&json!("line\nbreak")), "\"line\\nbreak\"\n");
    }
}
