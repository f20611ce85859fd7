"""integrations.signing: the signature forms, checked without HTTP."""

import time

import pytest

from combo.errors import ComboError, ErrorCode
from integrations.signing import PLAIN, TIMESTAMPED, parse, sign, sign_timestamped, verify

GITHUB_SECRET = "It's a Secret to Everybody"
GITHUB_BODY = b"Hello, World!"
GITHUB_SIGNATURE = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"


def test_it_matches_githubs_published_vector():
    assert sign(GITHUB_SECRET, GITHUB_BODY) == GITHUB_SIGNATURE


def test_it_verifies_githubs_published_vector():
    verified = verify(secrets=[GITHUB_SECRET], body=GITHUB_BODY, header=GITHUB_SIGNATURE)
    assert verified.form == PLAIN and verified.secret_index == 0


def test_it_accepts_uppercase_hex_and_spaces_around_parts():
    header = " sha256=" + GITHUB_SIGNATURE.removeprefix("sha256=").upper() + " "
    assert verify(secrets=[GITHUB_SECRET], body=GITHUB_BODY, header=header).form == PLAIN


def test_timestamped_form_signs_t_dot_body():
    header = sign_timestamped(GITHUB_SECRET, GITHUB_BODY, timestamp=1700000000)
    # HMAC over "<t>.<body>", not over the body alone.
    assert header == "t=1700000000," + sign(GITHUB_SECRET, b"1700000000." + GITHUB_BODY)
    verified = verify(secrets=[GITHUB_SECRET], body=GITHUB_BODY, header=header, now=1700000000 + 10)
    assert verified.form == TIMESTAMPED


def _code(**kwargs) -> ErrorCode:
    with pytest.raises(ComboError) as caught:
        verify(**kwargs)
    return caught.value.error


@pytest.mark.parametrize("header", [None, "", "   "])
def test_it_says_missing_for_no_header(header):
    assert _code(secrets=["s"], body=b"{}", header=header) is ErrorCode.SIGNATURE_MISSING


@pytest.mark.parametrize(
    "header",
    [
        "757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",  # no "sha256="
        "sha1=0123456789abcdef0123456789abcdef01234567",
        "sha256=xyz",
        "sha256=" + "a" * 63,
        "t=abc,sha256=" + "a" * 64,
        "t=1,t=2,sha256=" + "a" * 64,
        "t=1700000000",
        "sha256=" + "a" * 64 + ",v1=" + "b" * 64,
    ],
)
def test_it_says_malformed_for_bad_shapes(header):
    assert _code(secrets=["s"], body=b"{}", header=header) is ErrorCode.SIGNATURE_MALFORMED


def test_it_says_mismatch_when_one_byte_of_the_body_changed():
    header = sign("s", b'{"a": 1}')
    assert _code(secrets=["s"], body=b'{"a": 2}', header=header) is ErrorCode.SIGNATURE_MISMATCH


def test_it_refuses_timestamps_outside_the_window_in_both_directions():
    now = time.time()
    for t in (now - 301, now + 301):
        header = sign_timestamped("s", b"{}", timestamp=int(t))
        assert _code(secrets=["s"], body=b"{}", header=header, now=now) is ErrorCode.SIGNATURE_TIMESTAMP_OUT_OF_WINDOW


def test_it_requires_the_timestamped_form_when_asked():
    assert _code(secrets=["s"], body=b"{}", header=sign("s", b"{}"), require_timestamp=True) is (
        ErrorCode.SIGNATURE_TIMESTAMP_REQUIRED
    )


def test_it_reports_which_secret_matched():
    verified = verify(secrets=["new", "old"], body=b"{}", header=sign("old", b"{}"))
    assert verified.secret_index == 1


def test_parse_keeps_every_digest_for_senders_mid_rotation():
    parsed = parse("t=5,sha256=" + "a" * 64 + ",sha256=" + "B" * 64)
    assert parsed.timestamp == 5 and parsed.digests == ("a" * 64, "b" * 64)
