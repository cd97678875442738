"""Verify an S/MIME (PKCS#7 signedData) image list against the certificates the admin trusts.

The check is the system `openssl smime -verify`, run as a subprocess: `cryptography` (already
installed with paramiko) can *sign* PKCS#7 and load its certificates, but has no public API to
verify a PKCS#7/CMS signature or build the chain to a trust anchor (checked on cryptography 51,
whose `pkcs7` module offers builders, decryption and certificate loading only). OpenSSL is what
vmcatcher, atrope (through M2Crypto) and cloudkeeper (Ruby's OpenSSL::PKCS7) use for the same
lists, so the same list verifies the same way here.

Trust: a PEM file of CA certificates, or the endorser's own certificate (`-partial_chain`
lets a non-self-signed certificate be the anchor). The signer's subject must then be the one
the admin expects, and the one the list names as its endorser (`hv:dn`).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from skyctl.errors import ImageListError

OPENSSL_TIMEOUT_S = 60


@dataclass(frozen=True, slots=True)
class Signed:
    content: bytes        # the signed bytes, headers of a `-text` signature removed
    signer_dn: str        # OpenSSL slash form (/C=../O=../CN=..), as image lists write DNs
    issuer_dn: str


def slash_dn(name: object) -> str:
    """A cryptography `x509.Name` in OpenSSL's one-line slash form, most significant first."""
    parts = []
    for rdn in name.rdns:  # type: ignore[attr-defined]
        for attr in rdn:
            parts.append(f"{attr.rfc4514_attribute_name}={attr.value}")
    return "/" + "/".join(parts)


def _strip_text_headers(content: bytes) -> bytes:
    """`openssl smime -sign -text` wraps the list in a text/plain MIME part: drop its headers."""
    head = content[:200].lower()
    if head.startswith(b"content-type:"):
        for sep in (b"\r\n\r\n", b"\n\n"):
            if sep in content:
                return content.split(sep, 1)[1]
    return content


def _why(stderr: str) -> str:
    text = stderr.lower()
    if "digest failure" in text or "signature failure" in text or "content verify error" in text:
        return "the signature does not match the content (the list was changed after it was signed)"
    found = re.findall(r"Verify error:\s*([^\n]+)", stderr)
    if found:
        return f"the signer's certificate is not trusted ({found[-1].strip()})"
    if "reading s/mime" in text or "no content type" in text or "not enough data" in text \
            or "expecting an asn1 sequence" in text or "wrong content type" in text:
        return "not an S/MIME signed list"
    if "no signers" in text or "signer certificate not found" in text:
        return "the list carries no signer certificate"
    last = [ln for ln in stderr.splitlines() if ln.strip()]
    return f"signature check failed ({last[-1].strip() if last else 'openssl said nothing'})"


def verify(raw: bytes, trust: Path) -> Signed:
    """The signed content and who signed it, or ImageListError naming what failed."""
    from cryptography import x509

    openssl = shutil.which("openssl")
    if openssl is None:
        raise ImageListError("cannot verify the list: the 'openssl' command is not installed",
                             hint="install the openssl package")
    if not trust.is_file():
        raise ImageListError(f"cannot verify the list: no trusted certificate file at {trust}")
    with tempfile.TemporaryDirectory(prefix="skyctl-smime-") as tmp:
        src, out, signer = Path(tmp) / "list.smime", Path(tmp) / "content", Path(tmp) / "signer.pem"
        src.write_bytes(raw)
        # -purpose any: endorsers sign with grid host or personal certificates, not always ones
        # with the S/MIME extended key usage; the subject check below is what binds the signer.
        cmd = [openssl, "smime", "-verify", "-in", str(src), "-inform", "SMIME", "-CAfile", str(trust),
               "-partial_chain", "-purpose", "any", "-signer", str(signer), "-out", str(out)]
        try:
            proc = subprocess.run(cmd, capture_output=True, timeout=OPENSSL_TIMEOUT_S, check=False)
        except subprocess.TimeoutExpired:
            raise ImageListError("signature check timed out") from None
        if proc.returncode != 0:
            raise ImageListError(_why(proc.stderr.decode("utf-8", "replace")))
        certs = x509.load_pem_x509_certificates(signer.read_bytes())
        content = out.read_bytes()
    cert = certs[0]
    return Signed(_strip_text_headers(content), slash_dn(cert.subject), slash_dn(cert.issuer))
