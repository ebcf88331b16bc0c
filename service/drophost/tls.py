"""`drophost tls init`: a local certificate authority and a server certificate, as mkcert makes them.

The authority's key never leaves <data>/tls/ (0600); only its certificate (ca.pem) is handed to the
team's machines. Every name that reaches openssl's command line passed an allow-list first.
"""

from __future__ import annotations

import ipaddress
import os
import re
import socket
from dataclasses import dataclass
from pathlib import Path

from drophost import runner
from drophost.errors import SettingsError

# A DNS name (labels of letters, digits and '-'), optionally a leading "*." wildcard.
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_DNS_NAME = re.compile(rf"^(?:\*\.)?(?:{_LABEL}\.)*{_LABEL}$")
CA_DAYS = 3650
# Apple's platforms refuse server certificates valid for more than 825 days.
SERVER_DAYS = 825


@dataclass(frozen=True)
class TlsFiles:
    folder: Path

    @property
    def ca_key(self) -> Path:
        return self.folder / "ca.key"

    @property
    def ca_cert(self) -> Path:
        return self.folder / "ca.pem"

    @property
    def key(self) -> Path:
        return self.folder / "server.key"

    @property
    def cert(self) -> Path:
        return self.folder / "server.pem"


def subject_names(names: list[str]) -> list[str]:
    """subjectAltName entries (DNS:... or IP:...) for names that pass the allow-list (pure)."""
    entries: list[str] = []
    for name in names:
        try:
            entries.append(f"IP:{ipaddress.ip_address(name)}")
            continue
        except ValueError:
            pass
        if len(name) > 253 or not _DNS_NAME.fullmatch(name):
            raise SettingsError(f"{name[:80]!r} is not a host name or an IP address")
        entries.append(f"DNS:{name.lower()}")
    return list(dict.fromkeys(entries))


def default_names(host: str, sites_domain: str) -> list[str]:
    """The names a LAN certificate should cover: this machine, its listen address, the sites' wildcard."""
    names = ["localhost", "127.0.0.1", "::1", socket.gethostname()]
    if host and host not in ("0.0.0.0", "::"):
        names.append(host)
    if sites_domain:
        names += [sites_domain, f"*.{sites_domain}"]
    return names


def init(folder: Path, names: list[str], *, openssl: str = "openssl", timeout: float = 60.0) -> TlsFiles:
    """Make (or keep) the authority in `folder`, then issue a fresh server certificate for `names`."""
    sans = subject_names(names)
    files = TlsFiles(folder)
    folder.mkdir(parents=True, exist_ok=True)
    os.chmod(folder, 0o700)
    old_umask = os.umask(0o077)  # keys are created 0600, never readable by anyone else for a moment
    try:
        if not (files.ca_key.exists() and files.ca_cert.exists()):
            runner.run(
                [openssl, "req", "-x509", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                 "-nodes", "-keyout", str(files.ca_key), "-out", str(files.ca_cert), "-days", str(CA_DAYS),
                 "-subj", f"/O=DropHost/CN=DropHost local CA ({_label(socket.gethostname())})",
                 "-addext", "basicConstraints=critical,CA:TRUE,pathlen:0",
                 "-addext", "keyUsage=critical,keyCertSign,cRLSign"],
                timeout=timeout,
            )  # fmt: skip
        request = folder / "server.csr"
        extensions = folder / "server.ext"
        extensions.write_text(
            "basicConstraints=critical,CA:FALSE\n"
            "keyUsage=critical,digitalSignature,keyEncipherment\n"
            "extendedKeyUsage=serverAuth\n"
            f"subjectAltName={','.join(sans)}\n"
        )
        runner.run(
            [openssl, "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", str(files.key) + ".new", "-out", str(request), "-subj", "/O=DropHost/CN=drophost"],
            timeout=timeout,
        )  # fmt: skip
        runner.run(
            [openssl, "x509", "-req", "-in", str(request), "-CA", str(files.ca_cert), "-CAkey", str(files.ca_key),
             "-set_serial", str(int.from_bytes(os.urandom(16), "big") >> 1), "-days", str(SERVER_DAYS),
             "-extfile", str(extensions), "-out", str(files.cert) + ".new"],
            timeout=timeout,
        )  # fmt: skip
        os.replace(str(files.key) + ".new", files.key)
        os.replace(str(files.cert) + ".new", files.cert)
        request.unlink()
        extensions.unlink()
    finally:
        os.umask(old_umask)
    os.chmod(files.ca_cert, 0o644)
    os.chmod(files.cert, 0o644)
    return files


def trust_instructions(files: TlsFiles, names: list[str]) -> str:
    """What to print after init: how to start with the certificate and trust the authority."""
    ca = files.ca_cert
    return "\n".join(
        [
            f"Made a certificate for: {', '.join(dict.fromkeys(names))}",
            f"  certificate {files.cert}",
            f"  key         {files.key}",
            f"  authority   {ca}  (copy only this file to other machines; ca.key stays here)",
            "",
            "Start DropHost with it:",
            f"  drophost up --tls-cert {files.cert} --tls-key {files.key}",
            "",
            "Trust the authority on each machine of the team:",
            f"  Debian/Ubuntu:  sudo cp {ca} /usr/local/share/ca-certificates/drophost.crt",
            "                  sudo update-ca-certificates",
            f"  Fedora/RHEL:    sudo cp {ca} /etc/pki/ca-trust/source/anchors/drophost.pem && sudo update-ca-trust",
            "  macOS:          sudo security add-trusted-cert -d -r trustRoot \\",
            f"                    -k /Library/Keychains/System.keychain {ca}",
            f"  Windows:        certutil -addstore -f ROOT {ca.name}",
            f"  Chrome/Firefox on Linux (NSS): certutil -d sql:$HOME/.pki/nssdb -A -t C,, -n drophost -i {ca}",
            f"  curl:           curl --cacert {ca} https://...",
        ]
    )


def _label(text: str) -> str:
    """The host name for the authority's common name: allow-listed characters only."""
    return re.sub(r"[^A-Za-z0-9.-]", "", text)[:60] or "host"
