import pytest

from exporter.upstream.errors import (
    ERROR_REASONS,
    AuthError,
    BadRequest,
    NotFound,
    PermissionDenied,
    RateLimited,
    UpstreamError,
    UpstreamFailed,
    classify,
)


def graph(code: object) -> dict:
    return {"error": {"message": "(#x) something", "type": "OAuthException", "code": code,
                      "fbtrace_id": "AbC"}}


def splashify(message: str) -> dict:
    return {"success": False, "message": message}


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (401, splashify("Invalid API key"), AuthError),
        (403, splashify("WABA does not belong to your account"), PermissionDenied),
        (404, splashify("Not found"), NotFound),
        (502, splashify("Request to WhatsApp failed"), UpstreamFailed),
        (500, None, UpstreamFailed),
        (503, "<html>", UpstreamFailed),
        (429, None, RateLimited),
        (400, None, BadRequest),
        (418, None, BadRequest),
        (400, graph(100), BadRequest),
        (400, graph(190), AuthError),
        (400, graph(0), AuthError),
        (400, graph(10), PermissionDenied),
        (400, graph(200), PermissionDenied),
        (400, graph(299), PermissionDenied),
        (500, graph(1), UpstreamFailed),
        (400, graph(2), UpstreamFailed),
        (500, graph(100), BadRequest),
        (500, graph("x"), UpstreamFailed),
        (400, graph(None), BadRequest),
        # A 200 that says it failed is a failure.
        (200, splashify("Request to WhatsApp failed"), UpstreamFailed),
        (200, graph(4), RateLimited),
    ],
)
def test_classify(status: int, body: object, expected: type[UpstreamError]) -> None:
    error = classify(status, body)
    assert type(error) is expected
    assert error.status == status


@pytest.mark.parametrize("code", [4, 17, 32, 613, 80007, 130429])
@pytest.mark.parametrize("status", [400, 429, 403])
def test_graph_rate_limit_codes_are_rate_limits_whatever_the_status(code: int, status: int) -> None:
    error = classify(status, graph(code))
    assert isinstance(error, RateLimited)
    assert error.retryable


@pytest.mark.parametrize("body", [{"conversation_analytics": {}}, {"id": "1"}, None, []])
def test_success(body: object) -> None:
    assert classify(200, body) is None


def test_only_transient_errors_are_retried() -> None:
    assert not classify(400, graph(100)).retryable
    assert not classify(401, None).retryable
    assert not classify(403, None).retryable
    assert not classify(404, None).retryable
    assert classify(502, None).retryable
    assert classify(429, None).retryable


def test_messages_carry_the_upstream_message() -> None:
    assert "Invalid API key" in str(classify(401, splashify("Invalid API key")))
    assert "Graph error 100" in str(classify(400, graph(100)))


def test_reasons_are_unique() -> None:
    assert len(set(ERROR_REASONS)) == len(ERROR_REASONS)
