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

/// A table for a person at a terminal; for a pipe or a file, plain tab-separated lines with
/// the header first (what `cut`, `awk` and a spreadsheet read). Cells are never wrapped: a
/// long value (a token) stays on one line, so what is copied is the value itself.
pub fn print_table(headers: &[&str], rows: Vec<Vec<String>>) {
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
