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

#[cfg(test)]
mod tests {
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
