use comfy_table::presets::UTF8_BORDERS_ONLY;
use comfy_table::{ContentArrangement, Table};
use serde_json::Value;

/// Human tables by default, JSON with `--json`.
pub struct Out {
    pub json: bool,
}

impl Out {
    pub fn emit<T: serde::Serialize + ?Sized>(&self, value: &T, human: impl FnOnce()) {
        if self.json {
            println!(
                "{}",
                serde_json::to_string_pretty(value).unwrap_or_default()
            );
        } else {
            human();
        }
    }
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
