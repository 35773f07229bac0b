"""A local CA and the controller's server certificate (ECDSA P-256) for HTTPS on port 8080.

Devices trust only the CA (provisioned as ``ca_cert`` in NVS, see
docs/provisioning.md); the controller serves ``server.crt`` / ``server.key``.
Key files are written with mode 0600.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from csi_ota.errors import CsiOtaError
from csi_ota.fileio import write_atomic
from csi_ota.keys import PRIVATE_KEY_FILE_MODE

CA_CERT_FILE = "ca.crt"
CA_KEY_FILE = "ca.key"
SERVER_CERT_FILE = "server.crt"
SERVER_KEY_FILE = "server.key"
DEFAULT_HOSTNAMES = ("localhost", "127.0.0.1", "::1")
CA_VALIDITY_DAYS = 3650
SERVER_VALIDITY_DAYS = 825  # the longest lifetime TLS clients commonly accept
CA_COMMON_NAME = "csi-ota local CA"
SERVER_COMMON_NAME = "csi-ota controller"
CLOCK_SKEW = dt.timedelta(minutes=5)  # notBefore slightly in the past for devices with a late clock

_DNS_LABEL = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")


class CertFiles(NamedTuple):
    cert: Path
    key: Path


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "csi-ota"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def san_for(hostname: str) -> x509.GeneralName:
    """An IP address or a DNS name SAN; CsiOtaError for anything else."""
    try:
        return x509.IPAddress(ipaddress.ip_address(hostname))
    except ValueError:
        pass
    labels = hostname.rstrip(".").split(".")
    if len(hostname) > 253 or not all(_DNS_LABEL.match(label) for label in labels):
        raise CsiOtaError(f"hostname {hostname!r} is neither an IP address nor a valid DNS name")
    return x509.DNSName(hostname.rstrip(".").lower())


def _ensure_dir(out_dir: str | os.PathLike[str]) -> Path:
    path = Path(out_dir)
    if path.exists() and not path.is_dir():
        raise CsiOtaError(f"{path} is not a directory")
    path.mkdir(parents=True, exist_ok=True)
    return path


def create_ca(out_dir: str | os.PathLike[str], *, force: bool = False) -> CertFiles:
    """Write a new CA (ca.crt, ca.key 0600) into ``out_dir``; refuses to replace one unless ``force``."""
    out = _ensure_dir(out_dir)
    cert_path, key_path = out / CA_CERT_FILE, out / CA_KEY_FILE
    if not force and (cert_path.exists() or key_path.exists()):
        raise CsiOtaError(f"{out} already holds a CA; devices trust it — pass force to replace it")
    key = _new_key()
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(CA_COMMON_NAME))
        .issuer_name(_name(CA_COMMON_NAME))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(now + dt.timedelta(days=CA_VALIDITY_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    write_atomic(key_path, _key_pem(key), mode=PRIVATE_KEY_FILE_MODE)
    write_atomic(cert_path, cert.public_bytes(serialization.Encoding.PEM))
    return CertFiles(cert_path, key_path)


def load_ca(ca_dir: str | os.PathLike[str]) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    path = Path(ca_dir)
    try:
        cert = x509.load_pem_x509_certificate((path / CA_CERT_FILE).read_bytes())
        key = serialization.load_pem_private_key((path / CA_KEY_FILE).read_bytes(), password=None)
    except FileNotFoundError as exc:
        raise CsiOtaError(f"CA file {exc.filename} not found (run `csi-ota certs init`)") from None
    except (ValueError, TypeError) as exc:
        raise CsiOtaError(f"CA in {path} cannot be loaded: {exc}") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise CsiOtaError(f"{path / CA_KEY_FILE} is not an ECDSA key")
    if cert.public_key() != key.public_key():
        raise CsiOtaError(f"{path / CA_CERT_FILE} and {path / CA_KEY_FILE} do not belong together")
    return cert, key


def create_server_cert(
    ca_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    hostnames: Sequence[str] = DEFAULT_HOSTNAMES,
) -> CertFiles:
    """Issue server.crt / server.key (0600) for ``hostnames`` (DNS names and IPs), signed by the CA."""
    if not hostnames:
        raise CsiOtaError("at least one hostname is needed")
    names: list[x509.GeneralName] = []
    for hostname in hostnames:
        san = san_for(hostname)
        if san not in names:
            names.append(san)
    ca_cert, ca_key = load_ca(ca_dir)
    out = _ensure_dir(out_dir)
    key = _new_key()
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(SERVER_COMMON_NAME))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(min(now + dt.timedelta(days=SERVER_VALIDITY_DAYS), ca_cert.not_valid_after_utc))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    key_path, cert_path = out / SERVER_KEY_FILE, out / SERVER_CERT_FILE
    write_atomic(key_path, _key_pem(key), mode=PRIVATE_KEY_FILE_MODE)
    write_atomic(cert_path, cert.public_bytes(serialization.Encoding.PEM))
    return CertFiles(cert_path, key_path)


def init_certs(
    out_dir: str | os.PathLike[str], extra_hostnames: Sequence[str] = ()
) -> tuple[CertFiles, CertFiles, bool]:
    """`csi-ota certs init`: reuse the CA in ``out_dir`` (or create one) and issue a server cert.

    Returns (ca files, server files, whether the CA is new). Re-running keeps
    the CA the devices already trust and re-issues only the server certificate.
    """
    for hostname in extra_hostnames:
        san_for(hostname)  # reject bad input before anything is written
    out = _ensure_dir(out_dir)
    ca_new = not (out / CA_CERT_FILE).exists() and not (out / CA_KEY_FILE).exists()
    ca = create_ca(out) if ca_new else CertFiles(out / CA_CERT_FILE, out / CA_KEY_FILE)
    hostnames = list(DEFAULT_HOSTNAMES) + [h for h in extra_hostnames if h not in DEFAULT_HOSTNAMES]
    server = create_server_cert(out, out, hostnames)
    return ca, server, ca_new


def certificate_summary(cert_path: str | os.PathLike[str]) -> dict[str, object]:
    """Subject, issuer, validity and SANs of a PEM certificate (for `certs show` / --json)."""
    cert = x509.load_pem_x509_certificate(Path(cert_path).read_bytes())
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        sans = [str(v) for v in san.get_values_for_type(x509.DNSName)] + [
            str(v) for v in san.get_values_for_type(x509.IPAddress)
        ]
    except x509.ExtensionNotFound:
        sans = []
    return {
        "path": str(cert_path),
        "subject": cert.subject.rfc4514_string(),
        "issuer": cert.issuer.rfc4514_string(),
        "not_before": cert.not_valid_before_utc.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "not_after": cert.not_valid_after_utc.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "sha256_fingerprint": cert.fingerprint(hashes.SHA256()).hex(),
        "subject_alt_names": sans,
    }
