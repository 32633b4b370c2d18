import json
import logging

from exporter.logs import REDACTED, RedactingFormatter

SECRET = 'pk_live_"s3cr\\et'


def record(message: str, *args: object, exc: bool = False) -> logging.LogRecord:
    exc_info = None
    if exc:
        try:
            raise RuntimeError(f"failed with {SECRET}")
        except RuntimeError:
            import sys

            exc_info = sys.exc_info()
    return logging.LogRecord("exporter.test", logging.ERROR, __file__, 1, message, args, exc_info)


def test_text_lines_are_redacted_in_message_arguments_and_traceback() -> None:
    line = RedactingFormatter([SECRET], json_lines=False).format(
        record("key %s here", SECRET, exc=True)
    )
    assert SECRET not in line
    assert line.count(REDACTED) == 2


def test_json_lines_are_redacted_before_escaping() -> None:
    formatter = RedactingFormatter([SECRET], json_lines=True)
    line = formatter.format(record("key %s here", SECRET, exc=True))
    entry = json.loads(line)
    assert SECRET not in line and SECRET not in json.dumps(entry)
    assert entry["message"] == f"key {REDACTED} here"
    assert REDACTED in entry["exception"]
    assert entry["level"] == "error"


def test_empty_secrets_are_ignored() -> None:
    line = RedactingFormatter(["", "x" * 0], json_lines=False).format(record("hello"))
    assert line.endswith("hello")
