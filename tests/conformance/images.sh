#!/usr/bin/env bash
# The images the conformance specs run, as real OCI images in a registry's
# storage directory, under their upstream names:
#
#   registry.k8s.io/e2e-test-images/agnhost:2.56      the e2e build's agnhost (+ curl/nc stand-ins,
#                                                     bash-static as sh)
#   registry.k8s.io/e2e-test-images/busybox:1.37.0-1  Debian's busybox-static (also as :1.36.1-1)
#   registry.k8s.io/e2e-test-images/nonewprivs:1.3    the e2e build's nnp, setuid root
#   registry.k8s.io/e2e-test-images/nonroot:1.4       busybox with USER 1234
#   registry.k8s.io/e2e-test-images/{nginx:1.14-4,nginx:1.15-4,httpd:2.4.38-4,httpd:2.4.39-4}
#                                                     busybox httpd on port 80 (stand-ins)
#   registry.k8s.io/pause:3.10.1                      upstream's pause.c, linked statically
#
#   images.sh BINDIR    BINDIR: the output of tests/cluster/build.sh e2e
#
# Prints the storage directory (last stdout line): serve it with docker-registry
# (run.sh does, read-only) and point registries.yaml mirrors for registry.k8s.io
# and docker.io at it; a repository registry.k8s.io/X is X there (docker.io/X
# would be X too; no spec of ours names one).
# The directory lives in ${PICOLET_CLUSTER_CACHE:-/var/cache/picolet-cluster}/conformance/
# keyed by a hash of what goes into it (this script, the binaries, busybox, the
# stand-in tools' sources), built under a lock into a temp dir that is renamed:
# a rerun with nothing changed only prints it.
#
# Needs: umoci, skopeo, docker-registry, busybox-static, bash-static, gcc +
# libc6-dev (static pause), Go (the curl/nc stand-ins), root (ownership and
# setuid in layers).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
bindir=${1:?usage: images.sh BINDIR (from tests/cluster/build.sh e2e)}
source "$here/../cluster/versions.env"
cache=${PICOLET_CLUSTER_CACHE:-/var/cache/picolet-cluster}
busybox=${BUSYBOX:-/bin/busybox}
bash_static=${BASH_STATIC:-/bin/bash-static}
GO=${GO:-$(command -v go || echo /usr/local/go/bin/go)}
die() { echo "images.sh: $*" >&2; exit 1; }

for t in umoci skopeo docker-registry gcc; do command -v $t >/dev/null || die "$t not found"; done
[[ -x $bash_static ]] || die "$bash_static not found (apt-get install bash-static)"
[[ -x $bindir/agnhost && -x $bindir/nonewprivs ]] || die "$bindir has no agnhost/nonewprivs (tests/cluster/build.sh e2e)"
pause_c=$cache/gomod/k8s.io/kubernetes@$PICOLET_K8S_VERSION/build/pause/linux/pause.c
[[ -f $pause_c ]] || die "$pause_c missing (tests/cluster/build.sh e2e downloads the module)"

key=$(cat "${BASH_SOURCE[0]}" "$here/tools/"*.go "$here/tools/go.mod" "$bindir/agnhost" "$bindir/nonewprivs" \
    "$busybox" "$bash_static" "$pause_c" | sha256sum | cut -c1-16)
top=$cache/conformance
out=$top/registry-$key
if [[ -d $out ]]; then
    echo "$out"
    exit 0
fi
mkdir -p "$top"
exec 9>"$top/images.lock"
flock 9
if [[ -d $out ]]; then
    echo "$out"
    exit 0
fi
start=$SECONDS
echo "images.sh: building the conformance images into $out" >&2
rm -rf "$top"/.tmp-registry-*
work=$(mktemp -d "$top/.tmp-registry-$key.XXXXXX")
reg_pid=
cleanup() {
    [[ -n $reg_pid ]] && kill "$reg_pid" 2>/dev/null && wait "$reg_pid" 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 129' HUP
trap 'exit 130' INT
trap 'exit 143' TERM

arch=$(uname -m | sed 's/x86_64/amd64/;s/aarch64/arm64/;s/armv.*/arm/')
layout=$work/layout
umoci init --layout "$layout"

# The curl/nc stand-ins and pause, static.
(cd "$here/tools" && CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS=-mod=readonly GOCACHE=$cache/gocache \
    "$GO" build -trimpath -ldflags "-s -w" -o "$work/toolbox" .) || die "building the curl/nc stand-ins failed"
gcc -Os -static -DVERSION=v3.10.1-picolet -o "$work/pause" "$pause_c" || die "building pause failed"
strip "$work/pause" 2>/dev/null || true

# busybox_root DIR: Debian's busybox-static with every applet linked, as the
# upstream busybox image has it, and the usual passwd/group of that image.
busybox_root() {
    local root=$1 applet
    mkdir -p "$root"/{bin,etc,root,home,var/spool/mail,proc,sys,dev,usr/bin,usr/sbin,usr/local/bin}
    install -m 0755 "$busybox" "$root/bin/busybox"
    for applet in $("$busybox" --list); do
        [[ $applet == busybox ]] || ln -sf busybox "$root/bin/$applet"
    done
    cat >"$root/etc/passwd" <<'P'
root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/bin/false
bin:x:2:2:bin:/bin:/bin/false
sys:x:3:3:sys:/dev:/bin/false
sync:x:4:100:sync:/bin:/bin/sync
mail:x:8:8:mail:/var/spool/mail:/bin/false
www-data:x:33:33:www-data:/var/www:/bin/false
operator:x:37:37:Operator:/var:/bin/false
nobody:x:65534:65534:nobody:/home:/bin/false
P
    cat >"$root/etc/group" <<'G'
root:x:0:
daemon:x:1:
bin:x:2:
sys:x:3:
adm:x:4:
tty:x:5:
disk:x:6:
wheel:x:10:root
mail:x:12:
www-data:x:33:
operator:x:37:
users:x:100:
nogroup:x:65534:
G
    install -d -m 1777 "$root/tmp"
}

# image TAG POPULATE [umoci config args...]: a one-layer image from a fresh
# rootfs that POPULATE (a function, given the rootfs) fills.
image() {
    local tag=$1 populate=$2
    shift 2
    umoci new --image "$layout:$tag"
    umoci unpack --image "$layout:$tag" "$work/b-$tag"
    "$populate" "$work/b-$tag/rootfs"
    echo "picolet conformance stand-in for $tag" >"$work/b-$tag/rootfs/etc/picolet-image"
    umoci repack --image "$layout:$tag" "$work/b-$tag"
    rm -rf "$work/b-$tag"
    umoci config --image "$layout:$tag" --architecture "$arch" --os linux \
        --config.env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin "$@"
}

pop_busybox() { busybox_root "$1"; }
pop_agnhost() {
    local root=$1
    busybox_root "$root"
    install -m 0755 "$bindir/agnhost" "$root/agnhost"
    ln -s agnhost "$root/agnhost-2"
    # The https handlers (porter, the lifecycle hook specs) serve with these.
    local src=$cache/gomod/k8s.io/kubernetes@$PICOLET_K8S_VERSION/test/images/agnhost/porter
    install -m 0644 "$src/localhost.crt" "$src/localhost.key" "$root/"
    install -d -m 0755 "$root/uploads"
    install -m 0755 "$work/toolbox" "$root/usr/bin/toolbox"
    ln -s toolbox "$root/usr/bin/curl"
    ln -s toolbox "$root/usr/bin/nc"
    # /bin/sh and /bin/bash (upstream's agnhost has bash too) are Debian's
    # bash-static: Debian builds busybox's ash to run its own applets before
    # PATH, so `sh -c "... | nc -u ..."` would run busybox's nc, which has no -u.
    install -m 0755 "$bash_static" "$root/bin/bash"
    ln -sf bash "$root/bin/sh"
    # adduser -u 1000 user-defined-in-image; addgroup -g 50000 group-defined-in-image.
    echo "user-defined-in-image:x:1000:1000::/home/user-defined-in-image:/bin/sh" >>"$root/etc/passwd"
    echo "user-defined-in-image:x:1000:" >>"$root/etc/group"
    echo "group-defined-in-image:x:50000:user-defined-in-image" >>"$root/etc/group"
    install -d -o 1000 -g 1000 "$root/home/user-defined-in-image"
}
pop_nonewprivs() {
    busybox_root "$1"
    install -m 4755 -o 0 -g 0 "$bindir/nonewprivs" "$1/usr/local/bin/nnp"
}
pop_pause() { mkdir -p "$1/etc"; install -m 0755 "$work/pause" "$1/pause"; }
web_root=
pop_web() {
    busybox_root "$1"
    mkdir -p "$1$web_root"
    if [[ $web_root == */htdocs ]]; then
        echo '<html><body><h1>It works!</h1></body></html>' >"$1$web_root/index.html"
    else
        echo '<!DOCTYPE html><html><head><title>Welcome to nginx!</title></head><body><h1>Welcome to nginx!</h1></body></html>' \
            >"$1$web_root/index.html"
    fi
}

image busybox pop_busybox --config.cmd sh
image agnhost pop_agnhost --config.entrypoint /agnhost --config.cmd pause \
    --config.exposedports 80/tcp --config.exposedports 8080/tcp --config.exposedports 8081/tcp \
    --config.exposedports 9376/tcp --config.exposedports 5000/tcp
image nonewprivs pop_nonewprivs --config.cmd nnp
image nonroot pop_busybox --config.cmd sh --config.user 1234
image pause pop_pause --config.entrypoint /pause --config.user 65535:65535
web_root=/usr/share/nginx/html
for v in 1.14-4 1.15-4; do
    image "nginx-$v" pop_web --config.entrypoint httpd --config.cmd -f --config.cmd -p --config.cmd 80 \
        --config.cmd -h --config.cmd $web_root --config.exposedports 80/tcp --config.stopsignal SIGQUIT
done
web_root=/usr/local/apache2/htdocs
for v in 2.4.38-4 2.4.39-4; do
    image "httpd-$v" pop_web --config.entrypoint httpd --config.cmd -f --config.cmd -p --config.cmd 80 \
        --config.cmd -h --config.cmd $web_root --config.exposedports 80/tcp --config.stopsignal SIGWINCH
done

# Push everything into a registry of our own whose storage becomes $out.
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat >"$work/config.yml" <<EOF
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $work/storage
http:
  addr: 127.0.0.1:$port
EOF
docker-registry serve "$work/config.yml" >"$work/registry.log" 2>&1 &
reg_pid=$!
for _ in $(seq 100); do
    (echo >"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
    sleep 0.1
done
push() {
    skopeo --insecure-policy copy -q --dest-tls-verify=false "oci:$layout:$1" "docker://127.0.0.1:$port/$2" ||
        die "pushing $2 failed: $(tail -5 "$work/registry.log")"
}
e=e2e-test-images
push busybox $e/busybox:1.37.0-1
push busybox $e/busybox:1.36.1-1
push agnhost $e/agnhost:2.56
push nonewprivs $e/nonewprivs:1.3
push nonroot $e/nonroot:1.4
push pause pause:3.10.1
push nginx-1.14-4 $e/nginx:1.14-4
push nginx-1.15-4 $e/nginx:1.15-4
push httpd-2.4.38-4 $e/httpd:2.4.38-4
push httpd-2.4.39-4 $e/httpd:2.4.39-4
kill "$reg_pid"
wait "$reg_pid" 2>/dev/null || true
reg_pid=

# Older sets a day unused go (a run serving one holds no lock on it).
find "$top" -mindepth 1 -maxdepth 1 -name 'registry-*' -mtime +1 -exec rm -rf {} +
mv -T "$work/storage" "$out"
echo "images.sh: done in $((SECONDS - start))s" >&2
echo "$out"
