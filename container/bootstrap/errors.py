"""Failures the bootstrap reports, each with its own process exit code (container/README.md)."""
from __future__ import annotations

from typing import Iterable


class BootstrapError(Exception):
    """A failure with a message fit for the container log (never contains secret values)."""

    exit_code = 1


class ConfigError(BootstrapError):
    """Missing or malformed environment variables or secret contents."""

    exit_code = 2


class SecretsError(BootstrapError):
    """A secret could not be read from Secrets Manager (not found, access denied, network)."""

    exit_code = 3


class DatabaseUnreachable(BootstrapError):
    """The database did not accept connections before the wait deadline."""

    exit_code = 4


class DatabaseStepError(BootstrapError):
    """A database step failed: app user, REDCap install, replica flag or configuration SQL."""

    exit_code = 5


class FileWriteError(BootstrapError):
    """A file (database.php, msmtprc, init_functions.php) could not be written."""

    exit_code = 6


class DatabaseTlsError(BootstrapError):
    """The database's TLS certificate failed verification: waiting would not change it."""

    exit_code = 7


class UpgradeFailed(BootstrapError):
    """REDCap's database upgrade (the upgrade-database mode) did not complete."""

    exit_code = 8


def redact(text: str, secrets: Iterable[str]) -> str:
    """Hide secret values that a server or installer message might echo back."""
    for value in sorted((v for v in secrets if v), key=len, reverse=True):
        text = text.replace(value, "<hidden>")
    return text


def problem(key: str, value: str | None, allowed: str, example: str) -> str:
    """One line of a validation error: key, offending value, what is allowed, an example.

    Pass value=None for a missing key and value='<hidden>' for anything secret.
    """
    shown = "missing" if value is None else f"got {value!r}"
    return f"{key}: {shown}; allowed: {allowed}; example: {example}"
