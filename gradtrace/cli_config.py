"""Where the CLI finds its server and token, and how failures become exit codes.

Order of precedence: the --url/--token flags, then GRADTRACE_URL/GRADTRACE_TOKEN, then
`.gradtrace/token` in the current directory (the file `make run` writes).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console

from gradtrace.client import (
    DEFAULT_URL,
    ApiError,
    AuthError,
    Client,
    ClientError,
    NotFoundError,
    ServerUnavailable,
)

TOKEN_FILE = Path(".gradtrace") / "token"

EXIT_OK = 0
EXIT_JOB_FAILED = 1  # --watch: the job failed or was cancelled; also other API refusals
EXIT_USAGE = 2
EXIT_AUTH = 3
EXIT_NOT_FOUND = 4
EXIT_UNREACHABLE = 5
EXIT_INVALID = 6


class NoToken(ClientError):
    """No token in the flags, the environment or .gradtrace/token."""


@dataclass
class CliContext:
    url: str | None
    token: str | None
    out: Console
    _client: Client | None = field(default=None, repr=False)

    def client(self) -> Client:
        if self._client is None:
            self._client = Client(self.url or DEFAULT_URL, resolve_token(self.token))
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()


def resolve_token(flag_or_env: str | None) -> str:
    if flag_or_env:
        return flag_or_env.strip()
    if TOKEN_FILE.is_file():
        token = TOKEN_FILE.read_text().strip()
        if token:
            return token
    raise NoToken("no API token: pass --token, set GRADTRACE_TOKEN, or run `make run` in "
                  "this directory (it writes .gradtrace/token)")


def exit_code_for(exc: ClientError) -> int:
    if isinstance(exc, (AuthError, NoToken)):
        return EXIT_AUTH
    if isinstance(exc, NotFoundError):
        return EXIT_NOT_FOUND
    if isinstance(exc, ServerUnavailable):
        return EXIT_UNREACHABLE
    if isinstance(exc, ApiError) and exc.status in (400, 413, 415, 422):
        return EXIT_INVALID
    return EXIT_JOB_FAILED


def describe(exc: ClientError) -> list[str]:
    """One line saying what went wrong (plus one per field detail), for stderr."""
    if isinstance(exc, ServerUnavailable):
        return [(f"error: server unreachable: {exc} (is it running? `make run` starts one; "
                 "--url or GRADTRACE_URL points elsewhere)")]
    if isinstance(exc, AuthError):
        return [(f"error: authentication failed: {exc.message} (check --token, "
                 "GRADTRACE_TOKEN or .gradtrace/token)")]
    if isinstance(exc, ApiError):
        lines = [f"error: {exc.message} ({exc.status} {exc.code})"]
        lines += [f"  {d.get('field') or '-'}: {d.get('message')}" for d in exc.details]
        return lines
    return [f"error: {exc}"]
