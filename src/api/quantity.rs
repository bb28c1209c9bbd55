//! Kubernetes resource quantities ("100m", "64Mi", "1.5G", "2") as integers.
//!
//! Manifests may write a quantity as a YAML number, so the serde helpers accept
//! numbers too and keep the text as written.

use serde::{Deserialize, Deserializer};
use std::collections::BTreeMap;

/// The largest quantity taken, in thousandths: int64 whole units (about
/// 9.2e18 bytes or cores), as far as upstream's Value() reaches. Sums and
/// products of such values in i128 cannot overflow.
const MAX_MILLI: i128 = i64::MAX as i128 * 1000;

/// Parses a quantity into thousandths of a unit (so "100m" = 100, "2" = 2000);
/// None beyond [`MAX_MILLI`] either way.
pub fn parse_milli(s: &str) -> Option<i128> {
    let s = s.trim();
    if s.is_empty() {
        return None;
    }
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-'))
        .unwrap_or(s.len());
    let (num, suffix) = s.split_at(split);
    // exponent form like 1e3
    let (num, exp10): (&str, i32) = if let Some(rest) = suffix.strip_prefix(['e', 'E']) {
        (num, rest.parse().ok()?)
    } else {
        (num, 0)
    };
    let suffix = if exp10 != 0 || suffix.starts_with(['e', 'E']) { "" } else { suffix };
    let (mult_num, mult_den): (i128, i128) = match suffix {
        "" => (1000, 1),
        "m" => (1, 1),
        "k" => (1000 * 1000, 1),
        "M" => (1000 * 1_000_000, 1),
        "G" => (1000 * 1_000_000_000, 1),
        "T" => (1000 * 1_000_000_000_000, 1),
        "P" => (1000 * 1_000_000_000_000_000, 1),
        "Ki" => (1000 << 10, 1),
        "Mi" => (1000 << 20, 1),
        "Gi" => (1000 << 30, 1),
        "Ti" => (1000 << 40, 1),
        "Pi" => (1000 << 50, 1),
        _ => return None,
    };
    let neg = num.starts_with('-');
    let num = num.trim_start_matches(['+', '-']);
    let (int, frac) = num.split_once('.').unwrap_or((num, ""));
    if int.is_empty() && frac.is_empty() {
        return None;
    }
    if !int.chars().all(|c| c.is_ascii_digit()) || !frac.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let digits: i128 = format!("{int}{frac}").parse().ok()?;
    let mut den: i128 = 10i128.checked_pow(frac.len() as u32)?;
    let mut val = digits.checked_mul(mult_num)?;
    if exp10 > 0 {
        val = val.checked_mul(10i128.checked_pow(exp10 as u32)?)?;
    } else if exp10 < 0 {
        den = den.checked_mul(10i128.checked_pow(exp10.unsigned_abs())?)?;
    }
    let den = den.checked_mul(mult_den)?;
    let v = val.checked_add(den - 1)? / den; // round up, as Kubernetes does
    (v <= MAX_MILLI).then_some(if neg { -v } else { v })
}

/// Parses a quantity into whole units (bytes for memory), rounding up.
pub fn parse_int(s: &str) -> Option<i64> {
    let m = parse_milli(s)?;
    i64::try_from((m + 999).div_euclid(1000)).ok()
}

#[derive(Deserialize)]
#[serde(untagged)]
enum NumOrStr {
    S(String),
    I(i64),
    F(f64),
}

impl NumOrStr {
    fn into_string(self) -> String {
        match self {
            NumOrStr::S(s) => s,
            NumOrStr::I(i) => i.to_string(),
            NumOrStr::F(f) => f.to_string(),
        }
    }
}

pub fn de_map<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, String>, D::Error> {
    let m: Option<BTreeMap<String, NumOrStr>> = Option::deserialize(d)?;
    Ok(m.unwrap_or_default().into_iter().map(|(k, v)| (k, v.into_string())).collect())
}

pub fn de_opt<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let v: Option<NumOrStr> = Option::deserialize(d)?;
    Ok(v.map(NumOrStr::into_string))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_common_forms() {
        assert_eq!(parse_milli("100m"), Some(100));
        assert_eq!(parse_milli("2"), Some(2000));
        assert_eq!(parse_milli("0.5"), Some(500));
        assert_eq!(parse_int("64Mi"), Some(64 << 20));
        assert_eq!(parse_int("1G"), Some(1_000_000_000));
        assert_eq!(parse_int("10Mi"), Some(10 << 20));
        assert_eq!(parse_int("1e3"), Some(1000));
        assert_eq!(parse_int("1.5Ki"), Some(1536));
        assert_eq!(parse_milli("abc"), None);
        assert_eq!(parse_milli("5X"), None);
        assert_eq!(parse_milli(""), None);
    }

    /// Quantities at and past the ends: None, never an overflow.
    #[test]
    fn extremes() {
        assert_eq!(parse_int("9223372036854775807"), Some(i64::MAX));
        assert_eq!(parse_int("-9223372036854775807"), Some(-i64::MAX));
        assert_eq!(parse_int("8Ei"), None);
        assert_eq!(parse_milli("9223372036854775808"), None);
        assert_eq!(parse_milli("1e1000"), None);
        assert_eq!(parse_milli("1e-2147483648"), None);
        assert_eq!(parse_milli("1e-38"), Some(1));
        assert_eq!(parse_milli("17014118346046923173168730.3715884105"), None);
        assert_eq!(parse_milli("170141183460469231731687303715884105727"), None);
        assert_eq!(parse_milli("999999999999999999999999999999999999999999"), None);
    }
}
