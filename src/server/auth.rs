//! Authentication and authorization of `:10250` requests, as upstream's kubelet
//! (1.34, KubeletFineGrainedAuthz on) does them: x509 client certificates,
//! bearer tokens through the TokenReview webhook, anonymous when enabled;
//! then SubjectAccessReviews for `nodes/<subresource>` derived from the path.
//!
//! Answers are cached as upstream caches them (tokens for the webhook's cache
//! TTL, keyed by a salted hash so no raw token is kept; authorization
//! decisions for the allowed/denied TTLs), in bounded maps.
//!
//! Not here: the WebSocket `base64url.bearer.authorization.k8s.io.` token
//! (the API server never sends it to kubelets), retrying failed reviews with
//! back-off (a failure is answered at once; the client retries).

use crate::api::client::{ApiError, Client, Quiet};
use rustls::pki_types::CertificateDer;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::hash::Hash;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// An authenticated user.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub uid: String,
    pub groups: Vec<String>,
    pub extra: BTreeMap<String, Vec<String>>,
}

/// From the configuration (see config.rs for the upstream names and defaults).
#[derive(Debug, Clone)]
pub struct AuthSettings {
    pub node_name: String,
    pub anonymous: bool,
    pub token_webhook: bool,
    pub token_cache_ttl: Duration,
    /// "Webhook" or "AlwaysAllow".
    pub authorization_mode: String,
    pub authorized_ttl: Duration,
    pub unauthorized_ttl: Duration,
}

/// A refused request: 401 (who are you?) or 403 (not allowed), with the body to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denied {
    pub status: u16,
    pub message: String,
}

pub const ANONYMOUS: &str = "system:anonymous";
pub const UNAUTHENTICATED: &str = "system:unauthenticated";
pub const AUTHENTICATED: &str = "system:authenticated";

const TOKEN_REVIEWS: &str = "/apis/authentication.k8s.io/v1/tokenreviews";
const SUBJECT_ACCESS_REVIEWS: &str = "/apis/authorization.k8s.io/v1/subjectaccessreviews";
/// Most cached answers of each kind; a full cache drops expired entries,
/// then the one closest to expiring.
const CACHE_SIZE: usize = 4096;

/// How a review reaches the API server: POST `body` to `path`, the answer.
/// A seam so the tests can answer instead of an API server.
type Post = Box<dyn Fn(&str, &Value) -> Result<Value, ApiError> + Send + Sync>;
type Clock = Box<dyn Fn() -> Instant + Send + Sync>;

/// Decides who a request comes from and whether they may make it.
pub struct Auth {
    settings: AuthSettings,
    post: Option<Post>,
    now: Clock,
    /// Salt for the token cache's keys (SHA-256 of salt + token).
    salt: [u8; 32],
    tokens: Mutex<Cache<[u8; 32], Option<User>>>,
    /// Keyed by the SubjectAccessReview spec's JSON, as upstream: allowed or not.
    decisions: Mutex<Cache<String, bool>>,
    quiet: Mutex<Quiet>,
}

impl Auth {
    /// Errors when a webhook is asked for without an API server to ask.
    pub fn new(settings: AuthSettings, client: Option<Arc<Client>>) -> Result<Auth, String> {
        let post = client.map(|c| -> Post { Box::new(move |path, body| c.send("POST", path, "application/json", body)) });
        Auth::with(settings, post, Box::new(Instant::now))
    }

    fn with(settings: AuthSettings, post: Option<Post>, now: Clock) -> Result<Auth, String> {
        if settings.token_webhook && post.is_none() {
            return Err("no API client, cannot use webhook authentication (authentication.webhook.enabled)".into());
        }
        match settings.authorization_mode.as_str() {
            "AlwaysAllow" => {}
            "Webhook" if post.is_none() => {
                return Err("no API client, cannot use webhook authorization (authorization.mode Webhook)".into())
            }
            "Webhook" => {}
            "" => return Err("no authorization mode specified".into()),
            m => return Err(format!("unknown authorization mode {m:?} (Webhook or AlwaysAllow)")),
        }
        let mut salt = [0u8; 32];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut salt).map_err(|_| "no randomness for the token cache".to_string())?;
        Ok(Auth {
            settings,
            post,
            now,
            salt,
            tokens: Mutex::new(Cache::new(CACHE_SIZE)),
            decisions: Mutex::new(Cache::new(CACHE_SIZE)),
            quiet: Mutex::new(Quiet::default()),
        })
    }

    /// `peer`: the client certificate the handshake verified, if any;
    /// `authorization`: the Authorization header, if any.
    ///
    /// As upstream's union: a certificate with a CN wins; then a bearer token
    /// when the token webhook is on (a token the review rejects, or a failed
    /// review, is 401, never anonymous); then anonymous if enabled.
    pub fn authenticate(&self, peer: Option<&CertificateDer<'_>>, authorization: Option<&str>) -> Result<User, Denied> {
        let unauthorized = || Denied { status: 401, message: "Unauthorized".into() };
        if let Some(user) = peer.and_then(super::tls::client_user) {
            return Ok(with_authenticated_group(user));
        }
        if let (true, Some(token)) = (self.settings.token_webhook, bearer_token(authorization)) {
            return match self.review_token(token) {
                Ok(Some(user)) => Ok(with_authenticated_group(user)),
                Ok(None) => Err(unauthorized()),
                Err(e) => {
                    log::debug!("bearer token not accepted: {e}");
                    Err(unauthorized())
                }
            };
        }
        if self.settings.anonymous {
            return Ok(User { name: ANONYMOUS.into(), groups: vec![UNAUTHENTICATED.into()], ..User::default() });
        }
        Err(unauthorized())
    }

    /// Whether `user` may `method` `path` (query excluded) on this node: the
    /// first allowed of the path's subresources (see [`subresources`]).
    pub fn authorize(&self, user: &User, method: &str, path: &str) -> Result<(), Denied> {
        if self.settings.authorization_mode == "AlwaysAllow" {
            return Ok(());
        }
        let verb = verb(method);
        let subs = subresources(path);
        for sub in &subs {
            match self.review_access(user, verb, sub) {
                Ok(true) => return Ok(()),
                Ok(false) => {}
                Err(_) => {
                    return Err(Denied {
                        status: 500,
                        message: format!("Authorization error (user={}, verb={verb}, resource=nodes, subresource={sub})", user.name),
                    })
                }
            }
        }
        log::debug!("forbidden: user {} verb {verb} nodes {subs:?}", user.name);
        Err(Denied {
            status: 403,
            message: format!("Forbidden (user={}, verb={verb}, resource=nodes, subresource(s)=[{}])\n", user.name, subs.join(" ")),
        })
    }

    /// The TokenReview's user, None when it rejects the token without an
    /// error; errors (the review's or the call's) are not cached.
    fn review_token(&self, token: &str) -> Result<Option<User>, String> {
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        ctx.update(&self.salt);
        ctx.update(token.as_bytes());
        let mut key = [0u8; 32];
        key.copy_from_slice(ctx.finish().as_ref());
        let now = (self.now)();
        if let Some(hit) = lock(&self.tokens).get(&key, now) {
            return Ok(hit);
        }
        let answer = self.call(TOKEN_REVIEWS, &token_review(token))?;
        let user = parse_token_review(&answer)?;
        lock(&self.tokens).put(key, user.clone(), self.settings.token_cache_ttl, now);
        Ok(user)
    }

    /// Whether a SubjectAccessReview allows `verb` on `nodes/<sub>` of this node.
    fn review_access(&self, user: &User, verb: &str, sub: &str) -> Result<bool, String> {
        let body = subject_access_review(user, verb, sub, &self.settings.node_name);
        let key = body["spec"].to_string();
        let now = (self.now)();
        if let Some(hit) = lock(&self.decisions).get(&key, now) {
            return Ok(hit);
        }
        let allowed = parse_subject_access_review(&self.call(SUBJECT_ACCESS_REVIEWS, &body)?)?;
        let ttl = if allowed { self.settings.authorized_ttl } else { self.settings.unauthorized_ttl };
        lock(&self.decisions).put(key, allowed, ttl, now);
        Ok(allowed)
    }

    /// One review call; an unreachable API server is logged once, not per request.
    fn call(&self, path: &str, body: &Value) -> Result<Value, String> {
        let post = self.post.as_ref().ok_or("no API client")?;
        let what = "kubelet server: reviewing a request with the API server";
        match post(path, body) {
            Ok(v) => {
                lock(&self.quiet).ok(what);
                Ok(v)
            }
            Err(e) => {
                lock(&self.quiet).failed(what, &e);
                Err(e.to_string())
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The token of `Authorization: Bearer <token>` (scheme in any case); None
/// for other schemes, a missing or an empty token.
pub fn bearer_token(header: Option<&str>) -> Option<&str> {
    let mut parts = header?.trim().splitn(3, ' ');
    let scheme = parts.next()?;
    let token = parts.next()?;
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// Every authenticated user but the anonymous one is in system:authenticated.
fn with_authenticated_group(mut user: User) -> User {
    if user.name != ANONYMOUS && !user.groups.iter().any(|g| g == AUTHENTICATED || g == UNAUTHENTICATED) {
        user.groups.push(AUTHENTICATED.into());
    }
    user
}

/// The API verb of an HTTP method; "" for others (HEAD included, as upstream).
pub fn verb(method: &str) -> &'static str {
    match method {
        "GET" => "get",
        "POST" => "create",
        "PUT" => "update",
        "PATCH" => "patch",
        "DELETE" => "delete",
        _ => "",
    }
}

/// `path` is `prefix` or below it (`/stats` and `/stats/summary`, not `/statsx`).
fn is_subpath(path: &str, prefix: &str) -> bool {
    let prefix = prefix.trim_end_matches('/');
    path.strip_prefix(prefix).is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// The `nodes` subresources that may allow a request for `path`, in the
/// order they are asked: the fine-grained one first where upstream has one
/// (`pods`, `healthz`, `configz`), then `stats`, `metrics`, `log`,
/// `checkpoint`, `statusz` or else `proxy`. A path that is percent-encoded
/// or has `.`/`..`/empty segments only gets `proxy`, the widest: what it
/// names after decoding or cleaning is the router's business.
pub fn subresources(path: &str) -> Vec<&'static str> {
    let unclean = path.contains('%') || path.contains("//") || path.split('/').any(|s| s == "." || s == "..");
    if unclean {
        return vec!["proxy"];
    }
    let mut subs = Vec::with_capacity(2);
    if is_subpath(path, "/pods") || is_subpath(path, "/runningpods/") {
        subs.push("pods");
    } else if is_subpath(path, "/healthz") {
        subs.push("healthz");
    } else if is_subpath(path, "/configz") {
        subs.push("configz");
    }
    subs.push(match path {
        p if is_subpath(p, "/stats/") => "stats",
        p if is_subpath(p, "/metrics") => "metrics",
        // "log" as in pods/log.
        p if is_subpath(p, "/logs/") => "log",
        p if is_subpath(p, "/checkpoint/") => "checkpoint",
        p if is_subpath(p, "/statusz") => "statusz",
        p if is_subpath(p, "/flagz") => "configz",
        _ => "proxy",
    });
    subs
}

fn token_review(token: &str) -> Value {
    json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": {"token": token}})
}

/// A TokenReview's answer: the user, None when not authenticated, an error
/// when the review says why (upstream does not cache those).
fn parse_token_review(v: &Value) -> Result<Option<User>, String> {
    let status = &v["status"];
    if status["authenticated"].as_bool() != Some(true) {
        return match status["error"].as_str() {
            Some(e) if !e.is_empty() => Err(e.to_string()),
            _ => Ok(None),
        };
    }
    let u = &status["user"];
    let strings = |v: &Value| -> Vec<String> { v.as_array().into_iter().flatten().filter_map(|s| s.as_str().map(str::to_string)).collect() };
    Ok(Some(User {
        name: u["username"].as_str().unwrap_or("").to_string(),
        uid: u["uid"].as_str().unwrap_or("").to_string(),
        groups: strings(&u["groups"]),
        extra: u["extra"].as_object().into_iter().flatten().map(|(k, v)| (k.clone(), strings(v))).collect(),
    }))
}

/// The SubjectAccessReview for `verb` on `nodes/<sub>` named `node`.
fn subject_access_review(user: &User, verb: &str, sub: &str, node: &str) -> Value {
    let mut spec = json!({
        "resourceAttributes": {"verb": verb, "version": "v1", "resource": "nodes", "subresource": sub, "name": node},
        "user": user.name,
        "groups": user.groups,
    });
    if !user.extra.is_empty() {
        spec["extra"] = json!(user.extra);
    }
    if !user.uid.is_empty() {
        spec["uid"] = json!(user.uid);
    }
    json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview", "spec": spec})
}

/// Allowed or not; both allowed and denied is an error, as upstream.
fn parse_subject_access_review(v: &Value) -> Result<bool, String> {
    let status = &v["status"];
    let allowed = status["allowed"].as_bool().unwrap_or(false);
    if allowed && status["denied"].as_bool().unwrap_or(false) {
        return Err("subject access review returned both allow and deny".into());
    }
    Ok(allowed)
}

/// A map whose entries expire, of at most `cap` entries.
struct Cache<K, V> {
    entries: HashMap<K, (V, Instant)>,
    cap: usize,
}

impl<K: Hash + Eq + Clone, V: Clone> Cache<K, V> {
    fn new(cap: usize) -> Self {
        Cache { entries: HashMap::new(), cap }
    }

    fn get(&mut self, key: &K, now: Instant) -> Option<V> {
        match self.entries.get(key) {
            Some((v, expires)) if *expires > now => Some(v.clone()),
            Some(_) => {
                self.entries.remove(key);
                None
            }
            None => None,
        }
    }

    fn put(&mut self, key: K, value: V, ttl: Duration, now: Instant) {
        if ttl.is_zero() || self.cap == 0 {
            return;
        }
        if self.entries.len() >= self.cap && !self.entries.contains_key(&key) {
            self.entries.retain(|_, (_, expires)| *expires > now);
            if self.entries.len() >= self.cap {
                let soonest = self.entries.iter().min_by_key(|(_, (_, e))| *e).map(|(k, _)| k.clone());
                if let Some(k) = soonest {
                    self.entries.remove(&k);
                }
            }
        }
        self.entries.insert(key, (value, now + ttl));
    }
}

#[cfg(test)]
mod tests;
