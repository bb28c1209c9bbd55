//! The self-signed serving certificate: an ECDSA P-256 key from ring and an
//! X.509 v3 certificate encoded by hand (see [`super::der`]), shaped like
//! upstream's (`CN=<host>@<unix time>`), valid for a year.

use super::der::{self, cons, oid, tlv, SEQUENCE, SET};
use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_ASN1_SIGNING};
use std::net::IpAddr;

/// How long a generated certificate is valid (upstream: one year).
pub const VALIDITY_SECS: u64 = 365 * 24 * 3600;
/// notBefore is backdated for clocks that run a little behind (as upstream does).
const BACKDATE_SECS: u64 = 3600;

/// A generated certificate (DER) and its key (PKCS#8 DER).
pub struct Generated {
    pub cert: Vec<u8>,
    pub key_pkcs8: Vec<u8>,
}

/// The subjectAltNames: the node's name (an IP SAN if it is an address),
/// `localhost`, the node IP and 127.0.0.1, without repeats.
pub fn alt_names(node_name: &str, node_ip: Option<IpAddr>) -> (Vec<String>, Vec<IpAddr>) {
    let mut dns = Vec::new();
    let mut ips = Vec::new();
    let name_ip = node_name.parse::<IpAddr>().ok();
    if name_ip.is_none() && !node_name.is_empty() {
        dns.push(node_name.to_string());
    }
    if node_name != "localhost" {
        dns.push("localhost".to_string());
    }
    for ip in [name_ip, node_ip, Some(IpAddr::from([127, 0, 0, 1]))].into_iter().flatten() {
        if !ips.contains(&ip) {
            ips.push(ip);
        }
    }
    (dns, ips)
}

/// A fresh key and a certificate for it, signed by itself, at Unix time `now`.
pub fn generate(node_name: &str, node_ip: Option<IpAddr>, now: u64) -> Result<Generated, String> {
    let rng = SystemRandom::new();
    let alg = &ECDSA_P256_SHA256_ASN1_SIGNING;
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(alg, &rng).map_err(|_| "generating an ECDSA key failed".to_string())?;
    let key = EcdsaKeyPair::from_pkcs8(alg, pkcs8.as_ref(), &rng).map_err(|e| format!("loading the generated key: {e}"))?;
    let mut serial = [0u8; 16];
    rng.fill(&mut serial).map_err(|_| "no randomness for the serial number".to_string())?;
    serial[0] = (serial[0] & 0x7f) | 0x40; // positive, 16 bytes
    let (dns, ips) = alt_names(node_name, node_ip);
    let tbs = tbs_certificate(&serial, &format!("{node_name}@{now}"), now, key.public_key().as_ref(), &dns, &ips);
    let sig = key.sign(&rng, &tbs).map_err(|_| "signing the certificate failed".to_string())?;
    let cert = cons(SEQUENCE, &[&tbs, &ecdsa_with_sha256(), &der::bit_string(sig.as_ref())]);
    Ok(Generated { cert, key_pkcs8: pkcs8.as_ref().to_vec() })
}

fn ecdsa_with_sha256() -> Vec<u8> {
    cons(SEQUENCE, &[&oid(&[1, 2, 840, 10045, 4, 3, 2])])
}

/// The to-be-signed part: issuer = subject = `CN=<cn>`.
fn tbs_certificate(serial: &[u8], cn: &str, now: u64, public_point: &[u8], dns: &[String], ips: &[IpAddr]) -> Vec<u8> {
    let name = cons(SEQUENCE, &[&cons(SET, &[&cons(SEQUENCE, &[&oid(&[2, 5, 4, 3]), &tlv(der::UTF8_STRING, cn.as_bytes())])])]);
    let not_before = now.saturating_sub(BACKDATE_SECS);
    let validity = cons(SEQUENCE, &[&der::time(not_before), &der::time(now + VALIDITY_SECS)]);
    let spki = cons(
        SEQUENCE,
        &[&cons(SEQUENCE, &[&oid(&[1, 2, 840, 10045, 2, 1]), &oid(&[1, 2, 840, 10045, 3, 1, 7])]), &der::bit_string(public_point)],
    );
    let mut sans = Vec::new();
    for d in dns {
        sans.extend(tlv(der::implicit(2), d.as_bytes()));
    }
    for ip in ips {
        let octets = match ip {
            IpAddr::V4(v4) => v4.octets().to_vec(),
            IpAddr::V6(v6) => v6.octets().to_vec(),
        };
        sans.extend(tlv(der::implicit(7), &octets));
    }
    let extensions = [
        // keyUsage (critical): digitalSignature, keyEncipherment.
        extension(&[2, 5, 29, 15], true, &[der::BIT_STRING, 2, 5, 0xa0]),
        // extKeyUsage: serverAuth.
        extension(&[2, 5, 29, 37], false, &cons(SEQUENCE, &[&oid(&[1, 3, 6, 1, 5, 5, 7, 3, 1])])),
        // basicConstraints (critical): not a CA (the empty sequence).
        extension(&[2, 5, 29, 19], true, &tlv(SEQUENCE, &[])),
        extension(&[2, 5, 29, 17], false, &tlv(SEQUENCE, &sans)),
    ];
    let ext_refs: Vec<&[u8]> = extensions.iter().map(Vec::as_slice).collect();
    cons(
        SEQUENCE,
        &[
            &tlv(der::explicit(0), &der::uint(&[2])), // v3
            &der::uint(serial),
            &ecdsa_with_sha256(),
            &name,
            &validity,
            &name,
            &spki,
            &tlv(der::explicit(3), &cons(SEQUENCE, &ext_refs)),
        ],
    )
}

fn extension(id: &[u32], critical: bool, value: &[u8]) -> Vec<u8> {
    let crit = if critical { tlv(der::BOOLEAN, &[0xff]) } else { Vec::new() };
    cons(SEQUENCE, &[&oid(id), &crit, &tlv(der::OCTET_STRING, value)])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alt_names_without_repeats() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(
            alt_names("pi-1", Some(ip("10.0.0.7"))),
            (vec!["pi-1".to_string(), "localhost".into()], vec![ip("10.0.0.7"), ip("127.0.0.1")])
        );
        assert_eq!(alt_names("localhost", Some(ip("127.0.0.1"))), (vec!["localhost".to_string()], vec![ip("127.0.0.1")]));
        assert_eq!(alt_names("10.1.2.3", None), (vec!["localhost".to_string()], vec![ip("10.1.2.3"), ip("127.0.0.1")]));
        assert_eq!(alt_names("n", Some(ip("fd00::1"))).1, vec![ip("fd00::1"), ip("127.0.0.1")]);
    }

    #[test]
    fn generated_certificate_reads_back() {
        let now = 1_714_564_800;
        let g = generate("pi-1", None, now).unwrap();
        let info = der::cert_info(&g.cert).unwrap();
        assert_eq!(info.not_before, now - 3600);
        assert_eq!(info.not_after, now + VALIDITY_SECS);
        let attrs = der::name_attributes(info.subject).unwrap();
        assert_eq!(attrs, vec![(&[0x55, 4, 3][..], der::UTF8_STRING, &b"pi-1@1714564800"[..])]);
        // A different key and serial each time.
        let h = generate("pi-1", None, now).unwrap();
        assert_ne!(g.key_pkcs8, h.key_pkcs8);
        assert_ne!(g.cert, h.cert);
    }
}
