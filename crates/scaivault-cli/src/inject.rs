//! `scaivault inject`: a template's secret references rendered into a file, as `op inject`
//! does. A reference is `{{ scaivault://path#field }}` or `{{ scaivault "path#field" }}`;
//! any other `{{ … }}` is left as it is (the file may be a template for another tool too).
//! Nothing is written unless every reference resolves, and the output file is created
//! owner-only and replaced in one rename, so a reader never sees half of it.

use std::io::{Read as _, Write as _};

use scaivault_core::Error;

use crate::args::InjectArgs;
use crate::references::{Reference, Resolver, SCHEME};
use crate::target::{CliResult, VaultClient};

/// One `{{ … }}` that names a secret: where it is in the template and what it names.
struct Slot {
    start: usize,
    end: usize,
    line: usize,
    reference: Reference,
}

/// The references of `template`, in order; an error names the line of a malformed one.
fn slots(template: &str) -> Result<Vec<Slot>, Error> {
    let mut out = Vec::new();
    let mut from = 0;
    // Lines are counted as the scan moves on (counting from the start each time made a
    // template of many references quadratic).
    let (mut line, mut counted) = (1, 0);
    while let Some(open) = template[from..].find("{{").map(|i| from + i) {
        line += template[counted..open].matches('\n').count();
        counted = open;
        let Some(close) = template[open..].find("}}").map(|i| open + i) else {
            // An opening with no end: a reference cut short is an error, anything else text.
            if template[open + 2..].trim_start().starts_with("scaivault") {
                return Err(Error::invalid_request(format!(
                    "line {line}: a reference is never closed with }}}}"
                )));
            }
            break;
        };
        let inner = template[open + 2..close].trim();
        let named: Option<String> = if inner.starts_with(SCHEME) {
            Some(inner.to_owned())
        } else if let Some(rest) = inner
            .strip_prefix("scaivault")
            .filter(|r| r.is_empty() || r.starts_with([' ', '\t', '"']))
        {
            // `{{ scaivault "path#field" }}`; anything else after the word is malformed (an
            // empty name, refused below).
            let quoted = rest
                .trim()
                .strip_prefix('"')
                .and_then(|r| r.strip_suffix('"'));
            Some(quoted.map_or_else(String::new, |q| format!("{SCHEME}{q}")))
        } else {
            None
        };
        from = close + 2;
        let Some(named) = named else { continue };
        let reference = Reference::parse(&named)
            .unwrap_or_else(|| {
                Err(Error::invalid_request(
                    "write a reference as {{ scaivault://path#field }} or {{ scaivault \"path#field\" }}",
                ))
            })
            .map_err(|e| Error::invalid_request(format!("line {line}: {}", e.message)))?;
        out.push(Slot {
            start: open,
            end: close + 2,
            line,
            reference,
        });
    }
    Ok(out)
}

/// The template with every reference replaced by its value.
async fn render(target: &VaultClient, template: &str, name: &str) -> CliResult<String> {
    let mut resolver = Resolver::new(target);
    let mut out = String::with_capacity(template.len());
    let mut at = 0;
    for s in
        slots(template).map_err(|e| Error::invalid_request(format!("{name}: {}", e.message)))?
    {
        out.push_str(&template[at..s.start]);
        let whence = format!("{name} line {}", s.line);
        out.push_str(&resolver.value(&s.reference, &whence).await?);
        at = s.end;
    }
    out.push_str(&template[at..]);
    Ok(out)
}

pub async fn inject(target: &VaultClient, args: InjectArgs) -> CliResult<()> {
    let (template, name) = match args.in_file.as_ref().filter(|p| p.as_os_str() != "-") {
        Some(p) => (
            std::fs::read_to_string(p)
                .map_err(|e| Error::invalid_request(format!("cannot read {}: {e}", p.display())))?,
            p.display().to_string(),
        ),
        None => {
            let mut t = String::new();
            std::io::stdin()
                .read_to_string(&mut t)
                .map_err(|e| Error::invalid_request(format!("cannot read the template: {e}")))?;
            (t, "the template".to_owned())
        }
    };
    if let Some(out) = &args.out_file
        && out.as_os_str() != "-"
        && out.exists()
        && !args.force
    {
        return Err(Error::invalid_request(format!(
            "{} exists; give --force to replace it",
            out.display()
        ))
        .into());
    }
    let rendered = zeroize::Zeroizing::new(render(target, &template, &name).await?);
    match args.out_file.as_ref().filter(|p| p.as_os_str() != "-") {
        Some(out) => crate::config::replace_private(out, rendered.as_bytes())
            .map_err(|e| Error::internal(format!("cannot write {}: {e}", out.display())))?,
        None => {
            let mut stdout = std::io::stdout().lock();
            stdout
                .write_all(rendered.as_bytes())
                .and_then(|()| stdout.flush())
                .map_err(|e| Error::internal(format!("cannot write the output: {e}")))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_are_found_in_both_forms_and_other_braces_are_left() {
        let t = "a: {{ scaivault://app/db#password }}\nb: {{scaivault \"app/key\"}}\nc: {{ .Values.x }}\n";
        let found: Vec<(usize, String, String)> = slots(t)
            .unwrap()
            .into_iter()
            .map(|s| (s.line, s.reference.path, s.reference.field))
            .collect();
        assert_eq!(
            found,
            [
                (1, "app/db".into(), "password".into()),
                (2, "app/key".into(), "value".into())
            ]
        );
    }

    #[test]
    fn a_malformed_reference_names_its_line() {
        for t in [
            "x\n{{ scaivault app/db }}",
            "x\n{{ scaivault:// }}",
            "x\n{{ scaivault }}",
        ] {
            let e = slots(t).err().unwrap_or_else(|| panic!("{t:?} accepted"));
            assert!(e.message.starts_with("line 2:"), "{t:?}: {}", e.message);
        }
    }
}
