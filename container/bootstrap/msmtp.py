"""msmtp configuration for PHP mail() through Amazon SES SMTP (msmtp-mta provides sendmail).

Written only when SES credentials exist, and the sender is always SMTP_EMAIL (validated as an
address in a real domain): the original fell back to `from localhost`, which SES rejects. The
file holds the SMTP password, so it is mode 0600 (PHP's sendmail runs as the same user).
"""
from __future__ import annotations

from .files import write_atomic

MSMTPRC_MODE = 0o600
CA_FILE = "/etc/ssl/certs/ca-certificates.crt"


def ses_smtp_host(region: str) -> str:
    return f"email-smtp.{region}.amazonaws.com"


def render_msmtprc(region: str, username: str, password: str, sender: str) -> str:
    """msmtp reads one token per value: the secret loader rejects whitespace in the credentials."""
    for name, value in (("username", username), ("password", password), ("from", sender)):
        if not value or any(c.isspace() for c in value):
            raise ValueError(f"msmtp {name} must be a non-empty value without whitespace")
    if sender.rsplit("@", 1)[-1].lower() == "localhost":
        raise ValueError("msmtp from must not be localhost: SES rejects it")
    return "\n".join([
        "# Written by the container's start-time bootstrap (container/bootstrap/msmtp.py).",
        "defaults",
        "tls on",
        "tls_starttls on",
        f"tls_trust_file {CA_FILE}",
        "",
        "account default",
        f"host {ses_smtp_host(region)}",
        "port 587",
        "auth on",
        f"user {username}",
        f"password {password}",
        f"from {sender}",
        "",
    ])


def write_msmtprc(path: str, region: str, username: str, password: str, sender: str) -> bool:
    return write_atomic(path, render_msmtprc(region, username, password, sender), MSMTPRC_MODE)


UNCONFIGURED = "# Mail is not configured: the container has no SES credentials.\n"


def clear_msmtprc(path: str) -> bool:
    """Without SES credentials, drop any account left by an earlier start of this container."""
    try:
        with open(path, "rb") as fh:
            current = fh.read()
    except FileNotFoundError:
        return False
    except OSError:
        return False  # unreadable: nothing the bootstrap wrote, leave it alone
    if current.strip() == b"" or current == UNCONFIGURED.encode():
        return False
    return write_atomic(path, UNCONFIGURED, MSMTPRC_MODE)
