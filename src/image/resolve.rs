//! Whether a tag moved: for `imagePullPolicy: Always` the registry is asked
//! for the reference's manifest digest (a HEAD; a GET only when the registry
//! sends no `Docker-Content-Digest`), an index is descended to the entry a
//! pull would pick for the platform, and the result is compared with the
//! manifest the local image was pulled as. Only a different digest pulls.
//! Index documents a previous pull stored are read from the store, so an
//! unchanged multi-platform tag costs one HEAD.

use super::credentials::Keyring;
use super::pull::{Asked, Platform, Pulled};
use super::registry::{Registries, Session, MANIFEST_ACCEPT};
use super::store::{digest_hex, hex, read_capped, Store, JSON_LIMIT};
use super::{reference, ImageError};
use serde_json::Value;
use std::path::PathBuf;

/// What `Store::refresh` did.
#[derive(Debug)]
pub enum Refreshed {
    /// The registry has the digest the local image was pulled as.
    Unchanged { manifest: String },
    /// The tag moved (or the image was not from a registry): pulled anew.
    Pulled(Pulled),
}

impl Store {
    /// The platform manifest digest `reference` was pulled as; None when it
    /// is absent or came from an archive.
    pub fn pulled_manifest(&self, reference: &str) -> Result<Option<String>, ImageError> {
        let norm = reference::normalize(reference)?;
        Ok(self.records()?.get(&norm).filter(|r| r.pulled).and_then(|r| r.manifest.clone()))
    }

    /// The recorded size of `reference` (its blobs' bytes), as `Pulled`
    /// Events report it.
    pub fn image_size(&self, reference: &str) -> Result<Option<u64>, ImageError> {
        let norm = reference::normalize(reference)?;
        Ok(self.records()?.get(&norm).map(|r| r.size))
    }

    /// Asks the registry what `reference` points at for `platform` and pulls
    /// only when that is not the manifest it was pulled as. Credentials as
    /// `pull_with` uses them (`keyrings`, then `registries.yaml`), so a
    /// private registry answers the check too. An error from a registry
    /// nobody could reach is `ImageError::Unreachable`.
    pub fn refresh(&self, regs: &Registries, keyrings: &[&Keyring], reference: &str, platform: &Platform) -> Result<Refreshed, ImageError> {
        let local = self.pulled_manifest(reference)?;
        let remote = self.remote_manifest(regs, keyrings, reference, platform)?;
        if local.as_deref() == Some(remote.as_str()) {
            return Ok(Refreshed::Unchanged { manifest: remote });
        }
        log::info!("image {reference}: the registry has {remote}, the local image is {}", local.as_deref().unwrap_or("not from a registry"));
        self.pull_with(regs, keyrings, reference, platform).map(Refreshed::Pulled)
    }

    /// The platform manifest digest the registry has for `reference`, trying
    /// the endpoints, and at each the credentials, in order as `pull_with`
    /// does.
    pub fn remote_manifest(&self, regs: &Registries, keyrings: &[&Keyring], reference: &str, platform: &Platform) -> Result<String, ImageError> {
        super::pull::at_each_endpoint(regs, keyrings, reference, "resolve", |mut s, a| self.remote_from(&mut s, &a, platform))
    }

    fn remote_from(&self, s: &mut Session, a: &Asked, platform: &Platform) -> Result<String, ImageError> {
        let (r, norm, want) = (a.r, a.norm, a.want);
        let resp = s.head(&format!("manifests/{want}"), MANIFEST_ACCEPT)?;
        let header = resp.headers().get("docker-content-digest").and_then(|v| v.to_str().ok()).filter(|d| digest_hex(d).is_some()).map(String::from);
        let mut digest = match header.or_else(|| r.digest.clone()) {
            Some(d) => d,
            // No digest header: the body tells.
            None => self.manifest_doc(s, want, None)?.0,
        };
        for _ in 0..3 {
            let (_, doc) = self.manifest_doc(s, &digest, Some(&digest))?;
            let Some(list) = doc["manifests"].as_array() else { return Ok(digest) };
            digest = pick(list, platform).ok_or_else(|| {
                let offered = list.iter().filter_map(entry_platform).filter(|p| p.os != "unknown").map(|p| p.to_string()).collect();
                ImageError::NoPlatform { archive: PathBuf::from(norm), wanted: platform.to_string(), offered }
            })?;
        }
        Err(ImageError::Registry { url: norm.into(), reason: "indexes nested too deeply".into() })
    }

    /// Manifest `reference` as JSON with its digest: from the store when a
    /// pull kept it, else from the registry (checked against `digest` when
    /// given, not stored: only a pull stores what it fetched).
    fn manifest_doc(&self, s: &mut Session, reference: &str, digest: Option<&str>) -> Result<(String, Value), ImageError> {
        let local = digest.map(|d| self.blob_path(d)).transpose()?.filter(|p| p.is_file());
        let (actual, body, from) = match local {
            Some(p) => (digest.unwrap_or_default().to_string(), read_capped(&p, "manifest")?, p),
            None => {
                let path = format!("manifests/{reference}");
                let url = s.url(&path);
                let mut resp = s.get(&path, MANIFEST_ACCEPT, false)?;
                let body = resp.body_mut().with_config().limit(JSON_LIMIT).read_to_vec().map_err(|e| match e {
                    ureq::Error::BodyExceedsLimit(_) => ImageError::TooLarge { what: "manifest".into(), path: PathBuf::from(&url), limit: JSON_LIMIT },
                    e => ImageError::Registry { url: url.clone(), reason: e.to_string() },
                })?;
                let actual = format!("sha256:{}", hex(ring::digest::digest(&ring::digest::SHA256, &body).as_ref()));
                if let Some(want) = digest.filter(|w| *w != actual) {
                    return Err(ImageError::DigestMismatch { blob: format!("manifest {want}"), archive: PathBuf::from(&url), actual });
                }
                (actual, body, PathBuf::from(url))
            }
        };
        let v = serde_json::from_slice(&body).map_err(|e| ImageError::Json { what: "manifest".into(), path: from, source: e })?;
        Ok((actual, v))
    }
}

fn entry_platform(d: &Value) -> Option<Platform> {
    let p = d["platform"].as_object()?;
    let s = |k: &str| p.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    Some(Platform { os: s("os"), architecture: s("architecture"), variant: Some(s("variant")).filter(|v| !v.is_empty()) })
}

/// The index entry a pull picks for `platform` (the best rank; attestations,
/// `unknown/unknown`, are not images).
fn pick(list: &[Value], platform: &Platform) -> Option<String> {
    list.iter()
        .filter_map(|d| Some((entry_platform(d)?, d["digest"].as_str()?)))
        .filter(|(p, _)| p.os != "unknown")
        .filter_map(|(p, d)| Some((platform.rank(&p)?, d)))
        .min_by_key(|(rank, _)| *rank)
        .map(|(_, d)| d.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_entry_for_the_platform() {
        let list: Vec<Value> = serde_json::from_str(
            r#"[{"digest":"sha256:a","platform":{"os":"linux","architecture":"amd64"}},
                {"digest":"sha256:b","platform":{"os":"linux","architecture":"arm","variant":"v6"}},
                {"digest":"sha256:c","platform":{"os":"linux","architecture":"arm","variant":"v7"}},
                {"digest":"sha256:d","platform":{"os":"unknown","architecture":"unknown"}}]"#,
        )
        .unwrap();
        let p = |s: &str| Platform::parse(s).unwrap();
        assert_eq!(pick(&list, &p("linux/amd64")).as_deref(), Some("sha256:a"));
        assert_eq!(pick(&list, &p("linux/arm/v7")).as_deref(), Some("sha256:c"));
        assert_eq!(pick(&list, &p("linux/arm/v6")).as_deref(), Some("sha256:b"));
        assert_eq!(pick(&list, &p("linux/arm64")), None);
    }
}
