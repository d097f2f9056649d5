"""One ``gwclient`` run: the parsed arguments, the streams, the secrets to hide, the
resolved config and the connection (always shut down at the end)."""

from __future__ import annotations

import argparse
import json
import logging
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TextIO
from urllib.parse import SplitResult, urlsplit

from gwclient import (
    ConfigError,
    GatewayConfig,
    GatewayConnection,
    GatewayError,
    PairingRequired,
    RequestError,
    UsageError,
    decode_setup_code,
)

from ._codes import EXIT_FAILURE, EXIT_PAIRING, EXIT_USAGE, PROG, UsageProblem

__all__ = ["Invocation", "Scrubber", "connection", "describe", "exit_code", "report_error"]


class Scrubber:
    """Replaces every known secret in text shown to the user."""

    def __init__(self) -> None:
        self._pairs: dict[str, str] = {}

    def add_secret(self, value: str | None) -> None:
        if value:
            self._pairs[value] = "***"

    def add_url(self, url: str | None) -> None:
        """Show ``url`` only without its userinfo, query and fragment (where credentials go)."""
        if not url:
            return
        try:
            parts = urlsplit(url.strip())
        except ValueError:
            self._pairs[url] = "<unparseable url>"
            return
        redacted = SplitResult(parts.scheme, parts.netloc.rpartition("@")[2], parts.path, "", "").geturl()
        if redacted != url:
            self._pairs[url] = redacted

    def __call__(self, text: str) -> str:
        # Longest first, so a URL containing a token is replaced as a whole.
        for secret in sorted(self._pairs, key=len, reverse=True):
            text = text.replace(secret, self._pairs[secret])
        return text


class _ScrubbingFormatter(logging.Formatter):
    def __init__(self, scrub: Scrubber) -> None:
        super().__init__("%(asctime)s %(levelname)s %(threadName)s %(name)s: %(message)s")
        self._scrub = scrub

    def format(self, record: logging.LogRecord) -> str:
        return self._scrub(super().format(record))


class Invocation:
    """One ``main()`` run: the parsed arguments, the streams and the secrets to hide."""

    def __init__(self, args: argparse.Namespace, out: TextIO, err: TextIO) -> None:
        self.args = args
        self.out = out
        self.err = err
        self.scrub = Scrubber()
        for value in (args.token, args.password, getattr(args, "setup_code", None)):
            self.scrub.add_secret(value)
        self.scrub.add_url(args.url)
        self._config: GatewayConfig | None = None

    @property
    def json(self) -> bool:
        return bool(self.args.json)

    def config(self) -> GatewayConfig:
        """The effective config (resolved once per run).  An explicit ``--config`` that
        does not exist is a :class:`ConfigError` (exit 2), never silently ignored."""
        if self._config is not None:
            return self._config
        overrides: dict[str, Any] = {}
        for name in ("url", "token", "password"):
            value = getattr(self.args, name)
            if value is not None:
                overrides[name] = value
        code = getattr(self.args, "setup_code", None)
        if code is not None:
            setup = decode_setup_code(code)  # a ConfigError (exit 2) for a bad or expired code
            self.scrub.add_secret(setup.bootstrap_token)
            overrides.update(setup.config_fields(overrides.get("url")))  # an explicit --url wins
        if self.args.allow_insecure:
            overrides["allow_insecure_remote"] = True
        if getattr(self.args, "share", None):
            overrides["share"] = self.args.share
        config = GatewayConfig.from_environment(config_path=self.args.config, **overrides)
        self.scrub.add_secret(config.token)
        self.scrub.add_secret(config.password)
        self.scrub.add_url(config.url)
        self._config = config
        return config

    def print(self, text: str = "") -> None:
        print(self.scrub(text), file=self.out, flush=True)

    def print_json(self, value: Any) -> None:
        self.print(json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str))

    def note(self, text: str) -> None:
        print(self.scrub(f"{PROG}: {text}"), file=self.err, flush=True)

    def error(self, exc: BaseException, message: str | None = None) -> None:
        if self.args.verbose:
            tb = "".join(traceback.format_exception(exc))
            self.err.write(self.scrub(tb))
        text = message if message is not None else describe(exc)
        text = " ".join(text.split())  # one line, whatever the message holds
        print(self.scrub(f"{PROG}: error: {text}"), file=self.err, flush=True)

    @contextmanager
    def logging(self) -> Iterator[None]:
        """With ``--verbose``: the ``gwclient`` loggers at DEBUG on stderr (scrubbed), for
        this run only.  Without it the package's NullHandler keeps the library quiet:
        errors are reported once, by the CLI."""
        if not self.args.verbose:
            yield
            return
        logger = logging.getLogger("gwclient")
        handler = logging.StreamHandler(self.err)
        handler.setFormatter(_ScrubbingFormatter(self.scrub))
        previous = logger.level
        logger.addHandler(handler)
        logger.setLevel(logging.DEBUG)
        try:
            yield
        finally:
            logger.removeHandler(handler)
            logger.setLevel(previous)


def describe(exc: BaseException) -> str:
    if isinstance(exc, RequestError):
        code = exc.code + (f"/{exc.detail_code}" if exc.detail_code else "")
        what = f"{exc.method} failed" if exc.method else "request failed"
        text = f"{what} ({code}): {exc}" if code else f"{what}: {exc}"
        if exc.recommended_next_step:
            text += f" (next step: {exc.recommended_next_step})"
        return text
    if isinstance(exc, (GatewayError, UsageProblem)):
        return str(exc) or type(exc).__name__
    return f"unexpected {type(exc).__name__}: {exc} (run with --verbose for a traceback)"


def exit_code(exc: BaseException) -> int:
    if isinstance(exc, PairingRequired):
        return EXIT_PAIRING
    if isinstance(exc, (ConfigError, UsageProblem, UsageError)):  # UsageError: the library refused an argument
        return EXIT_USAGE
    return EXIT_FAILURE


def report_error(session: Invocation, exc: Exception) -> int:
    """Print ``exc`` as one line (plus the traceback with ``--verbose``); its exit code."""
    session.error(exc)
    return exit_code(exc)


@contextmanager
def connection(config: GatewayConfig) -> Iterator[GatewayConnection]:
    """The process's shared connection for ``config``, always shut down at the end."""
    conn = GatewayConnection.shared(config)
    try:
        yield conn
    finally:
        conn.shutdown()
