# shellcheck shell=bash
# Sourced by up.sh and node-kubeconfig.sh: keys, certificates and kubeconfigs
# with openssl. Keys are written as PKCS#8 PEM ("BEGIN PRIVATE KEY").

command -v openssl >/dev/null || { echo "openssl not found" >&2; exit 1; }

# new_key FILE rsa|ec
new_key() {
    local out=$1 type=${2:-rsa}
    (
        umask 077
        case $type in
            rsa) openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$out" 2>/dev/null ;;
            ec) openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$out" 2>/dev/null ;;
            *) echo "unknown key type $type (rsa or ec)" >&2; exit 1 ;;
        esac
    ) || { echo "openssl could not create the key $out" >&2; return 1; }
}

# new_ca DIR: DIR/ca.key, DIR/ca.crt
new_ca() {
    local d=$1
    new_key "$d/ca.key" rsa
    openssl req -x509 -new -key "$d/ca.key" -sha256 -days 3650 -subj "/CN=picolet-test-ca" \
        -addext "basicConstraints=critical,CA:TRUE" \
        -addext "keyUsage=critical,digitalSignature,keyEncipherment,keyCertSign" \
        -out "$d/ca.crt" 2>/dev/null || { echo "openssl could not create the CA" >&2; return 1; }
}

# sign CADIR KEY CERT SUBJECT client|server [SAN]
# Signs a certificate for KEY with the CA in CADIR. SUBJECT is like
# /O=system:nodes/CN=system:node:foo; SAN like IP:127.0.0.1,DNS:localhost.
sign() {
    local cadir=$1 key=$2 cert=$3 subj=$4 usage=$5 san=${6:-} ext
    ext=$(mktemp)
    {
        echo "basicConstraints=critical,CA:FALSE"
        echo "keyUsage=critical,digitalSignature,keyEncipherment"
        case $usage in
            client) echo "extendedKeyUsage=clientAuth" ;;
            server) echo "extendedKeyUsage=serverAuth" ;;
        esac
        [[ -z $san ]] || echo "subjectAltName=$san"
    } >"$ext"
    # A random serial: no serial file to share between concurrent callers.
    if ! openssl req -new -key "$key" -subj "$subj" 2>/dev/null |
        openssl x509 -req -CA "$cadir/ca.crt" -CAkey "$cadir/ca.key" -set_serial "0x$(openssl rand -hex 16)" \
            -sha256 -days 3650 -extfile "$ext" -out "$cert" 2>/dev/null; then
        rm -f "$ext"
        echo "openssl could not sign $cert ($subj)" >&2
        return 1
    fi
    rm -f "$ext"
}

# write_kubeconfig OUT SERVER CA USER cert CERT KEY
# write_kubeconfig OUT SERVER CA USER token TOKEN
# write_kubeconfig OUT SERVER CA USER inline CERT KEY   (all as *-data)
# Written to OUT.tmp and renamed, mode 600.
write_kubeconfig() {
    local out=$1 server=$2 ca=$3 user=$4 kind=$5 ca_line cred
    case $kind in
        cert) ca_line="certificate-authority: $ca"
              cred="    client-certificate: $6
    client-key: $7" ;;
        token) ca_line="certificate-authority: $ca"
              cred="    token: $6" ;;
        inline) ca_line="certificate-authority-data: $(base64 -w0 <"$ca")"
              cred="    client-certificate-data: $(base64 -w0 <"$6")
    client-key-data: $(base64 -w0 <"$7")" ;;
        *) echo "write_kubeconfig: unknown kind $kind" >&2; return 1 ;;
    esac
    (umask 077 && cat >"$out.tmp" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: picolet-test
  cluster:
    server: $server
    $ca_line
users:
- name: $user
  user:
$cred
contexts:
- name: picolet-test
  context:
    cluster: picolet-test
    user: $user
current-context: picolet-test
EOF
    ) && mv -f "$out.tmp" "$out"
}
