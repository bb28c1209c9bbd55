//! `picolet images pull` against a real registry: Debian's `docker-registry`
//! run as a child process on 127.0.0.1 (plain HTTP, or TLS with a CA made
//! here and htpasswd auth), holding images pushed with skopeo from the test
//! image archives, including a multi-platform index built by hand.

mod common;
use common::*;
use common::registry::{sh, Registry};
use std::path::{Path, PathBuf};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn sha256(b: &[u8]) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, b);
    format!("sha256:{}", d.as_ref().iter().map(|x| format!("{x:02x}")).collect::<String>())
}

/// `picolet images pull ...` with `root` and `registries`; (exit code, stdout, stderr).
fn pull(root: &Path, registries: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_picolet"))
        .args(["images", "pull"])
        .args(args)
        .arg(format!("--root-dir={}", root.display()))
        .arg(format!("--registry-config={}", registries.display()))
        .output()
        .unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

fn list(root: &Path) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_picolet")).args(["images", "list"]).arg(format!("--root-dir={}", root.display())).output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("picolet-pull-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Files under `dir`, recursively.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(files(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

/// A request head as the test proxies below read it (std only, one
/// connection per request).
struct Head {
    method: String,
    path: String,
    lines: Vec<String>,
    /// The rest of the request (a body), after the head.
    body: BufReader<TcpStream>,
}

impl Head {
    fn read(conn: &TcpStream) -> Option<Head> {
        let mut body = BufReader::new(conn.try_clone().ok()?);
        let mut lines = Vec::new();
        loop {
            let mut line = String::new();
            if body.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                break;
            }
            lines.push(line.trim_end().to_string());
        }
        let mut first = lines.first()?.split(' ');
        let (method, path) = (first.next()?.to_string(), first.next().unwrap_or("/").to_string());
        Some(Head { method, path, lines, body })
    }

    fn header(&self, name: &str) -> Option<String> {
        self.lines.iter().skip(1).find_map(|h| {
            let (k, v) = h.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
        })
    }

    /// The registry's whole response to this request (method, path, Accept
    /// and Range passed on).
    fn forward(&self, upstream: u16) -> Vec<u8> {
        let mut up = TcpStream::connect(("127.0.0.1", upstream)).unwrap();
        let accept = self.header("accept").unwrap_or_else(|| "*/*".into());
        let range = self.header("range").map(|v| format!("Range: {v}\r\n")).unwrap_or_default();
        let (method, path) = (&self.method, &self.path);
        write!(up, "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{upstream}\r\nAccept: {accept}\r\n{range}Connection: close\r\n\r\n").unwrap();
        let mut resp = Vec::new();
        up.read_to_end(&mut resp).unwrap();
        resp
    }
}

/// Where a response's body starts.
fn body_at(resp: &[u8]) -> usize {
    resp.windows(4).position(|w| w == b"\r\n\r\n").map_or(0, |i| i + 4)
}

/// Serves each connection to a new loopback port with `handle`, each on a
/// thread of its own; returns the port.
fn serve(handle: impl Fn(TcpStream, Head) + Send + Sync + 'static) -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let handle = std::sync::Arc::new(handle);
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            let handle = handle.clone();
            std::thread::spawn(move || {
                if let Some(head) = Head::read(&conn) {
                    handle(conn, head)
                }
            });
        }
    });
    port
}

/// A registries.yaml sending `127.0.0.1:<port>` to that port over plain HTTP.
fn mirror_config(dir: &Path, port: u16) -> PathBuf {
    let path = dir.join(format!("mirror-{port}.yaml"));
    std::fs::write(&path, format!("mirrors:\n  \"127.0.0.1:{port}\":\n    endpoint: [\"http://127.0.0.1:{port}\"]\n")).unwrap();
    path
}

#[test]
fn pulled_image_runs_in_a_static_pod() {
    let reg = Registry::start("pod", false);
    reg.push_busybox("tools/busybox:1.0");
    let mut p = Picolet::new("pulled-pod");
    let cfg = reg.config(None);
    let image = format!("{}/tools/busybox:1.0", reg.host());
    let (code, out, err) = pull(&p.root, &cfg, &[&image]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(&format!("pulled {image}")) && out.contains("1 layers fetched"), "{out}");
    // Pulled again: nothing downloaded.
    let (code, out, err) = pull(&p.root, &cfg, &[&image]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("0 layers fetched") && out.contains("1 already present"), "{out}");
    assert!(list(&p.root).contains(&image));
    // By digest, as `image: name@sha256:...` is written.
    let digest = out.split("manifest ").nth(1).and_then(|r| r.split(')').next()).unwrap().to_string();
    let by_digest = format!("{}/tools/busybox@{digest}", reg.host());
    let (code, out, err) = pull(&p.root, &cfg, &[&by_digest]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(&format!("pulled {by_digest}")), "{out}");
    assert!(list(&p.root).contains(&by_digest));
    // A Docker schema 2 manifest (what `docker push` writes).
    reg.push_with(&format!("docker-archive:{}", images_dir().join("busybox-docker.tar").display()), "tools/busybox:docker", false, &["--format", "v2s2"]);
    let docker = format!("{}/tools/busybox:docker", reg.host());
    let (code, out, err) = pull(&p.root, &cfg, &[&docker]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(&format!("pulled {docker}")), "{out}");
    p.write_manifest(
        "pulled.yaml",
        &format!("apiVersion: v1\nkind: Pod\nmetadata: {{name: pulled}}\nspec:\n  containers: [{{name: c, image: '{image}', command: [sh, -c, 'echo pulled image runs; exec sleep 1000']}}]\n"),
    );
    p.start();
    let pod = p.wait_pod("pulled", "Running", |q| running(q, "c"));
    assert_eq!(container(&pod, "c")["image"], image.as_str());
    p.wait_log(&pod, "c", 0, "pulled image runs");
}

/// Builds an OCI layout holding an index with linux/amd64, linux/arm64 and
/// linux/arm/v7 entries (all sharing busybox's layer, each with its own
/// config); returns the layout dir and each platform's config digest.
fn multi_arch_layout(dir: &Path) -> (PathBuf, Vec<(&'static str, String)>) {
    let layout = dir.join("layout");
    std::fs::create_dir_all(&layout).unwrap();
    sh(&format!("tar -C {} -xf {}", layout.display(), images_dir().join("busybox.tar").display()));
    let blob = |d: &str| layout.join("blobs/sha256").join(d.trim_start_matches("sha256:"));
    let write_blob = |bytes: &[u8]| {
        let d = sha256(bytes);
        std::fs::write(blob(&d), bytes).unwrap();
        (d, bytes.len())
    };
    let index: serde_json::Value = serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let mdigest = index["manifests"][0]["digest"].as_str().unwrap().to_string();
    let manifest: serde_json::Value = serde_json::from_slice(&std::fs::read(blob(&mdigest)).unwrap()).unwrap();
    let config: serde_json::Value = serde_json::from_slice(&std::fs::read(blob(manifest["config"]["digest"].as_str().unwrap())).unwrap()).unwrap();
    let mut entries = Vec::new();
    let mut configs = Vec::new();
    for (name, arch, variant) in [("linux/amd64", "amd64", None), ("linux/arm64", "arm64", None), ("linux/arm/v7", "arm", Some("v7"))] {
        let mut c = config.clone();
        c["architecture"] = arch.into();
        if let Some(v) = variant {
            c["variant"] = v.into();
        }
        let (cd, cs) = write_blob(&serde_json::to_vec(&c).unwrap());
        let mut m = manifest.clone();
        m["config"]["digest"] = cd.clone().into();
        m["config"]["size"] = cs.into();
        let (md, ms) = write_blob(&serde_json::to_vec(&m).unwrap());
        let mut plat = serde_json::json!({"os": "linux", "architecture": arch});
        if let Some(v) = variant {
            plat["variant"] = v.into();
        }
        entries.push(serde_json::json!({"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": md, "size": ms, "platform": plat}));
        configs.push((name, cd));
    }
    let idx = serde_json::json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": entries});
    let (id, is) = write_blob(&serde_json::to_vec(&idx).unwrap());
    let top = serde_json::json!({"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.index.v1+json", "digest": id, "size": is,
        "annotations": {"org.opencontainers.image.ref.name": "multi"}}]});
    std::fs::write(layout.join("index.json"), serde_json::to_vec(&top).unwrap()).unwrap();
    (layout, configs)
}

#[test]
fn multi_arch_index_picks_the_platform() {
    let reg = Registry::start("multi", false);
    let dir = scratch("multi");
    let (layout, configs) = multi_arch_layout(&dir);
    reg.push(&format!("oci:{}:multi", layout.display()), "multi/busybox:v1", true);
    let cfg = reg.config(None);
    let image = format!("{}/multi/busybox:v1", reg.host());
    let id = |p: &str| configs.iter().find(|(n, _)| *n == p).unwrap().1.trim_start_matches("sha256:")[..12].to_string();

    // This machine's platform by default.
    let host = match std::env::consts::ARCH {
        "x86_64" => "linux/amd64",
        "aarch64" => "linux/arm64",
        _ => "linux/arm/v7",
    };
    let root = dir.join("root");
    let (code, out, err) = pull(&root, &cfg, &[&image]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(&format!("for {host}")) && out.contains(&id(host)), "{out}");

    // --platform picks another entry (the layer is shared, so nothing is fetched).
    let (code, out, err) = pull(&root, &cfg, &["--platform", "linux/arm/v7", &image]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("for linux/arm/v7") && out.contains(&id("linux/arm/v7")), "{out}");
    assert!(out.contains("0 layers fetched"), "the layer is shared: {out}");
    assert!(list(&root).contains(&id("linux/arm/v7")));

    for missing in ["linux/s390x", "linux/arm/v6"] {
        let (code, _, err) = pull(&root, &cfg, &["--platform", missing, &image]);
        assert_eq!(code, 1, "{err}");
        eprintln!("{err}");
        assert!(
            err.contains(&format!("no image for {missing}")) && err.contains("offered: linux/amd64, linux/arm64, linux/arm/v7"),
            "{err}"
        );
    }
    let (code, _, err) = pull(&root, &cfg, &["--platform", "arm", &image]);
    assert_eq!(code, 1);
    assert!(err.contains("--platform") && err.contains("os/arch"), "{err}");
    cleanup(&root);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn basic_auth_over_tls_with_our_own_ca() {
    let reg = Registry::start("auth", true);
    reg.push_busybox("private/busybox:v1");
    let image = format!("{}/private/busybox:v1", reg.host());
    let root = scratch("auth");

    let (code, _, err) = pull(&root, &reg.config(None), &[&image]);
    assert_eq!(code, 1);
    eprintln!("{err}");
    assert!(err.contains("401") && err.contains("username and password"), "{err}");

    let wrong = reg.config(Some("wrong"));
    let (code, _, err) = pull(&root, &wrong, &[&image]);
    assert_eq!(code, 1);
    eprintln!("{err}");
    assert!(err.contains("401") && err.contains("authentication failed") && err.contains(wrong.to_str().unwrap()), "{err}");
    assert!(!list(&root).contains(&image));

    let (code, out, err) = pull(&root, &reg.config(Some("s3cret")), &[&image]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(&format!("pulled {image}")) && out.contains(&format!("from https://{}", reg.host())), "{out}");
    assert!(list(&root).contains(&image));

    // Without our CA the certificate is not trusted.
    let no_ca = reg.dir.join("no-ca.yaml");
    std::fs::write(&no_ca, format!("configs:\n  \"{}\":\n    auth: {{username: pi, password: s3cret}}\n", reg.host())).unwrap();
    let (code, _, err) = pull(&root, &no_ca, &[&image]);
    assert_eq!(code, 1);
    eprintln!("{err}");
    assert!(err.to_lowercase().contains("certificate"), "{err}");
    // ... unless verification is switched off.
    let insecure = reg.dir.join("insecure.yaml");
    std::fs::write(&insecure, format!("configs:\n  \"{}\":\n    auth: {{username: pi, password: s3cret}}\n    tls: {{insecure_skip_verify: true}}\n", reg.host())).unwrap();
    let (code, _, err) = pull(&root, &insecure, &[&image]);
    assert_eq!(code, 0, "{err}");
    cleanup(&root);
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn blob_with_the_wrong_digest_is_refused_and_nothing_half_written_stays() {
    let reg = Registry::start("corrupt", false);
    reg.push_busybox("bad/busybox:v1");
    // The layer is the registry's biggest blob: flip one byte in the middle.
    let blobs = files(&reg.dir.join("data/docker/registry/v2/blobs"));
    let layer = blobs.iter().max_by_key(|p| std::fs::metadata(p).unwrap().len()).unwrap().clone();
    let digest = format!("sha256:{}", layer.parent().unwrap().file_name().unwrap().to_str().unwrap());
    let mut bytes = std::fs::read(&layer).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&layer, &bytes).unwrap();

    let root = scratch("corrupt");
    let image = format!("{}/bad/busybox:v1", reg.host());
    let (code, _, err) = pull(&root, &reg.config(None), &[&image]);
    assert_eq!(code, 1);
    eprintln!("{err}");
    assert!(err.contains("sha256 mismatch") && err.contains(&digest), "{err}");
    let store = root.join("images-store");
    assert!(!store.join("blobs/sha256").join(&digest[7..]).exists(), "the bad layer is not in the store");
    assert_eq!(files(&store.join("tmp")), Vec::<PathBuf>::new(), "no temp file left");
    assert!(std::fs::read_dir(store.join("layers")).unwrap().next().is_none(), "no layer unpacked");
    assert!(!list(&root).contains(&image));
    let _ = std::fs::remove_dir_all(&root);
}

/// What the test proxy in front of a registry does.
#[derive(Clone, Copy, PartialEq)]
enum Fault {
    /// Asks for a Bearer token (its own `/token` realm) and forwards only
    /// requests carrying it.
    Bearer,
    /// Answers manifests with 5 MiB of JSON-looking bytes, no Content-Length.
    HugeManifest,
    /// Forwards, but cuts blobs over 64 KiB (the layer) off halfway.
    TruncatedBlob,
    /// Answers 500 to everything.
    ServerError,
}

/// A tiny HTTP/1.1 proxy (std only, one connection per request) in front of
/// a registry, misbehaving as told; records the token requests it saw.
struct Proxy {
    port: u16,
    seen: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Proxy {
    fn start(upstream: u16, fault: Fault) -> Proxy {
        let seen: std::sync::Arc<std::sync::Mutex<Vec<String>>> = Default::default();
        let log = seen.clone();
        // The Bearer challenge names the proxy's own token endpoint.
        let me = std::sync::Arc::new(std::sync::OnceLock::<u16>::new());
        let me2 = me.clone();
        let port = serve(move |mut conn, mut h| {
            let reply = |conn: &mut TcpStream, status: &str, extra: &str, body: &[u8]| {
                let _ = write!(conn, "HTTP/1.1 {status}\r\n{extra}Content-Length: {}\r\nConnection: close\r\n\r\n", body.len());
                let _ = conn.write_all(body);
            };
            let path = h.path.clone();
            if fault == Fault::ServerError {
                return reply(&mut conn, "500 Internal Server Error", "", b"oops");
            }
            if fault == Fault::Bearer {
                if path.starts_with("/token") && h.method == "POST" {
                    // OAuth2 refresh-token grant (an `identitytoken`).
                    let n: usize = h.header("content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
                    let mut body = vec![0; n];
                    let _ = h.body.read_exact(&mut body);
                    log.lock().unwrap().push(format!("POST {}", String::from_utf8_lossy(&body)));
                    return reply(&mut conn, "200 OK", "Content-Type: application/json\r\n", br#"{"access_token":"tok-123"}"#);
                }
                if path.starts_with("/token") {
                    log.lock().unwrap().push(format!("{path} auth={}", h.header("authorization").unwrap_or_default()));
                    return reply(&mut conn, "200 OK", "Content-Type: application/json\r\n", br#"{"token":"tok-123","expires_in":300}"#);
                }
                if h.header("authorization").as_deref() != Some("Bearer tok-123") {
                    let name = path.trim_start_matches("/v2/").split("/manifests/").next().unwrap_or("").split("/blobs/").next().unwrap_or("");
                    let port = me2.get().copied().unwrap_or(0);
                    let challenge =
                        format!("WWW-Authenticate: Bearer realm=\"http://127.0.0.1:{port}/token\",service=\"picolet-test\",scope=\"repository:{name}:pull\"\r\n");
                    return reply(&mut conn, "401 Unauthorized", &challenge, br#"{"errors":[{"code":"UNAUTHORIZED","message":"token please"}]}"#);
                }
            }
            if fault == Fault::HugeManifest && path.contains("/manifests/") {
                let _ = write!(conn, "HTTP/1.1 200 OK\r\nContent-Type: application/vnd.oci.image.manifest.v1+json\r\nConnection: close\r\n\r\n");
                let chunk = vec![b' '; 64 << 10];
                for _ in 0..80 {
                    if conn.write_all(&chunk).is_err() {
                        return;
                    }
                }
                return;
            }
            let resp = h.forward(upstream);
            let at = body_at(&resp);
            // The layer, not the config: a big download broken off.
            if fault == Fault::TruncatedBlob && path.contains("/blobs/") && resp.len() - at > 64 << 10 {
                let _ = conn.write_all(&resp[..at + (resp.len() - at) / 2]);
                return;
            }
            let _ = conn.write_all(&resp);
        });
        me.set(port).unwrap();
        Proxy { port, seen }
    }

    /// registries.yaml sending `127.0.0.1:<proxy port>` to the proxy over HTTP.
    fn config(&self, dir: &Path) -> PathBuf {
        mirror_config(dir, self.port)
    }
}

#[test]
fn bearer_token_challenge_is_answered() {
    let reg = Registry::start("bearer", false);
    reg.push_busybox("tok/busybox:v1");
    let proxy = Proxy::start(reg.port, Fault::Bearer);
    let root = scratch("bearer");
    let image = format!("127.0.0.1:{}/tok/busybox:v1", proxy.port);
    let (code, out, err) = pull(&root, &proxy.config(&root), &[&image]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(&format!("pulled {image}")), "{out}");
    let seen = proxy.seen.lock().unwrap().clone();
    assert!(!seen.is_empty(), "a token was asked for");
    assert!(seen.iter().all(|s| s.contains("service=picolet-test") && s.contains("scope=repository%3Atok%2Fbusybox%3Apull") && s.ends_with("auth=")), "{seen:?}");

    // With an identitytoken, the token comes from the OAuth2 refresh-token grant.
    proxy.seen.lock().unwrap().clear();
    let cfg = root.join("identity.yaml");
    let p = proxy.port;
    std::fs::write(&cfg, format!("mirrors:\n  \"127.0.0.1:{p}\":\n    endpoint: [\"http://127.0.0.1:{p}\"]\nconfigs:\n  \"127.0.0.1:{p}\":\n    auth: {{identitytoken: refresh-me}}\n")).unwrap();
    let root2 = root.join("again");
    let (code, _, err) = pull(&root2, &cfg, &[&image]);
    assert_eq!(code, 0, "{err}");
    let seen = proxy.seen.lock().unwrap().clone();
    assert!(!seen.is_empty() && seen.iter().all(|s| s.starts_with("POST grant_type=refresh_token") && s.contains("refresh_token=refresh-me") && s.contains("service=picolet-test")), "{seen:?}");
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn misbehaving_registries_give_clear_errors_and_a_clean_store() {
    let reg = Registry::start("faults", false);
    reg.push_busybox("f/busybox:v1");
    for (fault, want) in [
        (Fault::HugeManifest, "larger than 4194304 bytes"),
        (Fault::TruncatedBlob, "cut off after"),
        (Fault::ServerError, "500 Internal Server Error"),
    ] {
        let proxy = Proxy::start(reg.port, fault);
        let root = scratch("faults");
        let image = format!("127.0.0.1:{}/f/busybox:v1", proxy.port);
        let (code, _, err) = pull(&root, &proxy.config(&root), &[&image]);
        eprintln!("{err}");
        assert_eq!(code, 1, "{err}");
        assert!(err.contains(want), "{err}");
        let store = root.join("images-store");
        assert_eq!(files(&store.join("tmp")), Vec::<PathBuf>::new(), "no temp file left");
        assert!(std::fs::read_dir(store.join("layers")).unwrap().next().is_none(), "no layer unpacked");
        assert!(!list(&root).contains(&image));
        let _ = std::fs::remove_dir_all(&root);
    }
}

/// Pods pull what the store lacks: two pods wanting the same new image share
/// one download; an image the registry does not have is ErrImagePull, then
/// ImagePullBackOff.
#[test]
fn pods_pull_their_images_once_and_back_off_on_failure() {
    let reg = Registry::start("podpull", false);
    reg.push_busybox("tools/busybox:2.0");
    let mut p = Picolet::new("podpull");
    p.extra_args.push(format!("--registry-config={}", reg.config(None).display()));
    let image = format!("{}/tools/busybox:2.0", reg.host());
    for name in ["one", "two"] {
        p.write_manifest(
            &format!("{name}.yaml"),
            &format!("apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}}}\nspec:\n  containers: [{{name: c, image: '{image}', command: [sh, -c, 'echo {name} runs; exec sleep 1000']}}]\n"),
        );
    }
    p.start();
    for name in ["one", "two"] {
        let pod = p.wait_pod(name, "Running", |q| running(q, "c"));
        assert_eq!(container(&pod, "c")["image"], image.as_str());
        p.wait_log(&pod, "c", 0, &format!("{name} runs"));
    }
    let log = p.picolet_log();
    assert_eq!(log.matches(&format!("pulling image {image}")).count(), 1, "{log}");
    assert_eq!(log.matches(&format!("pulled image {image}")).count(), 1, "{log}");

    let missing = format!("{}/tools/nope:1.0", reg.host());
    p.write_manifest(
        "missing.yaml",
        &format!("apiVersion: v1\nkind: Pod\nmetadata: {{name: missing}}\nspec:\n  containers: [{{name: c, image: '{missing}', command: [sleep, '1000']}}]\n"),
    );
    let pod = p.wait_pod("missing", "ImagePullBackOff", |q| container(q, "c")["state"]["waiting"]["reason"] == "ImagePullBackOff");
    let msg = container(&pod, "c")["state"]["waiting"]["message"].as_str().unwrap_or("").to_string();
    assert!(msg.contains("Back-off pulling image") && msg.contains(&missing), "{msg}");
    let log = p.picolet_log();
    assert!(log.contains("container c: ErrImagePull"), "{log}");
    assert_eq!(common::phase(&pod), "Pending");
}

// ---- creds: the node's credentials file (`<root-dir>/config.json`) ----

/// `<root-dir>/config.json` in docker's format for `reg` with `password`.
fn node_credentials(root: &Path, reg: &Registry, password: &str) {
    let auth = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, format!("pi:{password}"));
    std::fs::create_dir_all(root).unwrap();
    std::fs::write(root.join("config.json"), format!("{{\"auths\": {{\"https://{}/v1/\": {{\"auth\": \"{auth}\"}}}}}}", reg.host())).unwrap();
}

/// Static pods have no imagePullSecrets: the node's credentials file gives
/// them (and `images pull`) access to a private registry; wrong credentials
/// are ErrImagePull naming the 401 and the file, and a corrected file is
/// read at the next try.
#[test]
fn node_credentials_file_opens_a_private_registry_to_static_pods() {
    let reg = Registry::start("nodecreds", true);
    reg.push_busybox("private/busybox:node");
    let image = format!("{}/private/busybox:node", reg.host());
    // registries.yaml trusts the CA and has no credentials.
    let ca_only = reg.config(None);

    // `images pull` reads the same file.
    let root = scratch("nodecreds-cli");
    let (code, _, err) = pull(&root, &ca_only, &[&image]);
    assert_eq!(code, 1);
    assert!(err.contains("401") && err.contains("imagePullSecret"), "{err}");
    node_credentials(&root, &reg, "s3cret");
    let (code, out, err) = pull(&root, &ca_only, &[&image]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(&format!("pulled {image}")), "{out}");
    std::fs::write(root.join("config.json"), r#"{"auths": {"x": {"auth": "pi:s3cret"}}}"#).unwrap();
    let (code, _, err) = pull(&root, &ca_only, &[&image]);
    assert_eq!(code, 1);
    let file = root.join("config.json");
    assert!(err.contains(&format!("registry credentials in {}: auths.\"x\".auth: not base64", file.display())), "{err}");
    assert!(!err.contains("s3cret"), "{err}");
    cleanup(&root);
    let _ = std::fs::remove_dir_all(&root);

    let mut p = Picolet::new("nodecreds");
    p.extra_args.push(format!("--registry-config={}", ca_only.display()));
    node_credentials(&p.root, &reg, "wrong");
    p.write_manifest(
        "private.yaml",
        &format!("apiVersion: v1\nkind: Pod\nmetadata: {{name: private}}\nspec:\n  containers: [{{name: c, image: '{image}', command: [sh, -c, 'echo private image runs; exec sleep 1000']}}]\n"),
    );
    p.start();
    let file = p.root.join("config.json");
    let pod = p.wait_pod("private", "ErrImagePull", |q| {
        let reason = &container(q, "c")["state"]["waiting"]["reason"];
        reason == "ErrImagePull" || reason == "ImagePullBackOff"
    });
    let msg = container(&pod, "c")["state"]["waiting"]["message"].as_str().unwrap_or("").to_string();
    eprintln!("{msg}");
    assert!(msg.contains("401") && msg.contains(&format!("authentication failed, check the credentials in {}", file.display())), "{msg}");

    node_credentials(&p.root, &reg, "s3cret");
    let pod = p.wait_pod("private", "Running", |q| running(q, "c"));
    p.wait_log(&pod, "c", 0, "private image runs");
    let log = p.picolet_log();
    let basic = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, "pi:s3cret");
    assert!(!log.contains("s3cret") && !log.contains(&basic), "credentials in the log:\n{log}");
}

// --- policy: imagePullPolicy Always, serializeImagePulls / maxParallelImagePulls ---

/// busybox's OCI layout with `VERSION=<version>` added to its config's Env:
/// another image (config and manifest digests differ) on busybox's layer.
fn versioned_layout(dir: &Path, version: &str) -> PathBuf {
    let layout = dir.join(format!("layout-{version}"));
    std::fs::create_dir_all(&layout).unwrap();
    sh(&format!("tar -C {} -xf {}", layout.display(), images_dir().join("busybox.tar").display()));
    let blob = |d: &str| layout.join("blobs/sha256").join(d.trim_start_matches("sha256:"));
    let write_blob = |bytes: &[u8]| {
        let d = sha256(bytes);
        std::fs::write(blob(&d), bytes).unwrap();
        (d, bytes.len())
    };
    let mut index: serde_json::Value = serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let mdigest = index["manifests"][0]["digest"].as_str().unwrap().to_string();
    let mut manifest: serde_json::Value = serde_json::from_slice(&std::fs::read(blob(&mdigest)).unwrap()).unwrap();
    let mut config: serde_json::Value = serde_json::from_slice(&std::fs::read(blob(manifest["config"]["digest"].as_str().unwrap())).unwrap()).unwrap();
    let env = config["config"]["Env"].as_array().cloned().unwrap_or_default();
    config["config"]["Env"] = env.into_iter().chain([serde_json::Value::from(format!("VERSION={version}"))]).collect();
    let (cd, cs) = write_blob(&serde_json::to_vec(&config).unwrap());
    manifest["config"]["digest"] = cd.into();
    manifest["config"]["size"] = cs.into();
    let (md, ms) = write_blob(&serde_json::to_vec(&manifest).unwrap());
    index["manifests"][0]["digest"] = md.into();
    index["manifests"][0]["size"] = ms.into();
    std::fs::write(layout.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
    layout
}

/// Pod `app` running `image` (restartPolicy Always): its container prints
/// `version=$VERSION` and exits when the test creates `<gate>/go` (which it
/// removes). Returns the gate directory.
fn gated_app(p: &Picolet, image: &str) -> PathBuf {
    let gate = p.base.join("gate");
    std::fs::create_dir_all(&gate).unwrap();
    p.write_manifest(
        "app.yaml",
        &format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: app}}\nspec:\n  volumes: [{{name: gate, hostPath: {{path: '{}'}}}}]\n  \
             containers: [{{name: c, image: '{image}', volumeMounts: [{{name: gate, mountPath: /gate}}],\n    \
             command: [sh, -c, 'echo version=$VERSION; until [ -e /gate/go ]; do sleep 0.1; done; rm /gate/go']}}]\n",
            gate.display()
        ),
    );
    gate
}

/// `imagePullPolicy: Always` (the default of an untagged image): a tag pushed
/// again reaches the restarted container; with the registry gone, the next
/// restart runs the local image and picolet says why.
#[test]
fn always_follows_a_moved_tag_and_falls_back_to_the_local_image_offline() {
    let mut reg = Registry::start("always", false);
    let dir = scratch("always");
    reg.push(&format!("oci:{}", versioned_layout(&dir, "v1").display()), "moved/app:latest", false);
    let mut p = Picolet::new("always");
    p.extra_args.push(format!("--registry-config={}", reg.config(None).display()));
    let image = format!("{}/moved/app", reg.host());
    let gate = gated_app(&p, &image);
    p.start();
    let pod = p.wait_pod("app", "Running", |q| running(q, "c"));
    assert_eq!(pod["spec"]["containers"][0]["imagePullPolicy"], "Always");
    p.wait_log(&pod, "c", 0, "version=v1");
    let norm = format!("{image}:latest");
    let log = p.picolet_log();
    assert_eq!(log.matches(&format!("pulling image {norm}")).count(), 1, "{log}");

    // The tag moves; the container ends and restarts with the new image.
    reg.push(&format!("oci:{}", versioned_layout(&dir, "v2").display()), "moved/app:latest", false);
    std::fs::write(gate.join("go"), "").unwrap();
    p.wait_log(&pod, "c", 1, "version=v2");
    let log = p.picolet_log();
    assert!(log.contains(&format!("checking image {norm} at its registry (imagePullPolicy Always)")), "{log}");
    assert!(log.contains(&format!("image {image}: the registry has sha256:")), "{log}");
    assert_eq!(log.matches(&format!("pulled image {norm}")).count(), 2, "{log}");

    // Another pod with the image: the registry still has v2, nothing is pulled.
    p.write_manifest(
        "same.yaml",
        &format!("apiVersion: v1\nkind: Pod\nmetadata: {{name: same}}\nspec:\n  containers: [{{name: c, image: '{image}', command: [sh, -c, 'echo version=$VERSION; exec sleep 1000']}}]\n"),
    );
    let same = p.wait_pod("same", "Running", |q| running(q, "c"));
    p.wait_log(&same, "c", 0, "version=v2");
    let log = p.picolet_log();
    assert!(log.contains(&format!("image {norm} unchanged at its registry (sha256:")), "{log}");
    assert_eq!(log.matches(&format!("pulled image {norm}")).count(), 2, "{log}");

    // No registry: the next restart runs the local (v2) image, with a warning.
    reg.stop();
    std::fs::write(gate.join("go"), "").unwrap();
    p.wait_log(&pod, "c", 2, "version=v2");
    let log = p.picolet_log();
    let warning = log.lines().find(|l| l.contains(&format!("image {norm}: no registry reachable, using the local image: "))).unwrap_or_else(|| panic!("{log}"));
    eprintln!("{warning}");
    assert!(warning.contains(&format!("http://{}/v2/moved/app/manifests/latest", reg.host())) && warning.to_lowercase().contains("connection refused"), "{warning}");
    assert_eq!(log.matches(&format!("pulled image {norm}")).count(), 2, "{log}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A proxy in front of a registry that records every request line in order
/// and holds blob requests until `open` (then forwards them); with `answer`
/// set it answers every request with that status line itself.
struct Gate {
    port: u16,
    seen: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    open: std::sync::Arc<(std::sync::Mutex<bool>, std::sync::Condvar)>,
    answer: std::sync::Arc<std::sync::Mutex<Option<&'static str>>>,
}

impl Gate {
    fn start(upstream: u16) -> Gate {
        let (seen, open, answer): (std::sync::Arc<std::sync::Mutex<Vec<String>>>, std::sync::Arc<(std::sync::Mutex<bool>, std::sync::Condvar)>, std::sync::Arc<std::sync::Mutex<Option<&'static str>>>) =
            Default::default();
        let (seen2, open2, answer2) = (seen.clone(), open.clone(), answer.clone());
        let port = serve(move |mut conn, h| {
            seen2.lock().unwrap().push(format!("{} {}", h.method, h.path));
            let status = *answer2.lock().unwrap();
            if let Some(status) = status {
                let body = br#"{"errors":[{"code":"UNAVAILABLE","message":"told to fail"}]}"#;
                let _ = write!(conn, "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len());
                if h.method != "HEAD" {
                    let _ = conn.write_all(body);
                }
                return;
            }
            if h.path.contains("/blobs/") {
                let (lock, cv) = &*open2;
                let _g = cv.wait_while(lock.lock().unwrap(), |o| !*o).unwrap();
            }
            let _ = conn.write_all(&h.forward(upstream));
        });
        Gate { port, seen, open, answer }
    }

    fn open(&self) {
        *self.open.0.lock().unwrap() = true;
        self.open.1.notify_all();
    }

    fn seen(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }

    fn config(&self, dir: &Path) -> PathBuf {
        mirror_config(dir, self.port)
    }
}

impl Drop for Gate {
    fn drop(&mut self) {
        self.open();
    }
}

/// A registry holding `<name>/one:v1` and `<name>/two:v1`, a closed gate
/// in front of it, and a picolet (with `extra` args) whose pods `one` and
/// `two` want one image each through the gate. The images differ from the
/// busybox the store has by their configs, so each pull fetches a blob.
fn two_images_behind_a_gate(name: &str, extra: &[String]) -> (Registry, Gate, Picolet) {
    let reg = Registry::start(name, false);
    let dir = scratch(name);
    for repo in ["one", "two"] {
        reg.push(&format!("oci:{}", versioned_layout(&dir, repo).display()), &format!("{name}/{repo}:v1"), false);
    }
    let _ = std::fs::remove_dir_all(&dir);
    let gate = Gate::start(reg.port);
    let mut p = Picolet::new(name);
    p.extra_args.push(format!("--registry-config={}", gate.config(&p.base).display()));
    p.extra_args.extend(extra.iter().cloned());
    for repo in ["one", "two"] {
        p.write_manifest(
            &format!("{repo}.yaml"),
            &format!(
                "apiVersion: v1\nkind: Pod\nmetadata: {{name: {repo}}}\nspec:\n  containers: [{{name: c, image: '127.0.0.1:{}/{name}/{repo}:v1', command: [sleep, '1000']}}]\n",
                gate.port
            ),
        );
    }
    p.start();
    (reg, gate, p)
}

/// serializeImagePulls (the default): while the first image's blobs are held
/// at the gate, the second pull waits in the queue and its registry sees
/// nothing of it; once released, the second follows the first.
#[test]
fn serialized_pulls_fetch_one_image_after_the_other() {
    let (_reg, gate, p) = two_images_behind_a_gate("serial", &[]);
    let repo_of = |req: &str| ["one", "two"].into_iter().find(|r| req.contains(&format!("/v2/serial/{r}/")));
    p.wait_until("a blob request held at the gate", || gate.seen().iter().any(|r| r.contains("/blobs/")));
    let first = repo_of(gate.seen().iter().find(|r| r.contains("/blobs/")).unwrap()).unwrap();
    let second = if first == "one" { "two" } else { "one" };
    let queued = format!("pull of image 127.0.0.1:{}/serial/{second}:v1 queued: 1 running, at most 1 at once", gate.port);
    p.wait_until("the second pull queued", || p.picolet_log().contains(&queued));
    let pod = p.pod(second).unwrap();
    assert_eq!(container(&pod, "c")["state"]["waiting"]["reason"], "ContainerCreating", "{pod}");
    let seen = gate.seen();
    assert!(seen.iter().all(|r| repo_of(r) == Some(first)), "only {first} asked for while it is pulled: {seen:?}");

    gate.open();
    for name in ["one", "two"] {
        p.wait_pod(name, "Running", |q| running(q, "c"));
    }
    let seen = gate.seen();
    let last_first = seen.iter().rposition(|r| repo_of(r) == Some(first)).unwrap();
    let first_second = seen.iter().position(|r| repo_of(r) == Some(second)).unwrap();
    assert!(last_first < first_second, "{second} after {first}: {seen:?}");
}

/// maxParallelImagePulls: 2 (serializeImagePulls then defaults to false, as
/// upstream): both images are in flight at once, both held at the gate.
#[test]
fn two_parallel_pulls_are_in_flight_at_once() {
    let dir = scratch("parallel-config");
    let cfg = dir.join("kubelet.yaml");
    std::fs::write(&cfg, "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\nmaxParallelImagePulls: 2\n").unwrap();
    let (_reg, gate, p) = two_images_behind_a_gate("parallel", &[format!("--config={}", cfg.display())]);
    let held = |repo: &str| gate.seen().iter().any(|r| r.starts_with(&format!("GET /v2/parallel/{repo}/blobs/")));
    p.wait_until("blob requests of both images held at the gate", || held("one") && held("two"));
    assert!(!p.picolet_log().contains("queued"), "{}", p.picolet_log());
    gate.open();
    for name in ["one", "two"] {
        p.wait_pod(name, "Running", |q| running(q, "c"));
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Always through a gateway: a 503 (a proxy whose registry is down) counts
/// as unreachable and the local image runs; a 500 is the registry answering,
/// so the pull fails as upstream's does (ErrImagePull), no fallback.
#[test]
fn always_falls_back_only_when_no_registry_answers() {
    let reg = Registry::start("gateway", false);
    let dir = scratch("gateway");
    reg.push(&format!("oci:{}", versioned_layout(&dir, "v1").display()), "edge/app:latest", false);
    let gate = Gate::start(reg.port);
    gate.open();
    let mut p = Picolet::new("gateway");
    p.extra_args.push(format!("--registry-config={}", gate.config(&p.base).display()));
    let go = p.base.join("gate");
    std::fs::create_dir_all(&go).unwrap();
    let image = format!("127.0.0.1:{}/edge/app:latest", gate.port);
    p.write_manifest(
        "app.yaml",
        &format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: app}}\nspec:\n  volumes: [{{name: gate, hostPath: {{path: '{}'}}}}]\n  \
             containers: [{{name: c, image: '{image}', volumeMounts: [{{name: gate, mountPath: /gate}}],\n    \
             command: [sh, -c, 'echo version=$VERSION; until [ -e /gate/go ]; do sleep 0.1; done; rm /gate/go']}}]\n",
            go.display()
        ),
    );
    p.start();
    let pod = p.wait_pod("app", "Running", |q| running(q, "c"));
    assert_eq!(pod["spec"]["containers"][0]["imagePullPolicy"], "Always");
    p.wait_log(&pod, "c", 0, "version=v1");

    *gate.answer.lock().unwrap() = Some("503 Service Unavailable");
    std::fs::write(go.join("go"), "").unwrap();
    p.wait_log(&pod, "c", 1, "version=v1");
    let log = p.picolet_log();
    assert!(log.contains(&format!("image {image}: no registry reachable, using the local image: ")) && log.contains("503 Service Unavailable"), "{log}");

    *gate.answer.lock().unwrap() = Some("500 Internal Server Error");
    std::fs::write(go.join("go"), "").unwrap();
    let failed = format!("container c: ErrImagePull: http://127.0.0.1:{}/v2/edge/app/manifests/latest: 500 Internal Server Error", gate.port);
    p.wait_until("the restart's pull to fail", || p.picolet_log().contains(&failed));
    assert_eq!(p.picolet_log().matches("no registry reachable").count(), 1);
    assert!(!p.log_dir(&pod, "c").join("2.log").exists(), "no start without the registry's answer");
    let _ = std::fs::remove_dir_all(&dir);
}

// --- after the merge: Always against a private registry ---

/// `imagePullPolicy: Always` asks a private registry with the credentials
/// pulls use (here the node's file; the registries.yaml holds only the CA):
/// each restart's HEAD is answered, a tag pushed again reaches the next
/// restart, an unchanged one runs as it is. Wrong credentials are the
/// registry's refusal, ErrImagePull naming the file, never the offline
/// fall-back to the local image.
#[test]
fn always_asks_a_private_registry_with_the_node_credentials() {
    let reg = Registry::start("alwayscreds", true);
    let dir = scratch("alwayscreds");
    let push = |version: &str| reg.push(&format!("oci:{}", versioned_layout(&dir, version).display()), "private/app:latest", false);
    push("v1");
    let mut p = Picolet::new("alwayscreds");
    p.extra_args.push(format!("--registry-config={}", reg.config(None).display()));
    node_credentials(&p.root, &reg, "s3cret");
    let image = format!("{}/private/app:latest", reg.host());
    let gate = gated_app(&p, &image);
    p.start();
    let pod = p.wait_pod("app", "Running", |q| running(q, "c"));
    assert_eq!(pod["spec"]["containers"][0]["imagePullPolicy"], "Always");
    p.wait_log(&pod, "c", 0, "version=v1");

    // The tag moves: the restart's authenticated HEAD sees it, the pull follows.
    push("v2");
    std::fs::write(gate.join("go"), "").unwrap();
    p.wait_log(&pod, "c", 1, "version=v2");
    // Unchanged: the next restart runs it after one answered HEAD.
    std::fs::write(gate.join("go"), "").unwrap();
    p.wait_log(&pod, "c", 2, "version=v2");
    let log = p.picolet_log();
    assert_eq!(log.matches(&format!("checking image {image} at its registry (imagePullPolicy Always)")).count(), 2, "{log}");
    assert!(log.contains(&format!("image {image} unchanged at its registry (sha256:")), "{log}");
    assert_eq!(log.matches(&format!("pulled image {image}")).count(), 2, "{log}");
    for bad in ["401 Unauthorized", "ErrImagePull", "no registry reachable"] {
        assert!(!log.contains(bad), "{bad} in the log:\n{log}");
    }
    // The registry's access log: the HEADs were let in.
    let access = std::fs::read_to_string(reg.dir.join("registry.log")).unwrap();
    let answered = access.lines().filter(|l| l.contains("\"HEAD /v2/private/app/manifests/latest HTTP/1.1\" 200") && l.contains("picolet/")).count();
    assert_eq!(answered, 2, "{access}");

    // Wrong credentials: the registry refuses the check; no local fall-back.
    // (The log, not the status: the crash-loop back-off soon replaces
    // ErrImagePull there, as upstream's does.)
    node_credentials(&p.root, &reg, "wrong");
    std::fs::write(gate.join("go"), "").unwrap();
    let failed = format!(
        "container c: ErrImagePull: https://{}/v2/private/app/manifests/latest: 401 Unauthorized: authentication failed, check the credentials in {}",
        reg.host(),
        p.root.join("config.json").display()
    );
    p.wait_until("the restart's check to be refused", || p.picolet_log().contains(&failed));
    let log = p.picolet_log();
    assert!(!log.contains("no registry reachable"), "{log}");
    assert!(!p.log_dir(&pod, "c").join("3.log").exists(), "no start the registry refused");
    let basic = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, "pi:s3cret");
    assert!(!log.contains("s3cret") && !log.contains(&basic), "credentials in the log:\n{log}");
    let _ = std::fs::remove_dir_all(&dir);
}

// --- blobs: zstd layers, stalled and broken-off downloads, resuming ---

/// What `BlobProxy` does with the requests it forwards.
#[derive(Clone, Copy, PartialEq, Debug)]
enum BlobMode {
    /// Forwards everything, `Range` included.
    Healthy,
    /// Cuts the next big blob (> 64 KiB, the layer) off halfway, then is healthy.
    CutOnce,
    /// Sends half of every big blob, then nothing (up to 30 s) with the connection open.
    Stall,
    /// Answers manifests with JSON-looking bytes until picolet hangs up (100 MiB at most).
    EndlessManifest,
    /// Sends big blobs 64 KiB every 50 ms.
    Slow,
}

/// A proxy in front of a registry whose behaviour the test switches while
/// picolet talks to it; logs each blob request with its `Range` header and
/// counts what it wrote of an endless manifest.
struct BlobProxy {
    port: u16,
    mode: std::sync::Arc<std::sync::Mutex<BlobMode>>,
    log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    manifest_bytes: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl BlobProxy {
    fn start(upstream: u16, mode: BlobMode) -> BlobProxy {
        use std::sync::atomic::Ordering;
        let mode = std::sync::Arc::new(std::sync::Mutex::new(mode));
        let (log, manifest_bytes): (std::sync::Arc<std::sync::Mutex<Vec<String>>>, std::sync::Arc<std::sync::atomic::AtomicU64>) = Default::default();
        let (mode2, log2, bytes2) = (mode.clone(), log.clone(), manifest_bytes.clone());
        let port = serve(move |mut conn, h| {
            let (mode, log, manifest_bytes) = (&mode2, &log2, &bytes2);
            let range = h.header("range");
            let now = *mode.lock().unwrap();
            if h.path.contains("/blobs/") {
                log.lock().unwrap().push(format!("{} range={}", h.path, range.clone().unwrap_or_default()));
            }
            if now == BlobMode::EndlessManifest && h.path.contains("/manifests/") {
                let _ = write!(conn, "HTTP/1.1 200 OK\r\nContent-Type: application/vnd.oci.image.manifest.v1+json\r\nConnection: close\r\n\r\n{{\"schemaVersion\": 2, \"x\": \"");
                let chunk = vec![b'a'; 64 << 10];
                for _ in 0..1600 {
                    if conn.write_all(&chunk).is_err() {
                        return;
                    }
                    manifest_bytes.fetch_add(chunk.len() as u64, Ordering::Relaxed);
                }
                return;
            }
            let resp = h.forward(upstream);
            let body_at = body_at(&resp);
            let big = h.path.contains("/blobs/") && resp.len() - body_at > 64 << 10;
            if big && now == BlobMode::CutOnce {
                *mode.lock().unwrap() = BlobMode::Healthy;
                let _ = conn.write_all(&resp[..body_at + (resp.len() - body_at) / 2]);
                return;
            }
            if big && now == BlobMode::Stall {
                let _ = conn.write_all(&resp[..body_at + (resp.len() - body_at) / 2]);
                let until = Instant::now() + Duration::from_secs(30);
                while Instant::now() < until && *mode.lock().unwrap() == BlobMode::Stall {
                    std::thread::sleep(Duration::from_millis(100));
                }
                return;
            }
            if big && now == BlobMode::Slow {
                for chunk in resp.chunks(64 << 10) {
                    if conn.write_all(chunk).is_err() {
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
                return;
            }
            let _ = conn.write_all(&resp);
        });
        BlobProxy { port, mode, log, manifest_bytes }
    }

    fn set(&self, mode: BlobMode) {
        *self.mode.lock().unwrap() = mode;
    }

    /// The blob requests seen for `digest`: their `Range` headers ("" for none).
    fn ranges(&self, digest: &str) -> Vec<String> {
        self.log.lock().unwrap().iter().filter(|l| l.contains(digest)).map(|l| l.split("range=").nth(1).unwrap_or("").to_string()).collect()
    }

    fn config(&self, dir: &Path) -> PathBuf {
        mirror_config(dir, self.port)
    }
}

/// The first layer's digest and size in `repo:tag`'s manifest, asked of the registry.
fn first_layer(reg: &Registry, repo_tag: &str) -> (String, String, u64) {
    let (repo, tag) = repo_tag.split_once(':').unwrap();
    let out = Command::new("curl")
        .args(["-fsS", "-H", "Accept: application/vnd.oci.image.manifest.v1+json"])
        .arg(format!("http://{}/v2/{repo}/manifests/{tag}", reg.host()))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let m: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let l = &m["layers"][0];
    (l["mediaType"].as_str().unwrap().to_string(), l["digest"].as_str().unwrap().to_string(), l["size"].as_u64().unwrap())
}

fn partial_of(root: &Path, digest: &str) -> PathBuf {
    root.join("images-store/partial").join(&digest[7..])
}

fn assert_store_clean(root: &Path, digest: &str) {
    let store = root.join("images-store");
    assert!(!store.join("blobs/sha256").join(&digest[7..]).exists(), "no unverified layer in blobs/");
    assert_eq!(files(&store.join("tmp")), Vec::<PathBuf>::new(), "no temp file left");
    assert!(std::fs::read_dir(store.join("layers")).unwrap().next().is_none(), "no layer unpacked");
}

#[test]
fn zstd_layers_are_pulled_and_run_in_a_static_pod() {
    let reg = Registry::start("zstd", false);
    reg.push_with(&format!("oci-archive:{}", images_dir().join("busybox.tar").display()), "z/busybox:v1", false, &["--dest-compress-format", "zstd"]);
    let (media_type, digest, _) = first_layer(&reg, "z/busybox:v1");
    assert_eq!(media_type, "application/vnd.oci.image.layer.v1.tar+zstd");
    let mut p = Picolet::new("zstd-pod");
    p.extra_args.push(format!("--registry-config={}", reg.config(None).display()));
    let image = format!("{}/z/busybox:v1", reg.host());
    p.write_manifest(
        "z.yaml",
        &format!("apiVersion: v1\nkind: Pod\nmetadata: {{name: z}}\nspec:\n  containers: [{{name: c, image: '{image}', command: [sh, -c, 'cat /var/www/index.html; exec sleep 1000']}}]\n"),
    );
    p.start();
    let pod = p.wait_pod("z", "Running", |q| running(q, "c"));
    p.wait_log(&pod, "c", 0, "hello from busybox");
    let store = p.root.join("images-store");
    assert!(store.join("blobs/sha256").join(&digest[7..]).is_file());
    assert_eq!(std::fs::read(store.join("blobs/sha256").join(&digest[7..])).unwrap()[..4], [0x28, 0xb5, 0x2f, 0xfd], "stored as sent, zstd");
}

#[test]
fn broken_off_download_resumes_with_a_range_request() {
    let reg = Registry::start("resume", false);
    reg.push_busybox("r/busybox:v1");
    let (_, digest, size) = first_layer(&reg, "r/busybox:v1");
    let proxy = BlobProxy::start(reg.port, BlobMode::CutOnce);
    let root = scratch("resume");
    let cfg = proxy.config(&root);
    let image = format!("127.0.0.1:{}/r/busybox:v1", proxy.port);

    let (code, _, err) = pull(&root, &cfg, &[&image]);
    eprintln!("{err}");
    assert_eq!(code, 1, "{err}");
    let kept = std::fs::metadata(partial_of(&root, &digest)).map(|m| m.len()).unwrap_or(0);
    assert!(kept > 0 && kept < size, "a prefix is kept: {kept} of {size}");
    assert!(err.contains(&format!("layer {digest} cut off after {kept} of {size} bytes")) && err.contains("resumes"), "{err}");
    assert_store_clean(&root, &digest);
    assert!(!list(&root).contains(&image));

    let (code, out, err) = pull(&root, &cfg, &[&image]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("1 layers fetched"), "{out}");
    assert_eq!(proxy.ranges(&digest), vec![String::new(), format!("bytes={kept}-")]);
    assert!(!partial_of(&root, &digest).exists(), "the partial became the blob");
    assert!(root.join("images-store/blobs/sha256").join(&digest[7..]).is_file());
    assert!(list(&root).contains(&image));

    // A kept prefix that went bad on disk: the digest does not match, the
    // partial is dropped, and the next pull starts over.
    proxy.log.lock().unwrap().clear();
    proxy.set(BlobMode::CutOnce);
    let root2 = root.join("again");
    let (code, _, _) = pull(&root2, &cfg, &[&image]);
    assert_eq!(code, 1);
    let partial = partial_of(&root2, &digest);
    let mut bytes = std::fs::read(&partial).unwrap();
    bytes[10] ^= 0xff;
    std::fs::write(&partial, &bytes).unwrap();
    let (code, _, err) = pull(&root2, &cfg, &[&image]);
    eprintln!("{err}");
    assert_eq!(code, 1);
    assert!(err.contains("sha256 mismatch") && err.contains(&digest), "{err}");
    assert!(!partial.exists(), "a bad partial is deleted");
    assert_store_clean(&root2, &digest);
    let (code, _, err) = pull(&root2, &cfg, &[&image]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(proxy.ranges(&digest).last().unwrap(), "", "started over");

    // A whole partial never renamed (picolet killed just before): verified
    // and used without asking the registry.
    proxy.log.lock().unwrap().clear();
    let root3 = root.join("complete");
    let partial = partial_of(&root3, &digest);
    std::fs::create_dir_all(partial.parent().unwrap()).unwrap();
    let hex = &digest[7..];
    std::fs::copy(reg.dir.join("data/docker/registry/v2/blobs/sha256").join(&hex[..2]).join(hex).join("data"), &partial).unwrap();
    let (code, _, err) = pull(&root3, &cfg, &[&image]);
    assert_eq!(code, 0, "{err}");
    assert!(proxy.ranges(&digest).is_empty(), "{:?}", proxy.ranges(&digest));
    assert!(!partial.exists() && root3.join("images-store/blobs/sha256").join(hex).is_file());
    cleanup(&root);
    let _ = std::fs::remove_dir_all(&root);
}

/// A registry that goes silent mid-blob: the pod shows ErrImagePull naming
/// the blob and the timeout; once the registry is back the pull resumes
/// where it stopped and the pod runs.
#[test]
fn stalled_blob_times_out_on_the_pod_and_a_later_pull_resumes() {
    let reg = Registry::start("stall", false);
    reg.push_busybox("s/busybox:v1");
    let (_, digest, size) = first_layer(&reg, "s/busybox:v1");
    let proxy = BlobProxy::start(reg.port, BlobMode::Stall);
    let mut p = Picolet::new("stall-pod");
    // The import dir's busybox has the same layer: the store must lack it.
    std::fs::remove_file(p.import.join("busybox.tar")).unwrap();
    p.extra_args.push(format!("--registry-config={}", proxy.config(&p.base).display()));
    p.extra_args.push("--image-pull-progress-timeout=2s".into());
    let image = format!("127.0.0.1:{}/s/busybox:v1", proxy.port);
    p.write_manifest(
        "s.yaml",
        &format!("apiVersion: v1\nkind: Pod\nmetadata: {{name: s}}\nspec:\n  containers: [{{name: c, image: '{image}', command: [sh, -c, 'echo resumed and runs; exec sleep 1000']}}]\n"),
    );
    let started = Instant::now();
    p.start();
    let pod = p.wait_pod("s", "ImagePullBackOff", |q| container(q, "c")["state"]["waiting"]["reason"] == "ImagePullBackOff");
    let msg = container(&pod, "c")["state"]["waiting"]["message"].as_str().unwrap_or("").to_string();
    eprintln!("{msg} (after {:?})", started.elapsed());
    // The message shows the progress timeout gave up, not the proxy's 30 s close.
    assert!(msg.contains("ErrImagePull") && msg.contains(&format!("layer {digest} stalled")) && msg.contains("nothing received for 2s") && msg.contains("timed out"), "{msg}");
    let kept = std::fs::metadata(partial_of(&p.root, &digest)).map(|m| m.len()).unwrap_or(0);
    assert!(kept > 0 && kept < size, "{kept} of {size}");
    assert_store_clean(&p.root, &digest);

    proxy.set(BlobMode::Healthy);
    let pod = p.wait_pod("s", "Running", |q| running(q, "c"));
    p.wait_log(&pod, "c", 0, "resumed and runs");
    let ranges = proxy.ranges(&digest);
    assert_eq!(ranges.first().map(String::as_str), Some(""), "{ranges:?}");
    assert_eq!(ranges.last().unwrap(), &format!("bytes={kept}-"), "{ranges:?}");
    assert!(!partial_of(&p.root, &digest).exists());
}

/// A manifest that never ends: reading stops at the 4 MiB cap, so picolet
/// hangs up long before 100 MiB and its memory stays bounded by the cap.
#[test]
fn endless_manifest_is_refused_at_the_cap_without_memory_growth() {
    let reg = Registry::start("endless", false);
    let proxy = BlobProxy::start(reg.port, BlobMode::EndlessManifest);
    let root = scratch("endless");
    let cfg = proxy.config(&root);
    // Peak RSS (KiB) and stderr of one failing pull.
    let measured = |image: &str| {
        let out = Command::new("/usr/bin/time")
            .args(["-f", "maxrss=%M"])
            .arg(env!("CARGO_BIN_EXE_picolet"))
            .args(["images", "pull", image])
            .arg(format!("--root-dir={}", root.display()))
            .arg(format!("--registry-config={}", cfg.display()))
            .output()
            .expect("/usr/bin/time (apt-get install time)");
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(1), "{err}");
        let rss: u64 = err.split("maxrss=").nth(1).and_then(|v| v.trim().parse().ok()).unwrap();
        (rss, err)
    };
    // The same command refused at once (nothing listens on port 1): the baseline.
    let (base, _) = measured("127.0.0.1:1/e/endless:v1");
    let (peak, err) = measured(&format!("127.0.0.1:{}/e/endless:v1", proxy.port));
    eprintln!("{err}peak RSS {peak} KiB, baseline {base} KiB");
    assert!(err.contains("manifest") && err.contains("larger than 4194304 bytes"), "{err}");
    let sent = proxy.manifest_bytes.load(std::sync::atomic::Ordering::Relaxed);
    assert!(sent < 16 << 20, "picolet stopped reading at the cap: the proxy wrote {sent} bytes");
    // At most the 4 MiB cap (plus buffers) more than the baseline, not the 100 MiB offered.
    assert!(peak.saturating_sub(base) < 6 << 10, "peak RSS {peak} KiB against {base} KiB");
    let _ = std::fs::remove_dir_all(&root);
}

/// Two pulls at once of images sharing a layer (two processes, one store):
/// the layer is downloaded once, the second pull waits and uses it.
#[test]
fn concurrent_pulls_download_a_shared_layer_once() {
    let reg = Registry::start("shared", false);
    let src = format!("oci-archive:{}", images_dir().join("busybox.tar").display());
    reg.push(&src, "c/one:v1", false);
    reg.push(&src, "c/two:v1", false);
    let (_, digest, _) = first_layer(&reg, "c/one:v1");
    let proxy = BlobProxy::start(reg.port, BlobMode::Slow);
    let root = scratch("shared");
    let cfg = proxy.config(&root);
    let images: Vec<String> = ["one", "two"].iter().map(|n| format!("127.0.0.1:{}/c/{n}:v1", proxy.port)).collect();
    let children: Vec<_> = images
        .iter()
        .map(|image| {
            Command::new(env!("CARGO_BIN_EXE_picolet"))
                .args(["images", "pull", image])
                .arg(format!("--root-dir={}", root.display()))
                .arg(format!("--registry-config={}", cfg.display()))
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let outs: Vec<String> = children
        .into_iter()
        .map(|c| {
            let o = c.wait_with_output().unwrap();
            assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
            String::from_utf8_lossy(&o.stdout).into_owned()
        })
        .collect();
    eprintln!("{outs:?}");
    assert_eq!(proxy.ranges(&digest).len(), 1, "one download of the shared layer: {:?}", proxy.ranges(&digest));
    assert_eq!(outs.iter().filter(|o| o.contains("1 layers fetched")).count(), 1, "{outs:?}");
    assert_eq!(outs.iter().filter(|o| o.contains("1 already present")).count(), 1, "{outs:?}");
    let listed = list(&root);
    assert!(images.iter().all(|i| listed.contains(i.as_str())), "{listed}");
    assert!(!partial_of(&root, &digest).exists());
    cleanup(&root);
    let _ = std::fs::remove_dir_all(&root);
}
