//! Just enough DER for the kubelet's certificates: an encoder for the
//! self-signed serving certificate and a reader that walks a certificate to
//! its subject and validity.
//!
//! Not a general ASN.1 library: single-byte tags, definite lengths up to
//! 4 bytes, and no schema beyond what [`super::cert`] and [`super::client_user`] need.

use std::time::{Duration, UNIX_EPOCH};

pub const BOOLEAN: u8 = 0x01;
pub const INTEGER: u8 = 0x02;
pub const BIT_STRING: u8 = 0x03;
pub const OCTET_STRING: u8 = 0x04;
pub const OID: u8 = 0x06;
pub const UTF8_STRING: u8 = 0x0c;
pub const PRINTABLE_STRING: u8 = 0x13;
pub const T61_STRING: u8 = 0x14;
pub const IA5_STRING: u8 = 0x16;
pub const UTC_TIME: u8 = 0x17;
pub const GENERALIZED_TIME: u8 = 0x18;
pub const BMP_STRING: u8 = 0x1e;
pub const SEQUENCE: u8 = 0x30;
pub const SET: u8 = 0x31;
/// `[n]` EXPLICIT (constructed) and `[n]` IMPLICIT of a primitive type.
pub const fn explicit(n: u8) -> u8 {
    0xa0 | n
}
pub const fn implicit(n: u8) -> u8 {
    0x80 | n
}

/// One tag-length-value.
pub fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let len = content.len();
    let mut out = Vec::with_capacity(len + 6);
    out.push(tag);
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = (len as u32).to_be_bytes();
        let skip = bytes.iter().take_while(|&&b| b == 0).count();
        out.push(0x80 | (4 - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(content);
    out
}

/// A constructed value (SEQUENCE, SET, `[n]`) of already encoded parts.
pub fn cons(tag: u8, parts: &[&[u8]]) -> Vec<u8> {
    tlv(tag, &parts.concat())
}

/// An OBJECT IDENTIFIER from its arcs (`&[2, 5, 4, 3]`), content only.
pub fn oid_content(arcs: &[u32]) -> Vec<u8> {
    let mut out = vec![(arcs[0] * 40 + arcs[1]) as u8];
    for &arc in &arcs[2..] {
        let mut base128 = vec![(arc & 0x7f) as u8];
        let mut rest = arc >> 7;
        while rest > 0 {
            base128.push(0x80 | (rest & 0x7f) as u8);
            rest >>= 7;
        }
        out.extend(base128.iter().rev());
    }
    out
}

pub fn oid(arcs: &[u32]) -> Vec<u8> {
    tlv(OID, &oid_content(arcs))
}

/// A non-negative INTEGER from big-endian bytes.
pub fn uint(be: &[u8]) -> Vec<u8> {
    let be = &be[be.iter().take_while(|&&b| b == 0).count().min(be.len().saturating_sub(1))..];
    if be.first().map_or(true, |b| b & 0x80 != 0) {
        tlv(INTEGER, &[&[0u8][..], be].concat())
    } else {
        tlv(INTEGER, be)
    }
}

/// A BIT STRING of whole bytes.
pub fn bit_string(bytes: &[u8]) -> Vec<u8> {
    tlv(BIT_STRING, &[&[0u8][..], bytes].concat())
}

/// A certificate time (RFC 5280 4.1.2.5): UTCTime through 2049, GeneralizedTime after.
pub fn time(unix_secs: u64) -> Vec<u8> {
    let s = crate::api::time::rfc3339(UNIX_EPOCH + Duration::from_secs(unix_secs));
    let digits: String = s.chars().filter(char::is_ascii_digit).collect();
    if digits.as_str() < "2050" {
        tlv(UTC_TIME, format!("{}Z", &digits[2..]).as_bytes())
    } else {
        tlv(GENERALIZED_TIME, format!("{digits}Z").as_bytes())
    }
}

/// Reads a certificate time back into Unix seconds.
pub fn parse_time(tag: u8, content: &[u8]) -> Option<u64> {
    let s = std::str::from_utf8(content).ok()?.strip_suffix('Z')?;
    // Digits only before any slicing: `s[..2]` on other text may split a character.
    if !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let full = match (tag, s.len()) {
        (UTC_TIME, 12) => format!("{}{s}", if s[..2] >= *"50" { "19" } else { "20" }),
        (GENERALIZED_TIME, 14) => s.to_string(),
        _ => return None,
    };
    let d = |r: std::ops::Range<usize>| &full[r];
    let rfc = format!("{}-{}-{}T{}:{}:{}Z", d(0..4), d(4..6), d(6..8), d(8..10), d(10..12), d(12..14));
    let t = crate::api::time::parse_rfc3339(&rfc)?;
    Some(t.duration_since(UNIX_EPOCH).ok()?.as_secs())
}

/// Walks the values at one level of a DER encoding.
#[derive(Clone, Copy)]
pub struct Reader<'a>(pub &'a [u8]);

impl<'a> Reader<'a> {
    /// The next (tag, content); None at the end or on malformed input.
    pub fn next(&mut self) -> Option<(u8, &'a [u8])> {
        let (&tag, rest) = self.0.split_first()?;
        if tag & 0x1f == 0x1f {
            return None; // multi-byte tags do not occur in certificates
        }
        let (&first, rest) = rest.split_first()?;
        let (len, rest) = if first < 0x80 {
            (first as usize, rest)
        } else {
            let n = (first & 0x7f) as usize;
            if n == 0 || n > 4 || rest.len() < n {
                return None; // indefinite or absurd length
            }
            (rest[..n].iter().fold(0usize, |a, &b| a << 8 | b as usize), &rest[n..])
        };
        if rest.len() < len {
            return None;
        }
        let (content, rest) = rest.split_at(len);
        self.0 = rest;
        Some((tag, content))
    }

    /// The next value's content if it has `tag`.
    pub fn expect(&mut self, tag: u8) -> Option<&'a [u8]> {
        match self.next()? {
            (t, c) if t == tag => Some(c),
            _ => None,
        }
    }

    /// Skips the next value if it has `tag`; whether it did.
    pub fn skip_if(&mut self, tag: u8) -> bool {
        let mut peek = *self;
        if matches!(peek.next(), Some((t, _)) if t == tag) {
            *self = peek;
            return true;
        }
        false
    }
}

/// A directory string (the kinds certificates use) as UTF-8.
pub fn string(tag: u8, content: &[u8]) -> Option<String> {
    match tag {
        UTF8_STRING | PRINTABLE_STRING | IA5_STRING => String::from_utf8(content.to_vec()).ok(),
        // Latin-1, as Go's x509 reads it.
        T61_STRING => Some(content.iter().map(|&b| b as char).collect()),
        BMP_STRING if content.len() % 2 == 0 => {
            String::from_utf16(&content.chunks(2).map(|c| u16::from_be_bytes([c[0], c[1]])).collect::<Vec<_>>()).ok()
        }
        _ => None,
    }
}

/// The parts of a certificate the kubelet looks at.
pub struct CertInfo<'a> {
    /// The subject Name's content: a sequence of RDN SETs.
    pub subject: &'a [u8],
    /// Only the tests look at it (reuse ignores it: clocks without an RTC).
    #[cfg_attr(not(test), allow(dead_code))]
    pub not_before: u64,
    pub not_after: u64,
}

/// Certificate → tbsCertificate → validity and subject.
pub fn cert_info(der: &[u8]) -> Option<CertInfo<'_>> {
    let cert = Reader(der).expect(SEQUENCE)?;
    let mut tbs = Reader(Reader(cert).expect(SEQUENCE)?);
    tbs.skip_if(explicit(0)); // version
    tbs.expect(INTEGER)?; // serialNumber
    tbs.expect(SEQUENCE)?; // signature algorithm
    tbs.expect(SEQUENCE)?; // issuer
    let mut validity = Reader(tbs.expect(SEQUENCE)?);
    let (t, c) = validity.next()?;
    let not_before = parse_time(t, c)?;
    let (t, c) = validity.next()?;
    let not_after = parse_time(t, c)?;
    let subject = tbs.expect(SEQUENCE)?;
    Some(CertInfo { subject, not_before, not_after })
}

/// One attribute of a Name: its type (OID content), the value's tag and content.
pub type Attribute<'a> = (&'a [u8], u8, &'a [u8]);

/// Each attribute of a Name, in order.
pub fn name_attributes(name: &[u8]) -> Option<Vec<Attribute<'_>>> {
    let mut out = Vec::new();
    let mut rdns = Reader(name);
    while !rdns.0.is_empty() {
        let mut set = Reader(rdns.expect(SET)?);
        while !set.0.is_empty() {
            let mut atv = Reader(set.expect(SEQUENCE)?);
            let oid = atv.expect(OID)?;
            let (tag, value) = atv.next()?;
            out.push((oid, tag, value));
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_short_and_long() {
        assert_eq!(tlv(OCTET_STRING, b"ab"), [4, 2, b'a', b'b']);
        let long = tlv(OCTET_STRING, &[7; 200]);
        assert_eq!(&long[..3], [4, 0x81, 200]);
        let longer = tlv(OCTET_STRING, &[7; 300]);
        assert_eq!(&longer[..4], [4, 0x82, 1, 44]);
        let mut r = Reader(&longer);
        assert_eq!(r.next(), Some((OCTET_STRING, &[7u8; 300][..])));
        assert!(r.next().is_none());
        // Truncated, indefinite and multi-byte-tag inputs are refused, not panicked on.
        assert!(Reader(&longer[..100]).next().is_none());
        assert!(Reader(&[0x30, 0x80, 0, 0]).next().is_none());
        assert!(Reader(&[0x1f, 0x01, 0]).next().is_none());
        assert!(Reader(&[0x04, 0x85, 1, 1, 1, 1, 1]).next().is_none());
    }

    #[test]
    fn oids_integers_bits() {
        assert_eq!(oid(&[2, 5, 4, 3]), [6, 3, 0x55, 4, 3]);
        assert_eq!(oid_content(&[1, 2, 840, 10045, 4, 3, 2]), [0x2a, 0x86, 0x48, 0xce, 0x3d, 4, 3, 2]);
        assert_eq!(oid_content(&[1, 3, 6, 1, 4, 1, 57683, 2]), [0x2b, 6, 1, 4, 1, 0x83, 0xc2, 0x53, 2]);
        assert_eq!(uint(&[0, 0, 5]), [2, 1, 5]);
        assert_eq!(uint(&[0x80]), [2, 2, 0, 0x80]);
        assert_eq!(uint(&[0]), [2, 1, 0]);
        assert_eq!(bit_string(&[0xff]), [3, 2, 0, 0xff]);
    }

    #[test]
    fn times_round_trip() {
        // 2024-05-01T12:00:00Z
        let t = 1_714_564_800;
        assert_eq!(time(t), tlv(UTC_TIME, b"240501120000Z"));
        assert_eq!(parse_time(UTC_TIME, b"240501120000Z"), Some(t));
        // 2051-01-01T00:00:00Z is past UTCTime's range.
        let late = 2_556_144_000;
        assert_eq!(time(late), tlv(GENERALIZED_TIME, b"20510101000000Z"));
        assert_eq!(parse_time(GENERALIZED_TIME, b"20510101000000Z"), Some(late));
        assert_eq!(parse_time(UTC_TIME, b"991231235959Z"), Some(946_684_799));
        assert_eq!(parse_time(UTC_TIME, b"2405011200Z"), None);
        assert_eq!(parse_time(UTC_TIME, b"24050112000+Z"), None);
        assert_eq!(parse_time(UTC_TIME, "2é0501120000Z".as_bytes()), None);
        assert_eq!(parse_time(GENERALIZED_TIME, b"99991231235959Z").map(|t| t > 0), Some(true));
        assert_eq!(parse_time(GENERALIZED_TIME, b"20241301000000Z"), None);
    }

    #[test]
    fn strings() {
        assert_eq!(string(UTF8_STRING, "né".as_bytes()).as_deref(), Some("né"));
        assert_eq!(string(T61_STRING, &[0x6e, 0xe9]).as_deref(), Some("né"));
        assert_eq!(string(BMP_STRING, &[0, 0x6e, 0, 0xe9]).as_deref(), Some("né"));
        assert_eq!(string(OCTET_STRING, b"x"), None);
    }
}
