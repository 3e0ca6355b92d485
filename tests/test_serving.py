"""Serving beyond localhost: HTTPS from --cert/--key (browsers give the microphone only
on localhost or HTTPS), --host, and ICE servers from config (none by default)."""
from __future__ import annotations

import datetime
import ipaddress
import json
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.request

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from fastapi.testclient import TestClient

from config import ConfigError, load_config, tls_files
from test_webui import ROOT
from transports.web.server import build_app


def self_signed(folder) -> tuple:
    """A certificate for 127.0.0.1 and its key, as PEM files."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "persona test")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_https_with_a_self_signed_certificate(tmp_path):
    cert, key = self_signed(tmp_path)
    port = free_port()
    app = subprocess.Popen([sys.executable, "app.py", "--host", "127.0.0.1", "--port", str(port), "--cert", str(cert),
                            "--key", str(key)], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    trusted = ssl.create_default_context(cafile=str(cert))
    try:
        deadline, page = time.monotonic() + 90, None
        while page is None and time.monotonic() < deadline and app.poll() is None:
            try:
                with urllib.request.urlopen(f"https://127.0.0.1:{port}/", context=trusted, timeout=2) as r:
                    page = r.read().decode()
            except OSError:
                time.sleep(0.5)
        assert page is not None and "webui/client.js" in page, "no page over HTTPS"
        with urllib.request.urlopen(f"https://127.0.0.1:{port}/webrtc/config", context=trusted, timeout=5) as r:
            assert json.load(r) == {"iceServers": []}
        with pytest.raises(OSError):   # plain HTTP is not served on the HTTPS port
            urllib.request.urlopen(f"http://127.0.0.1:{port}/webrtc/config", timeout=5).read()
    finally:
        app.send_signal(signal.SIGINT)
        out, _ = app.communicate(timeout=30)
    assert f"web UI on https://127.0.0.1:{port}" in out, out


def test_tls_settings_that_cannot_work_are_one_line(tmp_path):
    cert, key = self_signed(tmp_path)
    server = load_config().server
    assert tls_files(server) == {}
    both = load_config(overrides={"server": {"cert": str(cert), "key": str(key)}}).server
    assert tls_files(both) == {"ssl_certfile": str(cert), "ssl_keyfile": str(key)}
    (tmp_path / "junk.pem").write_text("not a certificate")
    for overrides, says in [({"cert": str(cert)}, "both server.cert and server.key"),
                            ({"cert": str(cert), "key": str(tmp_path / "missing.pem")}, "no such file"),
                            ({"cert": str(tmp_path / "junk.pem"), "key": str(key)}, "not a PEM certificate")]:
        with pytest.raises(ConfigError) as e:
            tls_files(load_config(overrides={"server": overrides}).server)
        assert says in str(e.value) and "\n" not in str(e.value)
    r = subprocess.run([sys.executable, "app.py", "--cert", str(cert)], cwd=ROOT, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 2 and r.stderr.strip() == "error: HTTPS needs both server.cert and server.key " \
                                                     "(--cert and --key)", r.stderr


def test_the_page_gets_exactly_the_configured_ice_servers():
    urls = ["stun:stun.lan.example:3478", "turn:turn.lan.example:3478"]
    client = TestClient(build_app(load_config(overrides={"server": {"ice_servers": urls}})))
    assert client.get("/webrtc/config").json() == {"iceServers": [{"urls": u} for u in urls]}
    assert TestClient(build_app(load_config())).get("/webrtc/config").json() == {"iceServers": []}
