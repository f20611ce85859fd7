"""Splitting an upstream's server-sent events (agents.llm.sse), read by read."""

from __future__ import annotations

import time

import pytest

from agents.llm import sse
from agents.llm.sse import SSEParser


def feed_all(parser: SSEParser, chunks) -> list[bytes]:
    events = []
    for chunk in chunks:
        events.extend(parser.feed(chunk))
    return events + parser.finish()


def test_events_split_anywhere_across_reads_come_out_whole():
    stream = b'data: {"a":1}\n\n: keep-alive\n\nevent: message\ndata: {"b":2}\r\n\r\ndata: [DONE]\n\n'
    expected = [b'{"a":1}', b'{"b":2}', b"[DONE]"]
    for size in (1, 2, 3, 7, len(stream)):
        chunks = [stream[i:i + size] for i in range(0, len(stream), size)]
        assert feed_all(SSEParser(), chunks) == expected, size


def test_data_lines_of_one_event_are_joined_and_the_space_after_the_colon_is_optional():
    assert feed_all(SSEParser(), [b"data:first\ndata: second\n\n"]) == [b"first\nsecond"]


def test_an_event_without_its_blank_line_is_still_read_at_the_end():
    assert feed_all(SSEParser(), [b"data: last"]) == [b"last"]


def test_one_endless_line_is_refused(monkeypatch):
    monkeypatch.setattr(sse, "MAX_EVENT_BYTES", 1000)
    parser = SSEParser()
    parser.feed(b"data: " + b"x" * 600)
    with pytest.raises(ValueError, match="size limit"):
        parser.feed(b"x" * 600)


def test_an_event_of_endless_data_lines_is_refused(monkeypatch):
    # Each line is short; the event they make never ends.
    monkeypatch.setattr(sse, "MAX_EVENT_BYTES", 1000)
    parser = SSEParser()
    with pytest.raises(ValueError, match="size limit"):
        for _ in range(200):
            parser.feed(b"data: 0123456789\n")


def test_the_limit_is_per_event_not_per_stream(monkeypatch):
    monkeypatch.setattr(sse, "MAX_EVENT_BYTES", 1000)
    parser = SSEParser()
    events = []
    for _ in range(200):
        events += parser.feed(b"data: 0123456789\n\n")
    assert len(events) == 200


def test_a_lone_cr_ends_a_line_as_crlf_and_lf_do_wherever_the_reads_split():
    # The SSE standard allows all three; a CR at the end of one read may be half of a CRLF.
    for newline in (b"\r", b"\r\n", b"\n"):
        stream = (b"data: {\"a\":1}" + newline * 2 + b": ping" + newline + b"data: x" + newline + b"data: y"
                  + newline * 2 + b"data: [DONE]" + newline * 2)
        for size in (1, 2, 3, 5, len(stream)):
            chunks = [stream[i:i + size] for i in range(0, len(stream), size)]
            assert feed_all(SSEParser(), chunks) == [b'{"a":1}', b"x\ny", b"[DONE]"], (newline, size)


def test_a_long_line_read_in_small_pieces_costs_time_in_proportion_to_its_length():
    # Joined again on every read, a 4 MiB line in 1 KiB reads took seconds of the event loop.
    line = b"data: " + b"x" * (4 << 20) + b"\r\n\r\ndata: [DONE]\n\n"
    parser, events = SSEParser(), []
    started = time.perf_counter()
    for start in range(0, len(line), 1024):
        events += parser.feed(line[start:start + 1024])
    assert time.perf_counter() - started < 1.0
    assert events == [b"x" * (4 << 20), b"[DONE]"]


def test_a_long_line_over_the_limit_is_refused_whatever_its_pieces(monkeypatch):
    monkeypatch.setattr(sse, "MAX_EVENT_BYTES", 1000)
    parser = SSEParser()
    parser.feed(b"data: x")
    with pytest.raises(ValueError, match="size limit"):
        for _ in range(20):
            parser.feed(b"x" * 100)
