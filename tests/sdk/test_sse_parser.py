"""The SSE parser, fed the way networks deliver bytes: in arbitrary pieces."""

import json

import pytest

from combo_sdk import DoneEvent, ErrorEvent, MessageEvent, SSEDecoder, StreamEvent
from combo_sdk._streaming import parse_event

# What the server sends for one answer, with a keep-alive in the middle.
WIRE = (
    b": keep-alive\n\n"
    b'event: message\ndata: {"type":"message","answer":"Hello","reference":[]}\n\n'
    b": keep-alive\n\n"
    b'event: message\ndata: {"type":"message","answer":" w\xc3\xb6rld \xe2\x9c\x93","reference":'
    b'[{"id":"c1","file_id":"f1","file_name":"a.md","content":"x","score":1.5,"position":{"page":3}}]}\n\n'
    b'event: done\ndata: {"type":"done","session_id":"s1","message_id":"m1","usage":{"completion_tokens":3}}\n\n'
)


def decode_all(chunks):
    decoder = SSEDecoder()
    events = []
    for chunk in chunks:
        events.extend(decoder.feed(chunk))
    events.extend(decoder.flush())
    return events


def summary(events):
    return [(e.event, json.loads(e.data)) for e in events]


EXPECTED = summary(decode_all([WIRE]))


def test_the_whole_stream_at_once():
    assert [kind for kind, _ in EXPECTED] == ["message", "message", "done"]
    assert EXPECTED[1][1]["answer"] == " wörld ✓"


@pytest.mark.parametrize("size", [1, 2, 3, 5, 7, 64])
def test_events_split_across_chunks_of_any_size(size):
    chunks = [WIRE[i : i + size] for i in range(0, len(WIRE), size)]
    assert summary(decode_all(chunks)) == EXPECTED


def test_crlf_and_cr_line_endings_even_split_between_chunks():
    crlf = WIRE.replace(b"\n", b"\r\n")
    assert summary(decode_all([crlf])) == EXPECTED
    assert summary(decode_all([crlf[i : i + 1] for i in range(len(crlf))])) == EXPECTED
    cr = WIRE.replace(b"\n", b"\r")
    assert summary(decode_all([cr[i : i + 3] for i in range(0, len(cr), 3)])) == EXPECTED


def test_multi_line_data_joins_with_newlines():
    events = decode_all([b"event: note\ndata: first\ndata:second\ndata:  third\n\n"])
    assert len(events) == 1
    assert events[0].event == "note"
    assert events[0].data == "first\nsecond\n third"  # only one leading space is dropped


def test_comments_ids_retry_and_unknown_fields():
    decoder = SSEDecoder()
    events = decoder.feed(b": hello\nid: 7\nretry: 1500\nfoo: bar\ndata: x\n\ndata\n\n")
    assert [(e.data, e.id, e.retry) for e in events] == [("x", "7", 1500), ("", "7", 1500)]
    assert decoder.last_event_id == "7"


def test_an_event_with_no_data_is_not_dispatched_and_defaults_to_message():
    events = decode_all([b"event: ping\n\ndata: y\n\n"])
    assert [(e.event, e.data) for e in events] == [("message", "y")]


def test_an_event_cut_off_by_the_end_of_the_stream_is_dropped():
    events = decode_all([b"data: complete\n\ndata: cut off"])
    assert [e.data for e in events] == ["complete"]


def test_a_leading_bom_is_ignored():
    events = decode_all([b"\xef\xbb", b"\xbfdata: x\n\n"])
    assert [e.data for e in events] == ["x"]


def test_typed_events():
    events = [parse_event(e) for e in decode_all([WIRE])]
    first, second, done = events
    assert isinstance(first, MessageEvent) and first.answer == "Hello" and first.reference == []
    assert second.reference[0].file_name == "a.md" and second.reference[0].position == {"page": 3}
    assert isinstance(done, DoneEvent) and done.session_id == "s1" and done.usage.completion_tokens == 3

    error = parse_event(
        decode_all([b'event: error\ndata: {"code":30001,"message":"boom","data":{"request_id":"req_9"}}\n\n'])[0]
    )
    assert isinstance(error, ErrorEvent) and error.type == "error"
    assert error.code == 30001 and error.request_id == "req_9"

    unknown = parse_event(decode_all([b'event: thinking\ndata: {"step": 1}\n\n'])[0])
    assert type(unknown) is StreamEvent and unknown.type == "thinking" and unknown.step == 1
