"""Log lines: one per event, logfmt or JSON, credentials redacted."""

import io
import json
import logging

import pytest

from fsm import LogObserver
from vkcmd import logfmt as logs
from vkcmd.machines import NODE, NodeEvent


@pytest.fixture
def capture():
    stream = io.StringIO()
    logs.configure(verbosity=2, log_format="logfmt", stream=stream)
    yield stream
    logging.getLogger().handlers.clear()


def test_logfmt_line_quotes_only_what_needs_it(capture):
    logging.getLogger("vkcmd.test").info("pod started", extra=logs.fields(pod="default/p1", note="two words", n=3))
    line = capture.getvalue()
    assert line.count("\n") == 1
    assert "level=info logger=vkcmd.test" in line
    assert 'msg="pod started"' in line and "pod=default/p1" in line and 'note="two words"' in line and "n=3" in line


def test_json_lines_parse(capture):
    logs.configure(verbosity=2, log_format="json", stream=capture)
    logging.getLogger("vkcmd.test").warning("careful", extra=logs.fields(port=10250))
    record = json.loads(capture.getvalue())
    assert record["level"] == "warn" and record["msg"] == "careful" and record["port"] == 10250


def test_credentials_are_redacted(capture):
    logging.getLogger("vkcmd.test").info("auth", extra=logs.fields(token="s3cr3t", bearer_token="x", user="bob"))
    line = capture.getvalue()
    assert "s3cr3t" not in line and "user=bob" in line and "token=[redacted]" in line


def test_transition_trace_is_one_structured_line(capture):
    node = NODE.new("vk", observers=[LogObserver()])
    node.fire(NodeEvent.REGISTERED, reason="lease written")
    line = capture.getvalue().strip()
    assert "\n" not in line
    for part in ("machine=node", "id=vk", "from=Registering", "to=Ready", "event=registered",
                 'reason="lease written"', "elapsed="):
        assert part in line


def test_verbosity_maps_to_levels(capture):
    logging.getLogger("vkcmd.test").debug("hidden")
    assert capture.getvalue() == ""
    logs.configure(verbosity=4, log_format="logfmt", stream=capture)
    logging.getLogger("vkcmd.test").debug("shown")
    assert "shown" in capture.getvalue()
