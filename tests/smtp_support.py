"""A local SMTP server that authenticates like SES SMTP, for testing the key rotation.

SES offers AUTH only after STARTTLS and accepts a user name (an access key id) with the version-4
SMTP password derived from that key's secret, while the key is active. This server does the
same, with the secrets the test saw IAM hand out and the key status read from the AWS emulator.
The expected password is derived here from AWS's documented steps, independently of the code
under test. A self-signed certificate for localhost is made per test; SSL_CERT_FILE makes it
trusted by `ssl.create_default_context()` in the same process.
"""
from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import socketserver
import ssl
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable


def documented_smtp_password(secret_access_key: str, region: str) -> str:
    """AWS SES developer guide, "Obtaining Amazon SES SMTP credentials", written out step by step."""
    def sign(key: bytes, msg: str) -> bytes:
        return hmac.new(key, msg.encode("utf-8"), hashlib.sha256).digest()

    k_date = sign(("AWS4" + secret_access_key).encode("utf-8"), "11111111")
    k_region = sign(k_date, region)
    k_service = sign(k_region, "ses")
    k_terminal = sign(k_service, "aws4_request")
    k_message = sign(k_terminal, "SendRawEmail")
    return base64.b64encode(bytes([0x04]) + k_message).decode("ascii")


def self_signed_localhost(directory: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
    import ipaddress

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = directory / "smtp-cert.pem", directory / "smtp-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


@dataclass
class FakeSesSmtp:
    """Knows the secret of every key IAM handed out; asks `is_active` whether a key still works."""

    region: str
    is_active: Callable[[str], bool]
    secrets: dict[str, str] = field(default_factory=dict)
    offer_starttls: bool = True
    reject_first: int = 0  # a new key's first logins fail, as while IAM propagates
    logins: list[tuple[str, bool, bool]] = field(default_factory=list)  # (user, over TLS, accepted)

    def start(self, cert: Path, key: Path) -> int:
        fake = self
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)

        class Handler(socketserver.StreamRequestHandler):
            def handle(self) -> None:  # noqa: C901 - a small SMTP state machine
                conn, tls = self.connection, False
                reader = conn.makefile("rb")

                def send(line: str) -> None:
                    conn.sendall((line + "\r\n").encode())

                send("220 fake-ses ESMTP")
                while True:
                    raw = reader.readline()
                    if not raw:
                        return
                    command = raw.decode().strip()
                    verb = command.split(" ", 1)[0].upper()
                    if verb in ("EHLO", "HELO"):
                        if tls:
                            send("250-fake-ses")
                            send("250 AUTH PLAIN LOGIN")
                        elif fake.offer_starttls:
                            send("250-fake-ses")
                            send("250 STARTTLS")
                        else:
                            send("250-fake-ses")
                            send("250 AUTH PLAIN LOGIN")
                    elif verb == "STARTTLS" and fake.offer_starttls and not tls:
                        send("220 Ready to start TLS")
                        conn = context.wrap_socket(conn, server_side=True)
                        reader, tls = conn.makefile("rb"), True
                    elif verb == "AUTH":
                        parts = command.split(" ")
                        if parts[1].upper() != "PLAIN" or len(parts) < 3:
                            send("504 Unrecognized authentication type")
                            continue
                        _, user, password = base64.b64decode(parts[2]).decode().split("\x00")
                        send("235 Authentication successful" if fake.accept(user, password, tls)
                             else "535 Authentication Credentials Invalid")
                    elif verb == "QUIT":
                        send("221 Bye")
                        return
                    else:
                        send("502 Command not implemented")

        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self.server.server_address[1]

    def accept(self, user: str, password: str, tls: bool) -> bool:
        ok = (tls and user in self.secrets and self.is_active(user)
              and hmac.compare_digest(password, documented_smtp_password(self.secrets[user], self.region)))
        if ok and self.reject_first > 0:
            self.reject_first -= 1
            ok = False
        self.logins.append((user, tls, ok))
        return ok

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
