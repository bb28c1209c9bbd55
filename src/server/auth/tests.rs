//! The pure parts, and [`Auth`] with a fake API server and clock.

use super::*;

fn settings() -> AuthSettings {
    AuthSettings {
        node_name: "pi-1".into(),
        anonymous: false,
        token_webhook: true,
        token_cache_ttl: Duration::from_secs(120),
        authorization_mode: "Webhook".into(),
        authorized_ttl: Duration::from_secs(300),
        unauthorized_ttl: Duration::from_secs(30),
    }
}

/// A fake API server: answers each POST with `answer(path, body)` and
/// records the calls; a clock the test moves.
struct Fake {
    calls: Arc<Mutex<Vec<(String, Value)>>>,
    now: Arc<Mutex<Instant>>,
}

impl Fake {
    fn auth(s: AuthSettings, answer: impl Fn(&str, &Value) -> Result<Value, ApiError> + Send + Sync + 'static) -> (Auth, Fake) {
        let calls = Arc::new(Mutex::new(Vec::new()));
        let now = Arc::new(Mutex::new(Instant::now()));
        let (c, n) = (calls.clone(), now.clone());
        let post: Post = Box::new(move |path, body| {
            c.lock().unwrap().push((path.to_string(), body.clone()));
            answer(path, body)
        });
        let auth = Auth::with(s, Some(post), Box::new(move || *n.lock().unwrap())).unwrap();
        (auth, Fake { calls, now })
    }
    fn calls(&self) -> usize {
        self.calls.lock().unwrap().len()
    }
    fn last(&self) -> (String, Value) {
        self.calls.lock().unwrap().last().cloned().unwrap()
    }
    fn advance(&self, secs: u64) {
        *self.now.lock().unwrap() += Duration::from_secs(secs);
    }
}

fn unreachable() -> ApiError {
    ApiError { op: "POST x".into(), status: 0, reason: String::new(), message: "connection refused".into() }
}

fn user(name: &str) -> User {
    User { name: name.into(), groups: vec!["devs".into(), AUTHENTICATED.into()], ..User::default() }
}

#[test]
fn path_to_subresources_as_upstream() {
    for (path, want) in [
        ("/pods", &["pods", "proxy"][..]),
        ("/pods/", &["pods", "proxy"]),
        ("/runningpods/", &["pods", "proxy"]),
        ("/runningpods", &["pods", "proxy"]),
        ("/healthz", &["healthz", "proxy"]),
        ("/healthz/ping", &["healthz", "proxy"]),
        ("/configz", &["configz", "proxy"]),
        ("/stats/summary", &["stats"]),
        ("/stats", &["stats"]),
        ("/metrics", &["metrics"]),
        ("/metrics/resource", &["metrics"]),
        ("/metrics/probes", &["metrics"]),
        ("/logs/", &["log"]),
        ("/logs/messages", &["log"]),
        ("/checkpoint/ns/pod/c", &["checkpoint"]),
        ("/statusz", &["statusz"]),
        ("/flagz", &["configz"]),
        ("/containerLogs/ns/pod/c", &["proxy"]),
        ("/exec/ns/pod/c", &["proxy"]),
        ("/portForward/ns/pod", &["proxy"]),
        ("/", &["proxy"]),
        ("/podsx", &["proxy"]),
        ("/statsx", &["proxy"]),
        ("/logsy/x", &["proxy"]),
        // Encoded or unclean paths only get the widest check.
        ("/pods/../exec/ns/p/c", &["proxy"]),
        ("/stats/./x", &["proxy"]),
        ("/%73tats/summary", &["proxy"]),
        ("//stats/summary", &["proxy"]),
    ] {
        assert_eq!(subresources(path), want, "{path}");
    }
    assert_eq!(
        [verb("GET"), verb("POST"), verb("PUT"), verb("PATCH"), verb("DELETE"), verb("HEAD"), verb("OPTIONS")],
        ["get", "create", "update", "patch", "delete", "", ""]
    );
}

#[test]
fn bearer_headers() {
    assert_eq!(bearer_token(Some("Bearer abc.def")), Some("abc.def"));
    assert_eq!(bearer_token(Some("bearer abc")), Some("abc"));
    assert_eq!(bearer_token(Some("  BEARER abc  ")), Some("abc"));
    assert_eq!(bearer_token(Some("Bearer abc trailing")), Some("abc"));
    // An extra space before the token makes it empty: ignored, as upstream.
    assert_eq!(bearer_token(Some("Bearer  abc")), None);
    assert_eq!(bearer_token(Some("Bearer")), None);
    assert_eq!(bearer_token(Some("Bearer ")), None);
    assert_eq!(bearer_token(Some("Basic dXNlcjpwYXNz")), None);
    assert_eq!(bearer_token(None), None);
}

#[test]
fn cache_expires_and_stays_bounded() {
    let t0 = Instant::now();
    let s = Duration::from_secs;
    let mut c: Cache<&str, u32> = Cache::new(2);
    c.put("a", 1, s(10), t0);
    assert_eq!(c.get(&"a", t0 + s(9)), Some(1));
    assert_eq!(c.get(&"a", t0 + s(10)), None);
    assert!(c.entries.is_empty(), "an expired entry is dropped when seen");
    c.put("zero", 1, Duration::ZERO, t0);
    assert!(c.entries.is_empty(), "a zero TTL caches nothing");
    // Full: expired entries go first, then the one closest to expiring.
    c.put("a", 1, s(5), t0);
    c.put("b", 2, s(50), t0);
    c.put("c", 3, s(100), t0 + s(6));
    assert_eq!((c.get(&"b", t0 + s(6)), c.get(&"c", t0 + s(6))), (Some(2), Some(3)));
    c.put("d", 4, s(100), t0 + s(7));
    assert_eq!(c.entries.len(), 2);
    assert_eq!((c.get(&"b", t0 + s(7)), c.get(&"d", t0 + s(7))), (None, Some(4)));
    // Replacing a key in a full cache evicts nothing.
    c.put("d", 5, s(100), t0 + s(7));
    assert_eq!((c.get(&"c", t0 + s(7)), c.get(&"d", t0 + s(7))), (Some(3), Some(5)));
}

#[test]
fn new_needs_a_client_for_webhooks() {
    let none = |s: AuthSettings| Auth::new(s, None).map(|_| ());
    assert!(none(settings()).unwrap_err().contains("webhook authentication"));
    let authz_only = AuthSettings { token_webhook: false, ..settings() };
    assert!(none(authz_only).unwrap_err().contains("webhook authorization"));
    let open = AuthSettings { token_webhook: false, authorization_mode: "AlwaysAllow".into(), ..settings() };
    assert!(none(open.clone()).is_ok());
    assert!(none(AuthSettings { authorization_mode: "RBAC".into(), ..open }).unwrap_err().contains("RBAC"));
}

#[test]
fn certificate_users_need_no_review() {
    let (auth, fake) = Fake::auth(settings(), |_, _| Err(unreachable()));
    let cert = super::super::tls::test_certificate("system:node:pi-1");
    let u = auth.authenticate(Some(&cert), Some("Bearer ignored")).unwrap();
    assert!(u.name.starts_with("system:node:pi-1@"), "{u:?}");
    assert_eq!(u.groups, [AUTHENTICATED]);
    assert!(u.extra["authentication.kubernetes.io/credential-id"][0].starts_with("X509SHA256="));
    assert_eq!(fake.calls(), 0);
}

#[test]
fn tokens_are_reviewed_and_cached() {
    let answer = |_: &str, body: &Value| {
        Ok(match body["spec"]["token"].as_str() {
            Some("good") => json!({"status": {"authenticated": true, "user": {
                "username": "system:serviceaccount:ns:sa", "uid": "u-1",
                "groups": ["system:serviceaccounts", "system:authenticated"],
                "extra": {"authentication.kubernetes.io/pod-name": ["p"]}}}}),
            Some("expired") => json!({"status": {"authenticated": false, "error": "token has expired"}}),
            _ => json!({"status": {"authenticated": false}}),
        })
    };
    let (auth, fake) = Fake::auth(settings(), answer);
    let u = auth.authenticate(None, Some("Bearer good")).unwrap();
    let (path, body) = fake.last();
    assert_eq!(path, "/apis/authentication.k8s.io/v1/tokenreviews");
    assert_eq!(body, json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": {"token": "good"}}));
    assert_eq!(u.name, "system:serviceaccount:ns:sa");
    assert_eq!(u.uid, "u-1");
    // Already in system:authenticated: not added twice.
    assert_eq!(u.groups, ["system:serviceaccounts", AUTHENTICATED]);
    assert_eq!(u.extra["authentication.kubernetes.io/pod-name"], ["p"]);

    // Cached for the TTL, then asked again.
    assert_eq!(auth.authenticate(None, Some("Bearer good")).unwrap(), u);
    assert_eq!(fake.calls(), 1);
    fake.advance(119);
    auth.authenticate(None, Some("Bearer good")).unwrap();
    assert_eq!(fake.calls(), 1);
    fake.advance(1);
    auth.authenticate(None, Some("Bearer good")).unwrap();
    assert_eq!(fake.calls(), 2);

    // A rejected token is 401; a plain rejection is cached, one with an error is not.
    let denied = Denied { status: 401, message: "Unauthorized".into() };
    assert_eq!(auth.authenticate(None, Some("Bearer bad")), Err(denied.clone()));
    assert_eq!(auth.authenticate(None, Some("Bearer bad")), Err(denied.clone()));
    assert_eq!(fake.calls(), 3);
    assert_eq!(auth.authenticate(None, Some("Bearer expired")), Err(denied.clone()));
    assert_eq!(auth.authenticate(None, Some("Bearer expired")), Err(denied));
    assert_eq!(fake.calls(), 5);

    // Groups are added for users the review leaves outside system:authenticated.
    let (auth, _) = Fake::auth(settings(), |_, _| Ok(json!({"status": {"authenticated": true, "user": {"username": "bob"}}})));
    assert_eq!(auth.authenticate(None, Some("Bearer t")).unwrap().groups, [AUTHENTICATED]);
}

#[test]
fn anonymous_only_without_credentials() {
    let anon = AuthSettings { anonymous: true, ..settings() };
    let (auth, fake) = Fake::auth(anon.clone(), |_, _| Err(unreachable()));
    let u = auth.authenticate(None, None).unwrap();
    assert_eq!((u.name.as_str(), u.groups.as_slice()), (ANONYMOUS, &[UNAUTHENTICATED.to_string()][..]));
    assert_eq!(auth.authenticate(None, Some("Basic x")).unwrap().name, ANONYMOUS);
    // A token that cannot be reviewed is 401, never anonymous; the failure is not cached.
    assert_eq!(auth.authenticate(None, Some("Bearer t")).unwrap_err().status, 401);
    assert_eq!(auth.authenticate(None, Some("Bearer t")).unwrap_err().status, 401);
    assert_eq!(fake.calls(), 2);
    // Without the token webhook a token means nothing: anonymous.
    let (auth, fake) = Fake::auth(AuthSettings { token_webhook: false, ..anon }, |_, _| Err(unreachable()));
    assert_eq!(auth.authenticate(None, Some("Bearer t")).unwrap().name, ANONYMOUS);
    assert_eq!(fake.calls(), 0);
    // Anonymous off: 401 with upstream's body.
    let (auth, _) = Fake::auth(settings(), |_, _| Err(unreachable()));
    assert_eq!(auth.authenticate(None, None), Err(Denied { status: 401, message: "Unauthorized".into() }));
}

#[test]
fn always_allow_asks_nobody() {
    let s = AuthSettings { authorization_mode: "AlwaysAllow".into(), ..settings() };
    let (auth, fake) = Fake::auth(s, |_, _| Err(unreachable()));
    assert_eq!(auth.authorize(&user("anyone"), "POST", "/exec/ns/p/c"), Ok(()));
    assert_eq!(fake.calls(), 0);
}

/// Allows exactly the subresources in `allowed`.
fn reviewer(allowed: &'static [&'static str]) -> impl Fn(&str, &Value) -> Result<Value, ApiError> + Send + Sync {
    move |_, body| {
        let sub = body["spec"]["resourceAttributes"]["subresource"].as_str().unwrap_or("");
        Ok(json!({"status": {"allowed": allowed.contains(&sub)}}))
    }
}

#[test]
fn access_reviews_shape_fallback_and_messages() {
    let (auth, fake) = Fake::auth(settings(), reviewer(&["proxy"]));
    let mut alice = user("alice");
    alice.uid = "uid-a".into();
    alice.extra.insert("scopes".into(), vec!["x".into()]);
    // nodes/pods is denied, nodes/proxy allows.
    assert_eq!(auth.authorize(&alice, "GET", "/pods"), Ok(()));
    let calls = fake.calls.lock().unwrap().clone();
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[0].0, "/apis/authorization.k8s.io/v1/subjectaccessreviews");
    assert_eq!(
        calls[0].1,
        json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview", "spec": {
            "resourceAttributes": {"verb": "get", "version": "v1", "resource": "nodes", "subresource": "pods", "name": "pi-1"},
            "user": "alice", "uid": "uid-a", "groups": ["devs", AUTHENTICATED], "extra": {"scopes": ["x"]}}})
    );
    assert_eq!(calls[1].1["spec"]["resourceAttributes"]["subresource"], "proxy");
    // No uid or extra: left out, as Go's omitempty does.
    auth.authorize(&user("bob"), "POST", "/exec/ns/p/c").unwrap();
    let spec = &fake.last().1["spec"];
    assert!(spec.get("uid").is_none() && spec.get("extra").is_none(), "{spec}");
    assert_eq!(spec["resourceAttributes"]["verb"], "create");

    // Denied: 403 naming every subresource asked.
    assert_eq!(
        auth.authorize(&alice, "GET", "/stats/summary"),
        Err(Denied { status: 403, message: "Forbidden (user=alice, verb=get, resource=nodes, subresource(s)=[stats])\n".into() })
    );
    let (auth, _) = Fake::auth(settings(), reviewer(&[]));
    assert_eq!(
        auth.authorize(&alice, "GET", "/healthz").unwrap_err().message,
        "Forbidden (user=alice, verb=get, resource=nodes, subresource(s)=[healthz proxy])\n"
    );
}

#[test]
fn access_decisions_are_cached_by_outcome() {
    let (auth, fake) = Fake::auth(settings(), reviewer(&["stats"]));
    let u = user("metrics-server");
    // Allowed: cached for authorized_ttl (300 s).
    auth.authorize(&u, "GET", "/stats/summary").unwrap();
    fake.advance(299);
    auth.authorize(&u, "GET", "/stats/summary").unwrap();
    assert_eq!(fake.calls(), 1);
    fake.advance(1);
    auth.authorize(&u, "GET", "/stats/summary").unwrap();
    assert_eq!(fake.calls(), 2);
    // Denied: cached for unauthorized_ttl (30 s). Different paths with the
    // same subresource share an answer, as the key is the review's spec.
    auth.authorize(&u, "GET", "/metrics").unwrap_err();
    auth.authorize(&u, "GET", "/metrics/resource").unwrap_err();
    assert_eq!(fake.calls(), 3);
    fake.advance(30);
    auth.authorize(&u, "GET", "/metrics").unwrap_err();
    assert_eq!(fake.calls(), 4);
    // Another user, another answer.
    auth.authorize(&user("other"), "GET", "/stats/summary").unwrap();
    assert_eq!(fake.calls(), 5);
}

#[test]
fn review_failures_are_500_and_not_cached() {
    let (auth, fake) = Fake::auth(settings(), |_, _| Err(unreachable()));
    let want = Denied { status: 500, message: "Authorization error (user=alice, verb=get, resource=nodes, subresource=pods)".into() };
    assert_eq!(auth.authorize(&user("alice"), "GET", "/pods"), Err(want.clone()));
    assert_eq!(auth.authorize(&user("alice"), "GET", "/pods"), Err(want));
    assert_eq!(fake.calls(), 2, "stops at the first error, caches nothing");
    let (auth, _) = Fake::auth(settings(), |_, _| Ok(json!({"status": {"allowed": true, "denied": true}})));
    assert_eq!(auth.authorize(&user("alice"), "GET", "/stats/summary").unwrap_err().status, 500);
}
