import logging

from predictors.telemetry.logs import TextFormatter


def _format(message: str, *args: object, exc_info: bool = False) -> str:
    record = logging.LogRecord("predictors.server.errors", logging.INFO, __file__, 1, message, args, None)
    if exc_info:
        try:
            raise RuntimeError("boom")
        except RuntimeError:
            import sys

            record.exc_info = sys.exc_info()
    return TextFormatter().format(record)


def test_a_client_supplied_newline_cannot_start_a_forged_text_log_line() -> None:
    # found by the hostile corpus: GET /v2/models/x%0aFAKE%20LINE/infer logged "FAKE LINE" as a line of its own
    line = _format("request %s: MODEL_NOT_FOUND Model with name %s does not exist.", "abc", "x\nFAKE\r\x00\u2028")
    assert "\n" not in line and "\r" not in line and "\x00" not in line and "\u2028" not in line
    assert line.endswith("Model with name x\\nFAKE\\r\\x00\\u2028 does not exist.")


def test_a_stack_trace_still_follows_on_its_own_lines() -> None:
    text = _format("request failed", exc_info=True)
    assert text.splitlines()[0].endswith("request failed")
    assert "Traceback (most recent call last):" in text and "RuntimeError: boom" in text
