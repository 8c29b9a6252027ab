# Creates test credentials with certtool and psktool (gnutls-bin), in
# QEMU's tls-creds-x509 and tls-creds-psk directory layouts, the way
# docs/security.md tells operators to (sourced; needs $T).
#
#   $T/pki/server      ca-cert.pem server-cert.pem server-key.pem
#   $T/pki/client      ca-cert.pem client-cert.pem client-key.pem
#   $T/pki/expired     a client whose certificate expired in 2021
#   $T/pki/rogue       a client and server signed by another CA, and
#                      that CA: it trusts no one here
#   $T/pki/foreign     the rogue client's certificate, trusting our CA
#   $T/pki/nocert      a client with only the CA (no certificate)
#   $T/psk/{good,bad}  keys.psk for user "qemu" (bad: another key)
# CLIENT_DN is the source's distinguished name as tls-authz compares it.
mkcerts() {
    command -v certtool >/dev/null && command -v psktool >/dev/null ||
        fail "certtool/psktool not found: install gnutls-bin (make check does)"
    local P=$T/pki
    mkdir -p "$P"/{ca,ca2,server,client,expired,rogue,nocert} "$T"/psk/{good,bad}
    _ca "$P/ca" "ramflow test CA"
    _ca "$P/ca2" "rogue CA"
    _cert "$P/ca" "$P/server" server "cn = localhost
dns_name = localhost
ip_address = 127.0.0.1
ip_address = ::1
tls_www_server"
    _cert "$P/ca" "$P/client" client "cn = source.example
organization = ramflow tests
tls_www_client"
    _cert "$P/ca" "$P/expired" client "cn = expired.example
organization = ramflow tests
activation_date = \"2020-01-01 00:00:00\"
expiration_date = \"2021-01-01 00:00:00\"
tls_www_client"
    _cert "$P/ca2" "$P/rogue" client "cn = source.example
organization = ramflow tests
tls_www_client"
    _cert "$P/ca2" "$P/rogue" server "cn = localhost
ip_address = 127.0.0.1
tls_www_server"
    for d in server client expired nocert; do cp "$P/ca/ca-cert.pem" "$P/$d/"; done
    cp "$P/ca2/ca-cert.pem" "$P/rogue/"
    mkdir -p "$P/foreign"
    cp "$P/ca/ca-cert.pem" "$P/rogue/client-cert.pem" "$P/rogue/client-key.pem" \
        "$P/foreign/"
    psktool -u qemu -p "$T/psk/good/keys.psk" >/dev/null 2>&1 || fail "psktool"
    psktool -u qemu -p "$T/psk/bad/keys.psk" >/dev/null 2>&1 || fail "psktool"
    CLIENT_DN=$(certtool -i --infile "$P/client/client-cert.pem" |
                sed -n 's/^[[:space:]]*Subject: //p')
    [ -n "$CLIENT_DN" ] || fail "cannot read the client certificate's DN"
}

# _ca DIR CN: a self-signed CA (ca-cert.pem, ca-key.pem) in DIR.
_ca() {
    certtool --generate-privkey --key-type=ecdsa --outfile "$1/ca-key.pem" \
        >/dev/null 2>&1 || fail "certtool: CA key"
    printf 'cn = %s\nca\ncert_signing_key\nexpiration_days = 3650\n' "$2" \
        >"$1/ca.tmpl"
    certtool --generate-self-signed --load-privkey "$1/ca-key.pem" \
        --template "$1/ca.tmpl" --outfile "$1/ca-cert.pem" >/dev/null 2>&1 ||
        fail "certtool: CA"
}

# _cert CADIR DIR ROLE TEMPLATE: ROLE-cert.pem and ROLE-key.pem in DIR.
_cert() {
    local ca=$1 dir=$2 role=$3
    printf '%s\nsigning_key\nencryption_key\n' "$4" >"$dir/$role.tmpl"
    grep -q expiration "$dir/$role.tmpl" ||
        echo "expiration_days = 365" >>"$dir/$role.tmpl"
    certtool --generate-privkey --key-type=ecdsa \
        --outfile "$dir/$role-key.pem" >/dev/null 2>&1 ||
        fail "certtool: $role key"
    certtool --generate-certificate --load-privkey "$dir/$role-key.pem" \
        --load-ca-certificate "$ca/ca-cert.pem" \
        --load-ca-privkey "$ca/ca-key.pem" --template "$dir/$role.tmpl" \
        --outfile "$dir/$role-cert.pem" >/dev/null 2>&1 ||
        fail "certtool: $role certificate"
}
