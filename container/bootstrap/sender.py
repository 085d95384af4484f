"""REDCap's universal From address follows the stack's sender (SMTP_EMAIL).

REDCap writes the From header itself: with its universal From address (redcap_config
``from_email``) set, every mail goes From that address and the user's own address moves to
Reply-To; without it, mail goes From whichever user or project contact triggered it. SES refuses
a From address outside the stack's verified identities, and a receiver's DMARC check fails for
one outside the DKIM-signed domain, so the only From address that works is SMTP_EMAIL, the
stack's ``senderAddress`` (components/email.py). Domains listed in ``from_email_domain_exclude``
keep their users' own addresses as From, which fails the same way.

Where the configuration SQL is applied (a database this bootstrap installed REDCap on, or
REDCAP_CONFIG_SQL_MODE=apply), ``from_email`` is set to SMTP_EMAIL in the same transaction,
after the file's statements, so it wins over a file that names another address. An installation
that was found and kept keeps its value, as every other setting: at each start the bootstrap
warns while it differs, naming what to set (docs/email.md).
"""
from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger("bootstrap")

FROM_FIELD = "from_email"
EXCLUDE_FIELD = "from_email_domain_exclude"
WHERE_TO_SET = ("Control Center -> General Configuration -> \"Set a universal FROM email address\" "
                "(docs/email.md)")


def set_universal_from(cur: Any, sender: str) -> None:
    """Inside the configuration SQL's transaction: REDCap sends everything From `sender`."""
    cur.execute("REPLACE INTO redcap_config (field_name, value) VALUES (%s, %s)", (FROM_FIELD, sender))


def sender_problems(from_email: str | None, excluded: str | None, sender: str) -> list[str]:
    """What keeps REDCap from sending as `sender`, one sentence each (empty: nothing)."""
    problems = []
    current = (from_email or "").strip()
    if current.lower() != sender.lower():
        shown = f"'{current}'" if current else "not set (mail goes From each user's own address)"
        problems.append(
            f"REDCap's universal From address (from_email) is {shown}, not SMTP_EMAIL {sender}, the "
            "stack's senderAddress: SES refuses mail From an address outside the stack's identities "
            "and receivers' DMARC checks fail outside its DKIM-signed domain; set it to "
            f"{sender} in {WHERE_TO_SET}")
    domains = [d.strip() for d in (excluded or "").replace("\r", "").split("\n") if d.strip()]
    if domains:
        problems.append(
            f"REDCap sends mail of users at {', '.join(domains)} From their own addresses "
            f"(from_email_domain_exclude), which SES refuses or DMARC fails; empty that list in "
            f"{WHERE_TO_SET}")
    return problems


def check_universal_from(conn: Any, sender: str) -> list[str]:
    """At every start: warn while REDCap's From is anything but `sender`; return the warnings."""
    with conn.cursor() as cur:
        cur.execute("SELECT field_name, value FROM redcap_config WHERE field_name IN (%s, %s)",
                    (FROM_FIELD, EXCLUDE_FIELD))
        values = dict(cur.fetchall())
    problems = sender_problems(values.get(FROM_FIELD), values.get(EXCLUDE_FIELD), sender)
    for problem in problems:
        log.warning("%s", problem)
    if not problems:
        log.info("REDCap's universal From address is %s (SMTP_EMAIL)", sender)
    return problems
