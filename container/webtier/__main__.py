"""PID 1 of the running container: PHP-FPM and Apache, sized by the plan, stopped together.

    python3 -m webtier [apache2 arguments]      (exec'd by /usr/local/bin/redcap-apache)
    python3 -m webtier --configtest              (the image build: both configurations parse)

1. Validate the web tier's variables and read the memory limit (``sizing``); log the plan.
2. Start PHP-FPM (foreground) and wait for its socket, then Apache (``-DFOREGROUND``), both
   with the plan's numbers in their environment (the configuration files read ${REDCAP_*});
   Apache also gets ``-DREDCAP_TRUST_FORWARDED_HOST`` with TRUST_FORWARDED_HOST=true.
3. Forward the platform's signals to Apache, which keeps their meaning: SIGWINCH is the graceful
   stop (the image's STOPSIGNAL: requests in flight, queued ones included, finish first),
   SIGTERM/SIGINT stop at once, SIGHUP/SIGUSR1 restart.
4. When Apache has exited, stop PHP-FPM gracefully and exit with Apache's status. If PHP-FPM
   dies, stop Apache and exit non-zero, so that the platform replaces the container instead of
   keeping one whose every PHP request fails.

Zombies of any orphaned process are reaped, as PID 1 must.
"""
from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Sequence

from .sizing import DEFAULT_STATUS_PORT, FORWARDED_HOST_DEFINE, Plan, load_web_settings, plan_from_system

FPM = "/usr/sbin/php-fpm8.4"
FPM_CONFIG = "/etc/php/8.4/fpm/php-fpm.conf"
APACHE = "/usr/sbin/apache2"
RUN_DIR = Path("/run/redcap")
FPM_SOCKET = RUN_DIR / "php-fpm.sock"
STALE = (FPM_SOCKET, RUN_DIR / "php-fpm-status.sock", RUN_DIR / "php-fpm.pid")
FPM_START_SECONDS = 30
# PHP-FPM's own process_control_timeout (php/php-fpm.conf) is shorter: its master has ended
# its workers by then.
FPM_STOP_SECONDS = 20
FORWARDED = (signal.SIGWINCH, signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1)
EXIT_USAGE = 64
EXIT_FPM_FAILED = 70


def say(message: str, *, error: bool = False) -> None:
    print(f"redcap-apache: {message}", file=sys.stderr if error else sys.stdout, flush=True)


def exit_code(status: int) -> int:
    code = os.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code


class Supervisor:
    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.apache: int | None = None
        self.fpm: int | None = None
        self.apache_status: int | None = None
        self.fpm_status: int | None = None
        self.stopping = False
        self.wake_r, wake_w = os.pipe()
        os.set_blocking(wake_w, False)
        signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
        for signo in (*FORWARDED, signal.SIGCHLD):
            signal.signal(signo, lambda *_: None)

    def spawn(self, argv: list[str]) -> int:
        # The Python runtime ignores SIGPIPE; the servers get the default back.
        return os.posix_spawn(argv[0], argv, self.env, setsigdef=(signal.SIGPIPE,))

    def signals(self, timeout: float | None) -> list[int]:
        """Signals that arrived, waiting up to timeout seconds (None: until one does)."""
        ready, _, _ = select.select([self.wake_r], [], [], timeout)
        return list(os.read(self.wake_r, 256)) if ready else []

    def reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if pid == self.apache:
                self.apache_status = status
            elif pid == self.fpm:
                self.fpm_status = status

    def handle(self, signos: list[int]) -> None:
        for signo in signos:
            if signo == signal.SIGCHLD:
                self.reap()
            elif signo in FORWARDED:
                self.stopping |= signo in (signal.SIGWINCH, signal.SIGTERM, signal.SIGINT)
                if self.apache is not None and self.apache_status is None:
                    os.kill(self.apache, signo)

    def start_fpm(self) -> bool:
        for path in STALE:  # left by a previous run of this container (docker restart)
            path.unlink(missing_ok=True)
        self.fpm = self.spawn([FPM, "--nodaemonize", "--fpm-config", FPM_CONFIG])
        deadline = time.monotonic() + FPM_START_SECONDS
        while not FPM_SOCKET.exists():
            self.handle(self.signals(0.05))
            if self.fpm_status is not None:
                say(f"PHP-FPM exited at start ({exit_code(self.fpm_status)})", error=True)
                return False
            if self.stopping:
                return False
            if time.monotonic() > deadline:
                say(f"PHP-FPM did not create {FPM_SOCKET} within {FPM_START_SECONDS} s", error=True)
                return False
        return True

    def stop_fpm(self) -> None:
        if self.fpm is None or self.fpm_status is not None:
            return
        os.kill(self.fpm, signal.SIGQUIT)  # graceful: workers finish what they are running
        deadline = time.monotonic() + FPM_STOP_SECONDS
        while self.fpm_status is None and time.monotonic() < deadline:
            self.handle(self.signals(max(0.0, deadline - time.monotonic())))
        if self.fpm_status is None:
            os.kill(self.fpm, signal.SIGKILL)
            while self.fpm_status is None:
                self.handle(self.signals(1.0) or [signal.SIGCHLD])

    def run(self, apache_args: Sequence[str]) -> int:
        if not self.start_fpm():
            self.stop_fpm()
            return 0 if self.stopping else EXIT_FPM_FAILED
        self.apache = self.spawn([APACHE, "-DFOREGROUND", *apache_args])
        fpm_died = False
        while self.apache_status is None:
            self.handle(self.signals(None))
            if self.fpm_status is not None and not fpm_died:
                fpm_died = True
                say(f"PHP-FPM exited ({exit_code(self.fpm_status)}); stopping Apache", error=True)
                os.kill(self.apache, signal.SIGTERM)
        self.stop_fpm()
        return EXIT_FPM_FAILED if fpm_died else exit_code(self.apache_status)


def configtest(plan: Plan) -> int:
    """Both servers parse their configuration with this plan's numbers (as www-data); Apache's
    also with the trusted forwarded host, whose directives are skipped unless it is defined."""
    env = {**os.environ, "STATUS_PORT": os.environ.get("STATUS_PORT") or DEFAULT_STATUS_PORT,
           **plan.environment()}
    for cmd in (["apache2ctl", "-t"], ["apache2ctl", "-t", f"-D{FORWARDED_HOST_DEFINE}"],
                [FPM, "--test", "--fpm-config", FPM_CONFIG]):
        # Output through a pipe of this process: PHP-FPM reopens its stderr (/proc/self/fd/2),
        # which a build step's root-owned stderr does not allow.
        r = subprocess.run(cmd, env=env, check=False, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           text=True)
        print(r.stdout, end="", file=sys.stderr)
        if r.returncode != 0:
            return r.returncode
    return 0


def main(argv: Sequence[str]) -> int:
    settings, problems = load_web_settings(os.environ)
    if settings is None:
        for p in problems:
            say(f"{p.key} must be {p.allowed} (example: {p.example}), got '{p.value}'", error=True)
        return EXIT_USAGE
    plan = plan_from_system(settings)
    if list(argv) == ["--configtest"]:
        return configtest(plan)
    say("web tier: " + plan.summary()
        + ("; host name from X-Forwarded-Host" if settings.trust_forwarded_host else ""))
    if plan.below_one_worker:
        say(f"{plan.memory_mib} MiB is too little for PHP memory_limit {plan.php_memory_limit_mib}M: "
            "give the container more memory or lower PHP_MEMORY_LIMIT", error=True)
    try:
        Path("/proc/self/comm").write_text("redcap-web")  # what ps and /proc/1/comm show
    except OSError:
        pass
    return Supervisor({**os.environ, **plan.environment()}).run([*argv, *settings.apache_defines()])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
