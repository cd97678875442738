"""Build signed HEPiX image lists for tests: a CA, endorser certificates, and S/MIME signatures,
all made here with `cryptography` (no fixture files, nothing from a real endorser).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import pkcs7
from cryptography.x509.oid import NameOID


def _name(cn: str, org: str = "skyctl tests") -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, "NL"),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, org),
                      x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def dn(name: x509.Name) -> str:
    return "/" + "/".join(f"{a.rfc4514_attribute_name}={a.value}" for rdn in name.rdns for a in rdn)


@dataclass
class Identity:
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @property
    def dn(self) -> str:
        return dn(self.cert.subject)

    def pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    def write(self, path: Path) -> Path:
        path.write_bytes(self.pem())
        return path


def make_ca(cn: str = "Test Endorsement CA") -> Identity:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(UTC)
    cert = (x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(_name(cn)).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - timedelta(days=1))
            .not_valid_after(now + timedelta(days=365))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, encipher_only=False,
                                         decipher_only=False), critical=True)
            .sign(key, hashes.SHA256()))
    return Identity(cert, key)


def make_endorser(ca: Identity, cn: str = "Test Endorser") -> Identity:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(UTC)
    cert = (x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(ca.cert.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=1)).not_valid_after(now + timedelta(days=90))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .sign(ca.key, hashes.SHA256()))
    return Identity(cert, key)


def image_entry(identifier: str, sha512: str, *, title: str = "AlmaLinux 9", version: str = "9.4",
                uri: str = "https://images.example/alma9.qcow2", size: int = 1024) -> dict[str, Any]:
    return {"hv:image": {"dc:identifier": identifier, "dc:title": title, "dc:description": title,
                         "hv:version": version, "hv:uri": uri, "hv:size": size, "sl:checksum:sha512": sha512,
                         "hv:format": "qcow2", "hv:hypervisor": "KVM", "sl:arch": "x86_64", "sl:os": "Linux",
                         "sl:osname": "AlmaLinux", "sl:osversion": version, "sl:comments": ""}}


def imagelist(endorser: Identity, images: list[dict[str, Any]], *, ca: Identity | None = None,
              expires: datetime | None = None, identifier: str = "9f3c2a8e-0000-4000-8000-000000000001",
              created: datetime | None = None) -> bytes:
    """The JSON of an `hv:imagelist` naming `endorser`."""
    now = datetime.now(UTC)
    created = created or now - timedelta(hours=1)
    expires = expires or now + timedelta(days=28)
    body = {"hv:imagelist": {
        "dc:identifier": identifier, "dc:title": "Test base images", "dc:description": "signed by the tests",
        "dc:date:created": created.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "dc:date:expires": expires.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "dc:source": "https://lists.example/", "hv:uri": "https://lists.example/base/image.list",
        "hv:version": "1",
        "hv:endorser": {"hv:x509": {"dc:creator": "Test Endorser", "hv:dn": endorser.dn,
                                    "hv:ca": (ca or endorser).dn if ca else dn(endorser.cert.issuer),
                                    "hv:email": "endorser@example.org"}},
        "hv:images": images}}
    return json.dumps(body, indent=2).encode()


def sign(content: bytes, signer: Identity, *, detached: bool = True) -> bytes:
    """S/MIME: clear-signed multipart/signed (detached) or opaque application/pkcs7-mime."""
    options = [pkcs7.PKCS7Options.DetachedSignature] if detached else []
    return (pkcs7.PKCS7SignatureBuilder().set_data(content).add_signer(signer.cert, signer.key, hashes.SHA256())
            .sign(serialization.Encoding.SMIME, options))
