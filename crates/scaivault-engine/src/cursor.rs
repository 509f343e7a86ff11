//! Opaque pagination cursors: base64url of a small JSON object, as the spec's example shows.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use scaivault_core::{Error, ErrorCode};

pub(crate) fn encode(after: &str) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::json!({ "after": after }).to_string())
}

pub(crate) fn decode(cursor: &str) -> Result<String, Error> {
    let bad = || {
        Error::new(
            ErrorCode::InvalidCursor,
            "the cursor is malformed; start again without one",
        )
    };
    let bytes = URL_SAFE_NO_PAD.decode(cursor).map_err(|_| bad())?;
    let v: serde_json::Value = serde_json::from_slice(&bytes).map_err(|_| bad())?;
    v.get("after")
        .and_then(|a| a.as_str())
        .map(str::to_owned)
        .ok_or_else(bad)
}

/// One page of an in-memory collection in key order: the items after the cursor's key, at
/// most `limit` (default and maximum as for secrets), and the cursor of the next page.
pub(crate) struct Page<T> {
    pub items: Vec<T>,
    pub cursor: Option<String>,
    pub has_more: bool,
}

pub(crate) fn page<T>(
    mut keyed: Vec<(String, T)>,
    limit: Option<usize>,
    cursor: Option<&str>,
) -> Result<Page<T>, Error> {
    use crate::limits::{DEFAULT_LIST_LIMIT, MAX_LIST_LIMIT};
    let limit = limit.unwrap_or(DEFAULT_LIST_LIMIT);
    if limit == 0 || limit > MAX_LIST_LIMIT {
        return Err(Error::invalid_request(format!(
            "limit must be between 1 and {MAX_LIST_LIMIT}"
        )));
    }
    let after = cursor.map(decode).transpose()?;
    keyed.sort_by(|a, b| a.0.cmp(&b.0));
    let mut rest = keyed
        .into_iter()
        .filter(|(k, _)| after.as_ref().is_none_or(|a| k > a));
    let mut items = Vec::new();
    let mut last = None;
    for (k, v) in rest.by_ref().take(limit) {
        items.push(v);
        last = Some(k);
    }
    let has_more = rest.next().is_some();
    Ok(Page {
        items,
        cursor: if has_more {
            last.map(|k| encode(&k))
        } else {
            None
        },
        has_more,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn pages_walk_everything_once_in_key_order() {
        let items: Vec<(String, u32)> = [5u32, 1, 4, 2, 3]
            .iter()
            .map(|n| (format!("k{n}"), *n))
            .collect();
        let mut seen = Vec::new();
        let mut cursor = None;
        loop {
            let p = super::page(items.clone(), Some(2), cursor.as_deref()).unwrap();
            seen.extend(p.items);
            assert_eq!(p.has_more, p.cursor.is_some());
            match p.cursor {
                Some(c) => cursor = Some(c),
                None => break,
            }
        }
        assert_eq!(seen, vec![1, 2, 3, 4, 5]);
        let exact = super::page(items.clone(), Some(5), None).unwrap();
        assert!(!exact.has_more && exact.cursor.is_none());
        for bad in [Some(0), Some(1001)] {
            assert_eq!(
                super::page(items.clone(), bad, None).err().unwrap().code,
                scaivault_core::ErrorCode::InvalidRequest
            );
        }
    }

    #[test]
    fn round_trip_and_garbage() {
        assert_eq!(super::decode(&super::encode("a/b")).unwrap(), "a/b");
        for bad in ["", "!!!", "eyJpZCI6MTc4fQ"] {
            assert_eq!(
                super::decode(bad).unwrap_err().code,
                scaivault_core::ErrorCode::InvalidCursor
            );
        }
    }
}
