"""HTTPS end to end: `drophost tls init` makes an authority, `drophost up --tls-cert/--tls-key` serves the
dashboard, the API and the sites with it; curl and Chromium trust it through the authority alone."""

from __future__ import annotations

import os
import shutil
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx2 as httpx
import pytest
from playwright import sync_api

from tests.integration.up_process import Up, running_up
from tests.zipcraft import std_zip

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
NO_KEEPALIVE = httpx.Limits(max_keepalive_connections=0)


def tls_init(data_dir: Path, *names: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DROPHOST_")}
    argv = [sys.executable, "-m", "drophost", "tls", "init", "--data-dir", str(data_dir)]
    for name in names:
        argv.append(f"--name={name}")
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120, check=False)


def test_tls_init_makes_an_authority_and_a_certificate_for_the_host(tmp_path: Path) -> None:
    result = tls_init(tmp_path, "docs.example.lan", "*.sites.example.lan", "192.168.10.5")
    assert result.returncode == 0, result.stderr
    folder = tmp_path / "tls"
    assert folder.stat().st_mode & 0o077 == 0
    for key in ("ca.key", "server.key"):
        assert (folder / key).stat().st_mode & 0o077 == 0, key
    assert "update-ca-certificates" in result.stdout and "--tls-cert" in result.stdout
    assert "ca.key" not in result.stdout.split("authority", 1)[1].split("\n")[0].replace("ca.key stays", "")
    text = subprocess.run(
        ["openssl", "x509", "-in", str(folder / "server.pem"), "-noout", "-ext", "subjectAltName"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    for expected in ("DNS:localhost", "IP Address:127.0.0.1", "DNS:docs.example.lan", "DNS:*.sites.example.lan"):
        assert expected in text
    verified = subprocess.run(
        ["openssl", "verify", "-CAfile", str(folder / "ca.pem"), str(folder / "server.pem")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert verified.returncode == 0, verified.stdout + verified.stderr
    # A second init keeps the authority (machines that trust it keep trusting) and issues a new certificate.
    ca_before, cert_before = (folder / "ca.pem").read_bytes(), (folder / "server.pem").read_bytes()
    assert tls_init(tmp_path).returncode == 0
    assert (folder / "ca.pem").read_bytes() == ca_before
    assert (folder / "server.pem").read_bytes() != cert_before


@pytest.mark.parametrize("name", ["bad name", "x;rm -rf /", "-subj", "a" * 300, "exa$mple.lan", "*.*.lan"])
def test_tls_init_refuses_names_outside_the_allow_list(tmp_path: Path, name: str) -> None:
    result = tls_init(tmp_path, name)
    assert result.returncode == 2
    assert "is not a host name or an IP address" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "tls" / "server.pem").exists()


def test_up_refuses_a_certificate_without_its_key(up_data_dir: Path, tmp_path: Path) -> None:
    assert tls_init(up_data_dir).returncode == 0
    with running_up(up_data_dir, tmp_path / "up.log", "--tls-cert", str(up_data_dir / "tls" / "server.pem")) as up:
        assert up.process.wait(timeout=120) != 0
    assert "needs both a certificate and its key" in up.log()
    assert "Traceback" not in up.log()


@pytest.fixture
def tls_up(up_data_dir: Path, tmp_path: Path) -> Iterator[tuple[Up, Path]]:
    assert tls_init(up_data_dir).returncode == 0
    tls = up_data_dir / "tls"
    args = ("--tls-cert", str(tls / "server.pem"), "--tls-key", str(tls / "server.key"))
    with running_up(up_data_dir, tmp_path / "tls-up.log", *args) as up:
        with httpx.Client(
            timeout=30,
            trust_env=False,
            verify=ssl.create_default_context(cafile=str(tls / "ca.pem")),
            limits=NO_KEEPALIVE,
        ) as client:
            _wait_healthy(client, up)
        yield up, tls / "ca.pem"
        up.stop()


def _wait_healthy(client: httpx.Client, up: Up) -> None:
    """Poll /health over https until it answers 200 (the deadline is a bound, not a timed assertion)."""
    deadline = time.monotonic() + 120
    while True:
        assert up.process.poll() is None, up.log()
        try:
            if client.get(f"https://localhost:{up.port}/health").status_code == 200:
                return
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, up.log()
        time.sleep(0.2)


@pytest.mark.slow
def test_https_serves_the_api_and_the_sites_with_the_generated_authority(tls_up: tuple[Up, Path]) -> None:
    up, ca = tls_up
    with httpx.Client(
        timeout=30, trust_env=False, verify=ssl.create_default_context(cafile=str(ca)), limits=NO_KEEPALIVE
    ) as client:
        files = {"site/index.html": b"<h1>over https</h1>"}
        response = client.post(
            f"https://localhost:{up.port}/api/deployments",
            files={"file": ("secure.zip", std_zip(dict(files)), "application/zip")},
            headers={"Authorization": f"Bearer {up.token}"},
        )
        assert response.status_code == 201, response.text
        assert response.json()["path_url"] == f"https://127.0.0.1:{up.sites_port}/d/secure/"
        assert response.json()["url"] == f"https://secure.localhost:{up.sites_port}/"
        assert client.get(f"https://localhost:{up.sites_port}/d/secure/").content == files["site/index.html"]
        # Old /d/ links on the main port go to the sites origin, over https too.
        moved = client.get(f"https://localhost:{up.port}/d/secure/", follow_redirects=False)
        assert moved.status_code == 302
        assert moved.headers["location"] == f"https://localhost:{up.sites_port}/d/secure/"

    # Plain HTTP to either port is redirected to the same address over https.
    with httpx.Client(timeout=30, trust_env=False, limits=NO_KEEPALIVE) as plain:
        for port, path in ((up.port, "/health"), (up.sites_port, "/d/secure/")):
            answer = plain.get(f"http://127.0.0.1:{port}{path}", follow_redirects=False)
            assert answer.status_code == 301
            assert answer.headers["location"] == f"https://127.0.0.1:{port}{path}"

    # curl, as a team member would, trusting only the authority's certificate.
    curl = shutil.which("curl")
    assert curl, "curl is missing: ./install.sh --dev installs it"
    body = subprocess.run(
        [
            curl,
            "--silent",
            "--show-error",
            "--fail",
            "--cacert",
            str(ca),
            f"https://localhost:{up.sites_port}/d/secure/",
        ],
        capture_output=True,
        check=False,
        timeout=60,
    )
    assert body.returncode == 0, body.stderr
    assert body.stdout == b"<h1>over https</h1>"
    # Without the authority, curl refuses the certificate: it is not trusted by accident.
    untrusted = subprocess.run(
        [curl, "--silent", "--fail", f"https://localhost:{up.sites_port}/d/secure/"], capture_output=True, timeout=60
    )
    assert untrusted.returncode == 60  # "Peer certificate cannot be authenticated with known CA certificates"


@pytest.mark.slow
def test_chromium_trusts_the_authority_and_loads_the_dashboard_over_https(
    tls_up: tuple[Up, Path], tmp_path: Path
) -> None:
    up, ca = tls_up
    certutil = shutil.which("certutil")
    assert certutil, "certutil is missing: ./install.sh --dev installs libnss3-tools"
    assert CHROMIUM.exists(), "Debian's chromium is missing: run ./install.sh --dev as root"
    # Chromium on Linux trusts what the user's NSS database trusts: a fresh HOME with only our authority.
    home = tmp_path / "home"
    nssdb = home / ".pki" / "nssdb"
    nssdb.mkdir(parents=True)
    subprocess.run([certutil, "-d", f"sql:{nssdb}", "-N", "--empty-password"], check=True, timeout=60)
    subprocess.run(
        [certutil, "-d", f"sql:{nssdb}", "-A", "-t", "C,,", "-n", "drophost-test", "-i", str(ca)],
        check=True,
        timeout=60,
    )
    args = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"]
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=args, env={**os.environ, "HOME": str(home)}
        )
        try:
            page = browser.new_page()
            response = page.goto(f"https://localhost:{up.port}/signin")
            assert response is not None and response.status == 200
            assert page.evaluate("window.isSecureContext") is True
            assert page.locator("#token").count() == 1
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "tls-dashboard-signin.png"))
        finally:
            browser.close()
    # The same browser without the authority refuses the page (the check above is not vacuous).
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=args, env={**os.environ, "HOME": str(tmp_path / "empty-home")}
        )
        try:
            with pytest.raises(sync_api.Error, match="ERR_CERT_AUTHORITY_INVALID"):
                browser.new_page().goto(f"https://localhost:{up.port}/signin")
        finally:
            browser.close()
