"""Test certificates for every TLS peer (token endpoint, gateway, broker).

    make_certs(dir) -> dict of absolute paths:
        ca, ca_key                 test CA ("m2z test CA")
        server_cert, server_key    localhost (SAN DNS:localhost, IP:127.0.0.1), by the CA
        other_ca, other_ca_key     an unrelated CA (for "wrong CA" tests)
        wrong_name_cert, wrong_name_key
                                   SAN DNS:not-localhost.example, by the test CA
                                   (hostname mismatch tests)
        client_cert, client_key    a client certificate by the test CA (MQTT TLS)
        dir                        DIR itself

Idempotent: files already present are reused (a lock makes concurrent
callers safe). CLI: python3 tests/peers/certs.py DIR (prints the paths).
Keys are EC P-256, certificates valid from yesterday for ten years.
"""

import datetime
import fcntl
import ipaddress
import json
import os
import sys

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

NAMES = ["ca", "ca_key", "server_cert", "server_key", "other_ca", "other_ca_key",
         "wrong_name_cert", "wrong_name_key", "client_cert", "client_key"]

FILES = {
    "ca": "ca.pem", "ca_key": "ca.key",
    "server_cert": "server.pem", "server_key": "server.key",
    "other_ca": "other-ca.pem", "other_ca_key": "other-ca.key",
    "wrong_name_cert": "wrong-name.pem", "wrong_name_key": "wrong-name.key",
    "client_cert": "client.pem", "client_key": "client.key",
}


def _name(cn):
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "mqtt2zeebe tests"),
                      x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _builder(subject, issuer, pub):
    now = datetime.datetime.now(datetime.timezone.utc)
    return (x509.CertificateBuilder()
            .subject_name(subject).issuer_name(issuer).public_key(pub)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=3650)))


def _make_ca(cn):
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (_builder(_name(cn), _name(cn), key.public_key())
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False,
                                         encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256()))
    return cert, key


def _make_leaf(cn, ca_cert, ca_key, dns=(), ips=(), client=False):
    key = ec.generate_private_key(ec.SECP256R1())
    b = (_builder(_name(cn), ca_cert.subject, key.public_key())
         .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
         .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH if client
                                               else ExtendedKeyUsageOID.SERVER_AUTH]),
                        critical=False)
         .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                        critical=False))
    sans = [x509.DNSName(d) for d in dns] + [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
    if sans:
        b = b.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return b.sign(ca_key, hashes.SHA256()), key


def _write(path, data, mode=0o644):
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def _cert_pem(c):
    return c.public_bytes(serialization.Encoding.PEM)


def _key_pem(k):
    return k.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                           serialization.NoEncryption())


def _generate(paths):
    ca, ca_key = _make_ca("m2z test CA")
    other, other_key = _make_ca("m2z unrelated CA")
    server, server_key = _make_leaf("localhost", ca, ca_key, dns=["localhost"], ips=["127.0.0.1"])
    wrong, wrong_key = _make_leaf("not-localhost.example", ca, ca_key,
                                  dns=["not-localhost.example"])
    client, client_key = _make_leaf("m2z-test-client", ca, ca_key, client=True)
    for name, obj in [("ca", ca), ("other_ca", other), ("server_cert", server),
                      ("wrong_name_cert", wrong), ("client_cert", client)]:
        _write(paths[name], _cert_pem(obj))
    for name, obj in [("ca_key", ca_key), ("other_ca_key", other_key),
                      ("server_key", server_key), ("wrong_name_key", wrong_key),
                      ("client_key", client_key)]:
        _write(paths[name], _key_pem(obj), 0o600)


def make_certs(directory):
    directory = os.path.abspath(directory)
    os.makedirs(directory, exist_ok=True)
    paths = {k: os.path.join(directory, v) for k, v in FILES.items()}
    with open(os.path.join(directory, ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not all(os.path.exists(p) for p in paths.values()):
            _generate(paths)
    paths["dir"] = directory
    return paths


def main(argv):
    if len(argv) != 2:
        print("usage: certs.py DIR", file=sys.stderr)
        return 2
    print(json.dumps(make_certs(argv[1]), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
