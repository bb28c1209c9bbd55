//! `kubectl exec`, `attach` and `port-forward` against picolet through the
//! real API server (kubectl speaks WebSocket to it, it speaks SPDY/3.1 to
//! the kubelet server), and `/run` through the node proxy.

mod common;
use common::cluster::{Cluster, cluster, container_running, node};
use common::Picolet;
use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

/// Starts a node and a pod on it (in namespace `ns`) whose `app` container
/// runs `command`; waits until it runs.
fn pod_on_node(c: &Cluster, name: &str, ns: &str, extra: &str, command: &str) -> Picolet {
    let mut p = node(c, name);
    p.start();
    c.node_ready(&p);
    c.namespace(ns);
    c.apply(&format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: pod, namespace: {ns}}}\nspec:\n  nodeName: {}\n  restartPolicy: Never\n  containers:\n  - {{name: app, image: busybox, command: {command}}}\n{extra}",
        p.node
    ));
    c.wait_pod(ns, "pod", "app running", &p, |pod| container_running(pod, "app"));
    p
}

/// kubectl for a long-running command, killed after the harness's deadline
/// so a broken stream fails the test instead of hanging it.
fn kubectl_bounded(c: &Cluster, args: &[&str]) -> Command {
    let mut cmd = Command::new("timeout");
    cmd.arg("120").arg(c.bin.join("kubectl")).arg("--kubeconfig").arg(&c.admin).args(args);
    cmd
}

/// kubectl with `args`, `input` on its stdin.
fn kubectl(c: &Cluster, args: &[&str], input: &[u8]) -> Output {
    let mut child = c.kubectl_cmd().args(args).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("kubectl");
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    out
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A WebSocket client straight to the kubelet server (as kube-apiserver
/// passes `channel.k8s.io` protocols through), with the cluster admin's
/// certificate. argv: port, path, subprotocol, cert, key, then messages to
/// send as `<channel>:<text>`. Prints each message received as JSON
/// `[channel, text]`, then `close` when the server closes.
const WS_CLIENT: &str = r#"
import base64, json, os, socket, ssl, struct, sys
port, path, proto, cert, key = sys.argv[1:6]
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
ctx.load_cert_chain(cert, key)
s = ctx.wrap_socket(socket.create_connection(('127.0.0.1', int(port)), timeout=60), server_hostname='localhost')
k = base64.b64encode(os.urandom(16)).decode()
s.sendall(('GET %s HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: %s\r\n\r\n' % (path, k, proto)).encode())
buf = b''
while b'\r\n\r\n' not in buf:
    d = s.recv(4096)
    if not d:
        print('no response'); sys.exit(1)
    buf += d
head, buf = buf.split(b'\r\n\r\n', 1)
if not head.startswith(b'HTTP/1.1 101'):
    print(head.decode()); sys.exit(1)
b64 = 'base64' in proto
def send(ch, data):
    payload = (str(ch).encode() + base64.b64encode(data)) if b64 else bytes([ch]) + data
    mask = os.urandom(4)
    hdr = bytes([0x81 if b64 else 0x82])
    hdr += bytes([0x80 | len(payload)]) if len(payload) < 126 else bytes([0x80 | 126]) + struct.pack('>H', len(payload))
    s.sendall(hdr + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))
def need(n):
    global buf
    while len(buf) < n:
        d = s.recv(65536)
        if not d:
            raise EOFError
        buf += d
    out, buf = buf[:n], buf[n:]
    return out
for m in sys.argv[6:]:
    ch, text = m.split(':', 1)
    send(int(ch), text.encode().decode('unicode_escape').encode('latin-1'))
try:
    while True:
        b0, b1 = need(2)
        n = b1 & 0x7f
        if n == 126:
            n = struct.unpack('>H', need(2))[0]
        elif n == 127:
            n = struct.unpack('>Q', need(8))[0]
        data = need(n)
        op = b0 & 0x0f
        if op == 8:
            print('close'); break
        if op in (1, 2):
            ch, body = (data[0] - 48, base64.b64decode(data[1:])) if b64 else (data[0], data[1:])
            print(json.dumps([ch, body.decode('latin-1')]))
except EOFError:
    print('eof')
"#;

/// Runs [`WS_CLIENT`]; the messages received (channel, text) and whether
/// the server closed the WebSocket properly.
fn websocket(c: &Cluster, p: &Picolet, path: &str, proto: &str, send: &[&str]) -> (Vec<(u64, String)>, bool) {
    let pki = c.dir.join("pki");
    let out = Command::new("timeout")
        .args(["120", "python3", "-c", WS_CLIENT, &p.server_port.to_string(), path, proto])
        .arg(pki.join("admin.crt"))
        .arg(pki.join("admin.key"))
        .args(send)
        .output()
        .unwrap();
    let report = text(&out.stdout);
    assert!(out.status.success(), "{report}{}", text(&out.stderr));
    let msgs = report
        .lines()
        .filter_map(|l| serde_json::from_str::<(u64, String)>(l).ok())
        .collect();
    (msgs, report.lines().last() == Some("close"))
}

#[test]
fn exec_runs_commands_with_stdin_output_and_exit_codes() {
    let c = cluster();
    let extra = "  - {name: quick, image: busybox, command: [sh, -c, 'exit 0']}\n";
    let p = pod_on_node(c, "exec", "ex", extra, "[sleep, '100000']");
    let ex = |args: &[&str], input: &[u8]| {
        let mut a = vec!["exec", "-n", "ex", "pod", "-c", "app"];
        a.extend_from_slice(args);
        kubectl(c, &a, input)
    };

    let out = ex(&["--", "echo", "hi"], b"");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "hi\n");

    // stdout and stderr apart.
    let out = ex(&["--", "sh", "-c", "echo out; echo err >&2"], b"");
    assert_eq!((text(&out.stdout).as_str(), text(&out.stderr).as_str()), ("out\n", "err\n"));

    // stdin piped in, to its end.
    let out = ex(&["-i", "--", "cat"], b"x\n");
    assert_eq!(text(&out.stdout), "x\n", "{}", text(&out.stderr));
    let big: Vec<u8> = (0..1_000_000u32).map(|i| b'a' + (i % 26) as u8).collect();
    let out = ex(&["-i", "--", "wc", "-c"], &big);
    assert_eq!(text(&out.stdout).trim(), "1000000", "{}", text(&out.stderr));

    // Large output arrives whole.
    let out = ex(&["--", "sh", "-c", "yes abcdefghij | head -c 3000000"], b"");
    assert_eq!(out.stdout.len(), 3_000_000, "{}", text(&out.stderr));

    // The exit code comes back as kubectl's own.
    let out = ex(&["--", "sh", "-c", "exit 3"], b"");
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("command terminated with exit code 3"), "{}", text(&out.stderr));

    // A command that does not exist: an error, not a hang.
    let out = ex(&["--", "no-such-command"], b"");
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("no-such-command"), "{}", text(&out.stderr));

    // A container that is not running.
    c.wait_pod("ex", "pod", "quick terminated", &p, |pod| {
        pod["status"]["containerStatuses"].as_array().into_iter().flatten().any(|s| s["name"] == "quick" && s["state"]["terminated"].is_object())
    });
    let out = kubectl(c, &["exec", "-n", "ex", "pod", "-c", "quick", "--", "true"], b"");
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("container not found"), "{}", text(&out.stderr));

    // WebSocket straight to the kubelet (what the API server passes through
    // for clients other than kubectl): the v4 status, and base64 channels.
    let path = "/exec/ex/pod/app?command=sh&command=-c&command=head+-n1;echo+e+>%262;exit+5&input=1&output=1&error=1";
    let (msgs, closed) = websocket(c, &p, path, "v4.channel.k8s.io", &["0:hello\\n"]);
    assert!(closed, "{msgs:?}");
    assert_eq!(msgs[0], (1, String::new()), "first: the empty 'connected' message");
    let data = |ch: u64| msgs.iter().filter(|m| m.0 == ch).map(|m| m.1.as_str()).collect::<String>();
    assert_eq!((data(1).as_str(), data(2).as_str()), ("hello\n", "e\n"), "{msgs:?}");
    let status: Value = serde_json::from_str(&data(3)).unwrap();
    assert_eq!(status["reason"], "NonZeroExitCode", "{status}");
    assert_eq!(status["details"]["causes"][0]["message"], "5", "{status}");
    let (msgs, closed) = websocket(c, &p, path, "base64.channel.k8s.io", &["0:hi\\n"]);
    assert!(closed);
    assert!(msgs.contains(&(1, "hi\n".to_string())), "{msgs:?}");

    // /run (straight to the kubelet server: the API server's node proxy
    // refuses loopback node addresses): a command's output, or its failure.
    let run = |cmd: &str| {
        let pki = c.dir.join("pki");
        let out = Command::new("curl")
            .args(["-sk", "--max-time", "60", "-X", "POST", "-w", "\n%{http_code}", "--cert"])
            .arg(pki.join("admin.crt"))
            .arg("--key")
            .arg(pki.join("admin.key"))
            .arg(format!("https://127.0.0.1:{}/run/ex/pod/app?cmd={cmd}", p.server_port))
            .output()
            .unwrap();
        text(&out.stdout)
    };
    assert_eq!(run("echo+run+ok"), "run ok\n\n200");
    // (`cmd` is split on spaces, as upstream: no quoting.)
    let failed = run("cat+/nowhere");
    assert!(failed.ends_with("\n500") && failed.contains("exited with 1") && failed.contains("/nowhere"), "{failed}");
}

/// Runs `kubectl exec -it ... sh` under a pty of 40x100, checks what the
/// shell sees, resizes to 50x120, checks again, exits with 7. Line ends are
/// matched as `\r*\n`: now and then (under load) the shell's lines arrive
/// as `\r\r\n` from the container's pty, which runc sets up (runc clears
/// ONLCR on it while the shell starts); picolet's own pty is raw and passes
/// bytes as they are. A terminal shows both the same.
const TTY_SCRIPT: &str = r#"
import fcntl, os, re, select, struct, subprocess, sys, termios, time
m, s = os.openpty()
fcntl.ioctl(m, termios.TIOCSWINSZ, struct.pack('HHHH', 40, 100, 0, 0))
def ctty():
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)
p = subprocess.Popen(sys.argv[1:], stdin=s, stdout=s, stderr=s, start_new_session=True, preexec_fn=ctty)
os.close(s)
buf = b''
deadline = time.time() + 60
def expect(pat):
    global buf
    while True:
        mt = re.search(pat, buf)
        if mt:
            buf = buf[mt.end():]
            return mt
        left = deadline - time.time()
        if left <= 0:
            print('TIMEOUT waiting for %r; got %r' % (pat, buf)); sys.exit(2)
        if select.select([m], [], [], left)[0]:
            try:
                d = os.read(m, 4096)
            except OSError:
                d = b''
            if not d:
                print('EOF waiting for %r; got %r' % (pat, buf)); sys.exit(3)
            buf += d
def send(t):
    os.write(m, t.encode())
def size(n):
    send('stty size; echo S%d-$((%d+1))\n' % (n, n))
    mt = expect(rb'(\d+) (\d+)\r*\nS%d-%d' % (n, n + 1))
    return mt.group(1).decode() + 'x' + mt.group(2).decode()
send('echo READY-$((6*7))\n')
expect(rb'READY-42')
if os.environ.get('HANGUP'):
    p.kill()
    print('rc', p.wait())
    sys.exit(0)
print('size1', size(1))
fcntl.ioctl(m, termios.TIOCSWINSZ, struct.pack('HHHH', 50, 120, 0, 0))
# The resize travels on its own stream: ask until the shell sees it.
n = 2
while size(n) != '50x120' and time.time() < deadline:
    n += 2
print('size2', size(n + 2))
send('tty; echo T-$((3+3))\n')
print('tty', expect(rb'(/dev/pts/\d+)\r*\nT-6').group(1).decode())
send('exit 7\n')
print('rc', p.wait())
"#;

/// `kubectl exec -it ... sh` driven by TTY_SCRIPT under a pty; `hangup`: kill
/// kubectl mid-session instead of exiting the shell.
fn tty_session(c: &Cluster, hangup: bool) -> Output {
    let mut cmd = Command::new("python3");
    if hangup {
        cmd.env("HANGUP", "1");
    }
    cmd.arg("-c")
        .arg(TTY_SCRIPT)
        .arg(c.bin.join("kubectl"))
        .arg("--kubeconfig")
        .arg(&c.admin)
        .args(["exec", "-it", "-n", "tty", "pod", "--", "sh"])
        .output()
        .expect("python3")
}

#[test]
fn exec_with_a_terminal_follows_its_size() {
    let c = cluster();
    let p = pod_on_node(c, "tty", "tty", "", "[sleep, '100000']");
    let out = tty_session(c, false);
    let report = text(&out.stdout);
    assert!(out.status.success(), "{report}{}", text(&out.stderr));
    let lines: Vec<&str> = report.lines().collect();
    assert_eq!(lines[0], "size1 40x100", "{report}");
    assert_eq!(lines[1], "size2 50x120", "{report}");
    assert!(lines[2].starts_with("tty /dev/pts/"), "{report}");
    assert_eq!(lines[3], "rc 7", "{report}");

    // kubectl killed mid-session: its shell is hung up, not left behind.
    let out = tty_session(c, true);
    assert!(out.status.success(), "{}{}", text(&out.stdout), text(&out.stderr));
    let shells = || {
        let ps = c.kubectl(&["exec", "-n", "tty", "pod", "--", "ps", "-o", "comm"]);
        ps.lines().filter(|l| l.trim() == "sh").count()
    };
    c.wait("the orphaned shell to be hung up", Some(&p), || shells() == 0);
}

#[test]
fn attach_streams_output_until_the_container_ends() {
    let c = cluster();
    let cmd = "[sh, -c, 'i=0; while [ ! -f /tmp/stop ]; do echo tick-$i; echo tock-$i >&2; i=$((i+1)); sleep 0.2; done; echo bye']";
    let p = pod_on_node(c, "att", "att", "", cmd);
    let mut child = kubectl_bounded(c, &["attach", "-n", "att", "pod", "-c", "app"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kubectl attach");
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut stderr = child.stderr.take().unwrap();
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    // New output arrives while attached.
    let mut seen = Vec::new();
    let mut line = String::new();
    while seen.len() < 3 {
        line.clear();
        assert!(stdout.read_line(&mut line).unwrap() > 0, "attach ended early: {seen:?}\n{}", p.picolet_log());
        seen.push(line.trim().to_string());
    }
    assert!(seen.iter().all(|l| l.starts_with("tick-")), "{seen:?}");
    // The container ends: so does the attach, with its last words and success.
    assert!(kubectl(c, &["exec", "-n", "att", "pod", "--", "touch", "/tmp/stop"], b"").status.success());
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).unwrap();
    assert!(rest.trim_end().ends_with("bye"), "{rest}");
    let status = child.wait().unwrap();
    let err = err_reader.join().unwrap();
    assert!(status.success(), "{err}");
    assert!(err.contains("tock-"), "{err}");
    // The ticks came in order, with none missing.
    let mut all: Vec<String> = seen;
    all.extend(rest.lines().map(str::to_string));
    let n: Vec<u32> = all.iter().filter_map(|l| l.strip_prefix("tick-")?.parse().ok()).collect();
    assert!(n.windows(2).all(|w| w[1] == w[0] + 1), "{n:?}");
}

#[test]
fn port_forward_reaches_a_server_in_the_pod() {
    let c = cluster();
    let p = pod_on_node(c, "pf", "pf", "", "[httpd, -f, -p, '8080', -h, /var/www]");
    let mut child = kubectl_bounded(c, &["port-forward", "-n", "pf", "pod", ":8080", ":9"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kubectl port-forward");
    // "Forwarding from 127.0.0.1:NNNN -> 8080", then the same for 9.
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut ports = Vec::new();
    let mut line = String::new();
    while ports.len() < 2 {
        line.clear();
        assert!(stdout.read_line(&mut line).unwrap() > 0, "port-forward ended\n{}", p.picolet_log());
        if let Some(rest) = line.strip_prefix("Forwarding from 127.0.0.1:") {
            ports.push(rest.split(' ').next().unwrap().parse::<u16>().unwrap());
        }
    }
    let get = |port: u16| {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        s.write_all(b"GET /index.html HTTP/1.0\r\n\r\n").unwrap();
        let mut resp = String::new();
        let _ = s.read_to_string(&mut resp);
        resp
    };
    // Several connections, one after another and at once.
    for _ in 0..2 {
        let resp = get(ports[0]);
        assert!(resp.starts_with("HTTP/1.") && resp.ends_with("hello from busybox\n"), "{resp}");
    }
    let first = ports[0];
    let at_once: Vec<_> = (0..4).map(|_| std::thread::spawn(move || get(first))).collect();
    for t in at_once {
        assert!(t.join().unwrap().ends_with("hello from busybox\n"));
    }
    // The same over WebSocket straight to the kubelet: each channel starts
    // with its port; the session ends once the server in the pod has answered.
    let (msgs, closed) = websocket(c, &p, "/portForward/pf/pod?port=8080", "v4.channel.k8s.io", &["0:GET /index.html HTTP/1.0\\r\\n\\r\\n"]);
    assert!(closed, "{msgs:?}");
    let port: String = 8080u16.to_le_bytes().iter().map(|&b| char::from(b)).collect();
    assert_eq!(&msgs[..2], &[(0, port.clone()), (1, port)], "{msgs:?}");
    let body: String = msgs[2..].iter().filter(|m| m.0 == 0).map(|m| m.1.as_str()).collect();
    assert!(body.starts_with("HTTP/1.") && body.ends_with("hello from busybox\n"), "{body}");

    // Nothing listens on 9: that connection ends without data, and kubectl says why.
    assert_eq!(get(ports[1]), "");
    let _ = child.kill();
    let _ = child.wait();
    let mut err = String::new();
    child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    assert!(err.contains("connection refused") || err.contains("failed to connect"), "{err}");
}
