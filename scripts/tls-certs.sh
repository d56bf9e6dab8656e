#!/bin/sh
# Makes a CA, a server certificate and a client certificate for TLS consoles,
# laid out as tls-creds-x509 directories (QEMU's file names), usable by qchar
# (rustls) and QEMU 7.2 (GnuTLS) alike.
#
#   scripts/tls-certs.sh [-t openssl|certtool] [-k ecdsa|rsa] [-c CLIENT-CN] OUTDIR [NAME...]
#
#   -t   the tool (default openssl)
#   -k   key type (default ecdsa, P-256)
#   -c   the client certificate's CN (default client.qchar.test)
#   NAME the names and addresses clients will use in host= (default:
#        localhost 127.0.0.1 ::1); each goes into the server's subjectAltName
#
# Writes OUTDIR/ca/{ca-cert,ca-key}.pem, OUTDIR/server/ (dir= of
# endpoint=server: ca-cert.pem server-cert.pem server-key.pem) and
# OUTDIR/client/ (dir= of endpoint=client: ca-cert.pem client-cert.pem
# client-key.pem), then prints the client's identity for authz-simple.
#
# What rustls needs beyond what GnuTLS accepts, and these certificates have:
# X.509 v3; the CA with basicConstraints CA:TRUE and keyCertSign; each name a
# client puts in host= in the server's subjectAltName (no fallback to the
# CN); extendedKeyUsage serverAuth / clientAuth; ECDSA keys in PKCS#8 with a
# 32-byte scalar (certtool 3.7 writes some with 33 bytes; they are
# re-encoded with openssl when it is there).
set -eu

tool=openssl key=ecdsa cn=client.qchar.test
while getopts t:k:c: o; do
    case $o in
    t) tool=$OPTARG ;;
    k) key=$OPTARG ;;
    c) cn=$OPTARG ;;
    *) exit 2 ;;
    esac
done
shift $((OPTIND - 1))
out=${1:?usage: $0 [-t openssl|certtool] [-k ecdsa|rsa] [-c CLIENT-CN] OUTDIR [NAME...]}
shift
[ $# -gt 0 ] || set -- localhost 127.0.0.1 ::1
case $tool in openssl | certtool) ;; *) echo "$0: -t openssl or certtool" >&2; exit 2 ;; esac
case $key in ecdsa | rsa) ;; *) echo "$0: -k ecdsa or rsa" >&2; exit 2 ;; esac

mkdir -p "$out/ca" "$out/server" "$out/client"
umask 077
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

is_ip() { case $1 in *:* | [0-9]*.[0-9]*.[0-9]*.[0-9]*) return 0 ;; *) return 1 ;; esac; }

# --- keys
newkey() { # FILE
    if [ "$tool" = openssl ]; then
        if [ "$key" = ecdsa ]; then
            openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null
        else
            openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$1" 2>/dev/null
        fi
    else
        if [ "$key" = ecdsa ]; then
            certtool --generate-privkey --key-type=ecdsa --curve=secp256r1 --outfile "$1" 2>/dev/null
            if command -v openssl >/dev/null; then
                openssl pkey -in "$1" -out "$1.p8" && mv "$1.p8" "$1"
            fi
        else
            certtool --generate-privkey --key-type=rsa --bits=2048 --outfile "$1" 2>/dev/null
        fi
    fi
}
newkey "$out/ca/ca-key.pem"
newkey "$out/server/server-key.pem"
newkey "$out/client/client-key.pem"

# RSA leaves may also do RSA key exchange (TLS 1.2, GnuTLS peers).
leaf_ku=digitalSignature
[ "$key" = rsa ] && leaf_ku=digitalSignature,keyEncipherment

if [ "$tool" = openssl ]; then
    openssl req -new -x509 -key "$out/ca/ca-key.pem" -out "$out/ca/ca-cert.pem" \
        -days 3650 -sha256 -subj "/O=qchar/CN=qchar console CA" \
        -addext "basicConstraints=critical,CA:TRUE" \
        -addext "keyUsage=critical,keyCertSign,cRLSign" \
        -addext "subjectKeyIdentifier=hash"
    san=
    for n in "$@"; do
        if is_ip "$n"; then s="IP:$n"; else s="DNS:$n"; fi
        san=${san:+$san,}$s
    done
    sign() { # ROLE SUBJECT EKU [SAN]
        openssl req -new -key "$out/$1/$1-key.pem" -subj "$2" -out "$work/$1.csr"
        {
            echo "basicConstraints=critical,CA:FALSE"
            echo "keyUsage=critical,$leaf_ku"
            echo "extendedKeyUsage=$3"
            echo "subjectKeyIdentifier=hash"
            echo "authorityKeyIdentifier=keyid"
            [ -z "${4:-}" ] || echo "subjectAltName=$4"
        } >"$work/$1.ext"
        openssl x509 -req -in "$work/$1.csr" -CA "$out/ca/ca-cert.pem" \
            -CAkey "$out/ca/ca-key.pem" -set_serial "0x$(openssl rand -hex 8)" \
            -days 3650 -sha256 -extfile "$work/$1.ext" -out "$out/$1/$1-cert.pem" 2>/dev/null
    }
    sign server "/O=qchar/CN=$1" serverAuth "$san"
    sign client "/C=GB/ST=London/L=City Of London/O=qchar/OU=consoles/CN=$cn" clientAuth
else
    cat >"$work/ca.info" <<EOF
organization = qchar
cn = qchar console CA
expiration_days = 3650
ca
cert_signing_key
crl_signing_key
EOF
    certtool --generate-self-signed --load-privkey "$out/ca/ca-key.pem" \
        --template "$work/ca.info" --outfile "$out/ca/ca-cert.pem" 2>/dev/null
    {
        echo "organization = qchar"
        echo "cn = $1"
        for n in "$@"; do
            if is_ip "$n"; then echo "ip_address = $n"; else echo "dns_name = $n"; fi
        done
        echo "expiration_days = 3650"
        echo "tls_www_server"
        echo "signing_key"
        [ "$key" = ecdsa ] || echo "encryption_key"
    } >"$work/server.info"
    {
        echo "country = GB"
        echo "state = London"
        echo "locality = City Of London"
        echo "organization = qchar"
        echo "unit = consoles"
        echo "cn = $cn"
        echo "expiration_days = 3650"
        echo "tls_www_client"
        echo "signing_key"
        [ "$key" = ecdsa ] || echo "encryption_key"
    } >"$work/client.info"
    for role in server client; do
        certtool --generate-certificate --load-ca-certificate "$out/ca/ca-cert.pem" \
            --load-ca-privkey "$out/ca/ca-key.pem" --load-privkey "$out/$role/$role-key.pem" \
            --template "$work/$role.info" --outfile "$out/$role/$role-cert.pem" 2>/dev/null
    done
fi

cp "$out/ca/ca-cert.pem" "$out/server/ca-cert.pem"
cp "$out/ca/ca-cert.pem" "$out/client/ca-cert.pem"
chmod 644 "$out"/*/ca-cert.pem "$out"/server/server-cert.pem "$out"/client/client-cert.pem
echo "C=GB,ST=London,L=City Of London,O=qchar,OU=consoles,CN=$cn"
