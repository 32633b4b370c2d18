"""Typed upstream failures, and how an HTTP answer maps onto them.

Every failure the exporter can meet while talking to Splashify ends up as one of these, with a
short `reason` that becomes the `reason` label of `whatsapp_exporter_poll_errors_total`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar


class UpstreamError(Exception):
    """A poll failed because of the upstream; `retryable` says whether trying again may help."""

    reason: ClassVar[str] = "upstream"
    retryable: ClassVar[bool] = False

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class AuthError(UpstreamError):
    reason = "auth"


class PermissionDenied(UpstreamError):
    reason = "permission"


class NotFound(UpstreamError):
    reason = "not_found"


class BadRequest(UpstreamError):
    """The upstream rejected the query (Graph code 100): a bug or bad config, not transient."""

    reason = "bad_request"


class RateLimited(UpstreamError):
    reason = "rate_limited"
    retryable = True

    def __init__(
        self, message: str, *, status: int | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(message, status=status)
        self.retry_after = retry_after


class UpstreamFailed(UpstreamError):
    """5xx, Splashify's 502 ("the request to WhatsApp failed"), Graph's transient codes 1 and 2."""

    reason = "upstream"
    retryable = True


class Timeout(UpstreamError):
    reason = "timeout"
    retryable = True


class ConnectionFailed(UpstreamError):
    reason = "connection"
    retryable = True


class BadResponse(UpstreamError):
    """A 200 whose body is not the documented shape (truncated JSON, wrong types)."""

    reason = "bad_response"


class LimitExceeded(UpstreamError):
    """An answer bigger than a configured limit (`limits.*`): refused, and not retried."""

    reason = "limit_exceeded"


INTERNAL_REASON = "internal"
"""A bug of ours met during a poll; counted like an upstream failure, logged with a traceback."""

ERROR_REASONS: tuple[str, ...] = (
    *(
        kind.reason
        for kind in (
            AuthError,
            PermissionDenied,
            NotFound,
            BadRequest,
            RateLimited,
            UpstreamFailed,
            Timeout,
            ConnectionFailed,
            BadResponse,
            LimitExceeded,
        )
    ),
    INTERNAL_REASON,
)


SHOWN_LENGTH = 200
"""How much of a text from the upstream an error message quotes."""


def shown(value: object, limit: int = SHOWN_LENGTH) -> str:
    """Something the upstream sent, as an error message or a log line may quote it: one line,
    printable, at most `limit` characters (plus "..."), containers named by their kind only.

    Total: nothing the upstream sends (a lone surrogate, a newline, a 64 MB string, a list
    nested 900 deep) makes it raise, or makes a log line lie about where it ends.
    """
    if isinstance(value, str):
        text = value
    elif value is None:
        text = "null"
    elif isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, int | float):
        try:
            text = repr(value)
        except ValueError:  # an int past Python's limit on digits
            text = "a huge number"
    else:
        return f"<{type(value).__name__}>"
    cut = text[:limit]
    safe = "".join(
        ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii") for ch in cut
    )
    return safe + ("..." if len(text) > limit else "")

# Graph error codes (docs/upstream.md): handle by code, not by HTTP status, because rate
# limits often arrive as HTTP 400.
GRAPH_AUTH_CODES = frozenset({0, 190})
GRAPH_TRANSIENT_CODES = frozenset({1, 2})
GRAPH_RATE_LIMIT_CODES = frozenset({4, 17, 32, 613, 80007, 130429})
GRAPH_BAD_PARAMETER_CODE = 100


def _graph_error(error: Mapping[str, object], status: int) -> UpstreamError:
    code = error.get("code")
    message = f"Graph error {shown(code, 20)}: {shown(error.get('message', ''))}".strip()
    if not isinstance(code, int) or isinstance(code, bool):
        return (
            UpstreamFailed(message, status=status)
            if status >= 500
            else BadRequest(message, status=status)
        )
    if code in GRAPH_RATE_LIMIT_CODES:
        return RateLimited(message, status=status)
    if code in GRAPH_AUTH_CODES:
        return AuthError(message, status=status)
    if code == 10 or 200 <= code <= 299:
        return PermissionDenied(message, status=status)
    if code in GRAPH_TRANSIENT_CODES:
        return UpstreamFailed(message, status=status)
    if code == GRAPH_BAD_PARAMETER_CODE:
        return BadRequest(message, status=status)
    # Codes nobody documented: the HTTP status is the best hint left.
    if status >= 500:
        return UpstreamFailed(message, status=status)
    return BadRequest(message, status=status)


_BY_STATUS: dict[int, type[UpstreamError]] = {
    400: BadRequest,
    401: AuthError,
    403: PermissionDenied,
    404: NotFound,
    429: RateLimited,
}


def classify(status: int, body: object) -> UpstreamError | None:
    """The error an answer stands for, or None when it is a success.

    `body` is the decoded JSON (or None when it was not JSON). A Graph `{"error": {...}}` body is
    classified by its `code` whatever the status; a Splashify `{"success": false, "message"}`
    body and anything else by the HTTP status.
    """
    if isinstance(body, Mapping):
        error = body.get("error")
        if isinstance(error, Mapping):
            return _graph_error(error, status)
    if 200 <= status < 300:
        if isinstance(body, Mapping) and body.get("success") is False:
            return UpstreamFailed(f"Splashify: {shown(body.get('message', ''))}", status=status)
        return None
    detail = ""
    if isinstance(body, Mapping) and isinstance(body.get("message"), str):
        detail = f": {shown(body['message'])}"
    message = f"HTTP {status}{detail}"
    if status >= 500:
        return UpstreamFailed(message, status=status)
    return _BY_STATUS.get(status, BadRequest)(message, status=status)
