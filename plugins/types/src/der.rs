//! Just enough DER and PEM to read X.509 certificates and private keys: no signature checks,
//! no arbitrary ASN.1, and every length checked against what is left.

use base64::Engine as _;

pub const SEQUENCE: u8 = 0x30;
pub const INTEGER: u8 = 0x02;
pub const BIT_STRING: u8 = 0x03;
pub const OCTET_STRING: u8 = 0x04;
pub const OID: u8 = 0x06;
pub const UTC_TIME: u8 = 0x17;
pub const GENERALIZED_TIME: u8 = 0x18;

pub const OID_RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
pub const OID_EC: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
pub const OID_ED25519: &[u8] = &[0x2b, 0x65, 0x70];

/// One tag-length-value element.
#[derive(Clone, Copy)]
pub struct Tlv<'a> {
    pub tag: u8,
    pub content: &'a [u8],
    /// The whole element, header included (to compare names byte for byte).
    pub raw: &'a [u8],
}

/// Reads the elements of a constructed value in order.
pub struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Reader { rest: data }
    }

    pub fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    pub fn next(&mut self) -> Result<Tlv<'a>, &'static str> {
        let d = self.rest;
        if d.len() < 2 {
            return Err("truncated DER element");
        }
        let tag = d[0];
        if tag & 0x1f == 0x1f {
            return Err("multi-byte DER tags are not used in certificates");
        }
        let (len, header) = match d[1] {
            n if n < 0x80 => (n as usize, 2),
            0x80 => return Err("indefinite DER lengths are not allowed"),
            n => {
                let count = (n & 0x7f) as usize;
                if count > 4 || d.len() < 2 + count {
                    return Err("bad DER length");
                }
                let mut len = 0usize;
                for b in &d[2..2 + count] {
                    len = (len << 8) | *b as usize;
                }
                (len, 2 + count)
            }
        };
        let end = header.checked_add(len).ok_or("bad DER length")?;
        if end > d.len() {
            return Err("DER element runs past its end");
        }
        self.rest = &d[end..];
        Ok(Tlv {
            tag,
            content: &d[header..end],
            raw: &d[..end],
        })
    }

    pub fn expect(&mut self, tag: u8, what: &'static str) -> Result<Tlv<'a>, &'static str> {
        let t = self.next()?;
        if t.tag == tag {
            Ok(t)
        } else {
            Err(what)
        }
    }
}

/// Parses exactly one element spanning all of `data`.
pub fn single<'a>(data: &'a [u8], tag: u8, what: &'static str) -> Result<Tlv<'a>, &'static str> {
    let mut r = Reader::new(data);
    let t = r.expect(tag, what)?;
    if !r.is_empty() {
        return Err("trailing bytes after DER element");
    }
    Ok(t)
}

/// An INTEGER's magnitude without leading zero bytes, so encodings compare equal.
pub fn unsigned(int: &[u8]) -> &[u8] {
    let mut i = int;
    while i.len() > 1 && i[0] == 0 {
        i = &i[1..];
    }
    i
}

/// A BIT STRING's bits, which must be whole bytes.
pub fn bits(content: &[u8]) -> Result<&[u8], &'static str> {
    match content.split_first() {
        Some((0, rest)) => Ok(rest),
        _ => Err("BIT STRING with unused bits"),
    }
}

/// One PEM block: its label and decoded bytes.
pub struct Pem {
    pub label: String,
    pub der: Vec<u8>,
}

/// Every PEM block in `text`, in order. Text between blocks is ignored (as openssl does), but a
/// block that opens and never closes, or holds headers or bad base64, is an error.
pub fn pem_blocks(text: &str) -> Result<Vec<Pem>, String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("-----BEGIN ") {
        let after = &rest[start + 11..];
        let label_end = after.find("-----").ok_or("malformed PEM header")?;
        let label = &after[..label_end];
        let body_start = &after[label_end + 5..];
        let end_marker = format!("-----END {}-----", label);
        let body_end = body_start
            .find(&end_marker)
            .ok_or_else(|| format!("PEM block {} is not closed", label))?;
        let body = &body_start[..body_end];
        if body.contains(':') {
            return Err(format!(
                "PEM block {} has headers (a legacy encrypted key?); store it unencrypted, the vault encrypts it",
                label
            ));
        }
        let compact: String = body.chars().filter(|c| !c.is_whitespace()).collect();
        let der = base64::engine::general_purpose::STANDARD
            .decode(compact.as_bytes())
            .map_err(|_| format!("PEM block {} is not valid base64", label))?;
        out.push(Pem {
            label: label.to_string(),
            der,
        });
        rest = &body_start[body_end + end_marker.len()..];
    }
    Ok(out)
}

/// `UTCTime` or `GeneralizedTime` (UTC, seconds) as RFC 3339.
pub fn time_rfc3339(t: &Tlv<'_>) -> Result<String, &'static str> {
    let s = core::str::from_utf8(t.content).map_err(|_| "bad time")?;
    let full = match t.tag {
        UTC_TIME if s.len() == 13 && s.ends_with('Z') => {
            let yy: u32 = s[..2].parse().map_err(|_| "bad time")?;
            let century = if yy < 50 { "20" } else { "19" };
            format!("{}{}", century, &s[..12])
        }
        GENERALIZED_TIME if s.len() == 15 && s.ends_with('Z') => s[..14].to_string(),
        _ => return Err("unsupported certificate time format"),
    };
    if !full.bytes().all(|b| b.is_ascii_digit()) {
        return Err("bad time");
    }
    Ok(format!(
        "{}-{}-{}T{}:{}:{}Z",
        &full[0..4],
        &full[4..6],
        &full[6..8],
        &full[8..10],
        &full[10..12],
        &full[12..14]
    ))
}

