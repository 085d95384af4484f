"""Generate sql/redcap-config.sql: REDCap's initial configuration and site-admin account.

    python sql/generate.py                      # asks the questions
    python -m sql.generate --non-interactive \\
        --admin-first-name Ada --admin-last-name "O'Brien" --admin-email ada@example.org \\
        --admin-password-file /dev/stdin --api off --language English --stats off \\
        --s3-storage on --contact-email redcap@example.org --base-url https://redcap.example.org

The questions are the original generator's (site admin temporary password, first and last
name, e-mail; API on/off; language; usage stats; S3 storage; contact e-mail; base URL). Every
answer is validated; an invalid one gives one error naming the field, the value, what is
allowed and an example. Values are written as escaped SQL literals (a name like O'Brien
works). The temporary password is stored as REDCap's salted SHA-512 hash
(hash('sha512', password . salt), legacy_hash=0, temp_pwd=1: REDCap asks for a new password
at first login), never in plain text or MD5. Run-time values (bucket, S3 keys, region) are
named placeholders the container binds when it applies the file: see
docs/configuration-sql.md. The contact e-mail is REDCap's homepage and project contact, not its
From address: the container sets that (from_email) to the stack's sender, the one address SES
and DMARC accept.
"""
from __future__ import annotations

import argparse
import getpass
import hashlib
import os
import re
import secrets
import string
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence
from urllib.parse import urlsplit

SQL_DIR = Path(__file__).resolve().parent
DEFAULT_OUTPUT = SQL_DIR / "redcap-config.sql"
DEFAULT_LANGUAGES_DIR = SQL_DIR.parent / "languages"
PASSWORD_ENV = "REDCAP_ADMIN_TEMP_PASSWORD"
SITE_ADMIN = "site_admin"
MIN_PASSWORD_LENGTH = 12
SALT_LENGTH = 100  # REDCap's redcap_auth.password_salt is VARCHAR(100)

# REDCap's UI language is the name of a languages/<Name>.ini file; English is built in. This
# is the list offered when no languages directory is given (the image must then contain the
# chosen file: docs/configuration-sql.md).
DOCUMENTED_LANGUAGES = ("English", "Arabic", "Chinese", "French", "German", "Italian",
                        "Japanese", "Korean", "Portuguese", "Spanish")

_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
EMAIL_RE = re.compile(r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}@"
                      rf"(?=.{{1,253}}$){_LABEL}(?:\.{_LABEL})+$")
HOST_RE = re.compile(rf"^(?=.{{1,253}}$){_LABEL}(?:\.{_LABEL})+$")
CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")
TRUE_WORDS = ("on", "yes", "y", "1", "true")
FALSE_WORDS = ("off", "no", "n", "0", "false")


class InvalidAnswer(ValueError):
    """One invalid answer, formatted like the container's configuration errors."""

    def __init__(self, field: str, value: str | None, allowed: str, example: str):
        shown = "missing" if value is None else f"got {value!r}"
        super().__init__(f"{field}: {shown}; allowed: {allowed}; example: {example}")


@dataclass(frozen=True)
class Answers:
    admin_password: str
    admin_first_name: str
    admin_last_name: str
    admin_email: str
    api_enabled: bool
    language: str
    auto_report_stats: bool
    use_s3: bool
    contact_email: str | None
    base_url: str | None

    def __repr__(self) -> str:
        return (f"Answers(admin_password=<hidden>, admin_first_name={self.admin_first_name!r}, "
                f"admin_last_name={self.admin_last_name!r}, admin_email={self.admin_email!r}, "
                f"api_enabled={self.api_enabled}, language={self.language!r}, "
                f"auto_report_stats={self.auto_report_stats}, use_s3={self.use_s3}, "
                f"contact_email={self.contact_email!r}, base_url={self.base_url!r})")


# --- validators: raw answer -> value, or InvalidAnswer -------------------------------------------

def validate_name(field: str, raw: str) -> str:
    value = raw.strip()
    if not value or len(value) > 255 or CONTROL_RE.search(value):
        raise InvalidAnswer(field, raw, "1-255 printable characters (quotes are fine)", "O'Brien")
    return value


def validate_email(field: str, raw: str, optional: bool = False) -> str | None:
    value = raw.strip()
    if optional and value == "":
        return None
    if not EMAIL_RE.match(value) or value.rsplit("@", 1)[1].lower() == "localhost":
        raise InvalidAnswer(field, raw, "an e-mail address with a real domain"
                            + (" (or empty to keep REDCap's)" if optional else ""),
                            "redcap-admin@example.org")
    return value


def validate_password(raw: str) -> str:
    ok = (len(raw) >= MIN_PASSWORD_LENGTH and not CONTROL_RE.search(raw)
          and re.search(r"[a-z]", raw) and re.search(r"[A-Z]", raw) and re.search(r"\d", raw))
    if not ok:
        # Never echo a password, not even an invalid one.
        raise InvalidAnswer("admin temporary password", f"<hidden: {len(raw)} characters>",
                            f"at least {MIN_PASSWORD_LENGTH} characters with a lower-case "
                            "letter, an upper-case letter and a digit", "Temp-2024-Redcap")
    return raw


def validate_bool(field: str, raw: str) -> bool:
    word = raw.strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise InvalidAnswer(field, raw, "on or off (also yes/no, 1/0)", "off")


def available_languages(languages_dir: Path | None) -> tuple[str, ...]:
    """English plus the languages/*.ini names when a directory with .ini files is given."""
    if languages_dir is not None and languages_dir.is_dir():
        names = sorted({p.stem for p in languages_dir.glob("*.ini")})
        if names:
            return ("English", *[n for n in names if n != "English"])
    return DOCUMENTED_LANGUAGES


def validate_language(raw: str, allowed: Sequence[str]) -> str:
    value = raw.strip()
    for name in allowed:
        if value.lower() == name.lower():
            return name
    raise InvalidAnswer("language", raw, "one of " + ", ".join(allowed), "English")


def validate_base_url(raw: str) -> str | None:
    """https://host[/path], normalised with a trailing slash; a bare host gets https://."""
    value = raw.strip()
    if value == "":
        return None
    candidate = value if "://" in value else "https://" + value
    problem = InvalidAnswer("base URL", raw, "an https:// URL without query, fragment or "
                            "credentials (or empty to keep REDCap's)",
                            "https://redcap.example.org/")
    try:
        parts = urlsplit(candidate)
        port = parts.port
    except ValueError:
        raise problem from None
    host = parts.hostname or ""
    if (parts.scheme != "https" or not HOST_RE.match(host) or parts.username or parts.password
            or parts.query or parts.fragment or CONTROL_RE.search(candidate)
            or " " in candidate or "'" in candidate or "\\" in candidate):
        raise problem
    path = parts.path or "/"
    if not path.endswith("/"):
        path += "/"
    netloc = host.lower() + (f":{port}" if port else "")
    return f"https://{netloc}{path}"


# --- SQL rendering (pure) ------------------------------------------------------------------------

def sql_literal(value: str) -> str:
    """A MySQL string literal. The bootstrap applies the file with backslash escapes enabled."""
    if CONTROL_RE.search(value):
        raise ValueError("control characters are not allowed in configuration values")
    return "'" + value.replace("\\", "\\\\").replace("'", "''") + "'"


def new_password_salt(length: int = SALT_LENGTH) -> str:
    alphabet = string.ascii_letters + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(length))


def redcap_password_hash(password: str, salt: str) -> str:
    """REDCap's table-based login hash (legacy_hash=0): hash('sha512', $password . $salt)."""
    return hashlib.sha512((password + salt).encode("utf-8")).hexdigest()


def config_row(field: str, value_sql: str) -> str:
    return (f"REPLACE INTO redcap_config (field_name, value) "
            f"VALUES ({sql_literal(field)}, {value_sql});")


def render_sql(answers: Answers, salt: str) -> str:
    """The configuration SQL for these answers (salt: the site admin's password salt)."""
    flag = lambda b: sql_literal("1" if b else "0")  # noqa: E731
    lines = [
        "-- REDCap configuration generated by sql/generate.py; applied ONCE by the container's",
        "-- start-time bootstrap, to a database on which it installed REDCap (or with",
        "-- redcap:configurationSql apply; docs/configuration-sql.md). It contains the site",
        "-- admin's salted password hash: keep it out of version control (it is gitignored).",
        "",
        config_row("api_enabled", flag(answers.api_enabled)),
        config_row("auto_report_stats", flag(answers.auto_report_stats)),
        config_row("language_global", sql_literal(answers.language)),
        config_row("auth_meth_global", sql_literal("table")),
    ]
    if answers.contact_email:
        # Not from_email: the container sets REDCap's From address to the stack's sender.
        for field in ("homepage_contact_email", "project_contact_email"):
            lines.append(config_row(field, sql_literal(answers.contact_email)))
    if answers.base_url:
        lines.append(config_row("redcap_base_url", sql_literal(answers.base_url)))
    if answers.use_s3:
        lines += [
            "-- Files in the application S3 bucket; values bound by the bootstrap at apply time.",
            config_row("edoc_storage_option", sql_literal("2")),
            config_row("amazon_s3_bucket", ":s3_bucket"),
            config_row("amazon_s3_key", ":s3_access_key_id"),
            config_row("amazon_s3_secret", ":s3_secret_access_key"),
            config_row("amazon_s3_endpoint", ":aws_region"),
        ]
    else:
        lines.append("-- S3 file storage OFF: uploads stay on the container disk and are lost "
                     "when it is replaced.")
    hashed = redcap_password_hash(answers.admin_password, salt)
    lines += [
        "-- Site admin: temporary password (REDCap asks for a new one at first login).",
        "INSERT INTO redcap_auth (username, password, password_salt, legacy_hash, temp_pwd) "
        f"VALUES ({sql_literal(SITE_ADMIN)}, {sql_literal(hashed)}, {sql_literal(salt)}, 0, 1) "
        "ON DUPLICATE KEY UPDATE username = username;",
        f"UPDATE redcap_user_information SET user_firstname = "
        f"{sql_literal(answers.admin_first_name)}, user_lastname = "
        f"{sql_literal(answers.admin_last_name)}, user_email = "
        f"{sql_literal(answers.admin_email)} WHERE username = {sql_literal(SITE_ADMIN)};",
        "",
    ]
    return "\n".join(lines)


def write_private(path: Path, content: str) -> None:
    """Atomic write, mode 0600 (the file holds a password hash)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(content)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


# --- the questions -------------------------------------------------------------------------------

@dataclass(frozen=True)
class Question:
    key: str  # argparse dest
    prompt: str
    default: str | None  # shown in the prompt, used for an empty answer


QUESTIONS = (
    Question("admin_first_name", "REDCap site-admin first name", None),
    Question("admin_last_name", "REDCap site-admin last name", None),
    Question("admin_email", "REDCap site-admin e-mail", None),
    Question("api", "Enable the REDCap API? (on/off)", "off"),
    Question("language", "REDCap global language", "English"),
    Question("stats", "Report usage stats to Vanderbilt? (on/off)", "off"),
    Question("s3_storage", "Store uploaded files in the S3 bucket? (on/off)", "on"),
    Question("contact_email", "REDCap homepage/project contact e-mail (empty: keep REDCap's)", ""),
    Question("base_url", "REDCap base URL, https:// (empty: keep REDCap's)", ""),
)


def convert(key: str, raw: str, languages: Sequence[str]):
    """Validate one raw answer into its value (raises InvalidAnswer)."""
    if key == "admin_first_name":
        return validate_name("admin first name", raw)
    if key == "admin_last_name":
        return validate_name("admin last name", raw)
    if key == "admin_email":
        return validate_email("admin e-mail", raw)
    if key == "api":
        return validate_bool("API", raw)
    if key == "language":
        return validate_language(raw, languages)
    if key == "stats":
        return validate_bool("usage stats", raw)
    if key == "s3_storage":
        return validate_bool("S3 storage", raw)
    if key == "contact_email":
        return validate_email("contact e-mail", raw, optional=True)
    if key == "base_url":
        return validate_base_url(raw)
    raise KeyError(key)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python sql/generate.py",
        description="Generate sql/redcap-config.sql (REDCap initial configuration).")
    p.add_argument("--admin-first-name")
    p.add_argument("--admin-last-name")
    p.add_argument("--admin-email")
    p.add_argument("--admin-password-file", metavar="PATH",
                   help=f"file holding the temporary password ('-' = stdin); or set "
                        f"{PASSWORD_ENV}. Never given on the command line (ps, shell history)")
    p.add_argument("--api", metavar="on|off")
    p.add_argument("--language")
    p.add_argument("--stats", metavar="on|off")
    p.add_argument("--s3-storage", metavar="on|off")
    p.add_argument("--contact-email")
    p.add_argument("--base-url")
    p.add_argument("--languages-dir", type=Path, default=None,
                   help="directory of REDCap language .ini files going into the image "
                        f"(default: {DEFAULT_LANGUAGES_DIR} if it has any)")
    p.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    p.add_argument("--non-interactive", action="store_true",
                   help="never prompt: missing answers take their defaults or are errors")
    return p


def read_password_source(args: argparse.Namespace, env: dict[str, str], stdin) -> str | None:
    if args.admin_password_file:
        if args.admin_password_file == "-":
            return stdin.readline().rstrip("\r\n")
        return Path(args.admin_password_file).read_text(encoding="utf-8").rstrip("\r\n")
    return env.get(PASSWORD_ENV)


def collect_answers(args: argparse.Namespace, languages: Sequence[str],
                    password: str | None, ask: Callable[[str], str] | None,
                    ask_password: Callable[[str], str] | None,
                    out: Callable[[str], None], attempts: int = 3) -> Answers:
    """Answers from flags, else prompts (interactive) or defaults; raises SystemExit(2)."""
    values: dict[str, object] = {}
    errors: list[str] = []

    if password is not None:
        try:
            values["admin_password"] = validate_password(password)
        except InvalidAnswer as exc:
            errors.append(str(exc))
    elif ask_password is None:
        errors.append(str(InvalidAnswer(
            "admin temporary password", None,
            f"--admin-password-file PATH or the {PASSWORD_ENV} environment variable",
            "--admin-password-file /run/secrets/redcap-admin")))
    else:
        values["admin_password"] = _ask_password(ask_password, out, attempts)

    for q in QUESTIONS:
        raw = getattr(args, q.key)
        if raw is not None:
            try:
                values[q.key] = convert(q.key, raw, languages)
            except InvalidAnswer as exc:
                errors.append(str(exc))
            continue
        if ask is None:
            if q.default is None:
                errors.append(str(InvalidAnswer(q.prompt, None, "a value (flag --"
                                                + q.key.replace("_", "-") + ")", "see --help")))
            else:
                values[q.key] = convert(q.key, q.default, languages)
            continue
        values[q.key] = _ask(q, ask, out, languages, attempts)

    if errors:
        out(f"error: {len(errors)} invalid answer{'s' if len(errors) > 1 else ''}:\n  - "
            + "\n  - ".join(errors))
        raise SystemExit(2)
    return Answers(
        admin_password=str(values["admin_password"]),
        admin_first_name=str(values["admin_first_name"]),
        admin_last_name=str(values["admin_last_name"]),
        admin_email=str(values["admin_email"]),
        api_enabled=bool(values["api"]),
        language=str(values["language"]),
        auto_report_stats=bool(values["stats"]),
        use_s3=bool(values["s3_storage"]),
        contact_email=values["contact_email"] or None,  # type: ignore[arg-type]
        base_url=values["base_url"] or None,  # type: ignore[arg-type]
    )


def _ask(q: Question, ask: Callable[[str], str], out: Callable[[str], None],
         languages: Sequence[str], attempts: int):
    hint = f" [{q.default}]" if q.default else ""
    if q.key == "language":
        hint = f" ({', '.join(languages)}){hint}"
    for _ in range(attempts):
        raw = ask(f"{q.prompt}{hint}: ")
        if raw.strip() == "" and q.default is not None:
            raw = q.default
        try:
            return convert(q.key, raw, languages)
        except InvalidAnswer as exc:
            out(f"error: {exc}")
    out(f"error: no valid answer for {q.prompt!r} after {attempts} attempts")
    raise SystemExit(2)


def _ask_password(ask_password: Callable[[str], str], out: Callable[[str], None],
                  attempts: int) -> str:
    for _ in range(attempts):
        first = ask_password("REDCap site-admin temporary password: ")
        try:
            validate_password(first)
        except InvalidAnswer as exc:
            out(f"error: {exc}")
            continue
        if ask_password("Repeat the temporary password: ") != first:
            out("error: admin temporary password: the two entries differ")
            continue
        return first
    out(f"error: no valid admin temporary password after {attempts} attempts")
    raise SystemExit(2)


def main(argv: Sequence[str] | None = None, ask: Callable[[str], str] | None = input,
         ask_password: Callable[[str], str] | None = getpass.getpass,
         env: dict[str, str] | None = None, stdin=None,
         out: Callable[[str], None] = lambda s: print(s, file=sys.stderr)) -> int:
    args = build_parser().parse_args(argv)
    env = dict(os.environ) if env is None else env
    languages_dir = args.languages_dir
    if languages_dir is None and DEFAULT_LANGUAGES_DIR.is_dir():
        languages_dir = DEFAULT_LANGUAGES_DIR
    languages = available_languages(languages_dir)
    interactive = not args.non_interactive
    try:
        password = read_password_source(args, env, stdin or sys.stdin)
    except OSError as exc:
        out(f"error: admin temporary password: cannot read {args.admin_password_file}: "
            f"{exc.strerror}")
        return 2
    try:
        answers = collect_answers(args, languages, password,
                                  ask if interactive else None,
                                  ask_password if interactive else None, out)
    except (SystemExit, EOFError) as exc:
        if isinstance(exc, EOFError):
            out("error: input ended before every question was answered")
        return 2
    write_private(args.output, render_sql(answers, new_password_salt()))
    out(f"wrote {args.output} (mode 0600). The container applies it once, at the first start "
        "on an empty database (an existing REDCap installation keeps its settings unless "
        "redcap:configurationSql is apply); see docs/configuration-sql.md.")
    if not answers.use_s3:
        out("warning: S3 storage is off: uploaded files stay on the container disk and are "
            "lost when the container is replaced.")
    ini = None if languages_dir is None else languages_dir / f"{answers.language}.ini"
    if answers.language != "English" and (ini is None or not ini.is_file()):
        out(f"warning: the image needs languages/{answers.language}.ini for this language.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
