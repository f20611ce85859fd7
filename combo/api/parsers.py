"""A JSON parser that refuses what DRF's would quietly accept.

A body must be a JSON object (not a list, a string or NaN), so every endpoint can
say clearly what was wrong with it. `loads_object` is the one reading of a
request body: DRF views get it through `StrictJSONParser`, the completion
stream (agents.streaming), which runs outside DRF, calls it directly.
"""

from __future__ import annotations

import json
import sys

from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser


class MalformedBody(ValueError):
    """The request body is not a JSON object; the text says why, fit to show the client."""


def _reject_constant(value: str):
    raise ValueError(f"{value} is not valid JSON")


def _parse_int(digits: str) -> int:
    try:
        return int(digits)
    except ValueError:  # more digits than Python converts (sys.get_int_max_str_digits())
        raise MalformedBody(
            f"The request body has a number of more than {sys.get_int_max_str_digits()} digits."
        ) from None


# Built once: json.loads() with any option builds a new decoder per call.
_decode = json.JSONDecoder(parse_constant=_reject_constant, parse_int=_parse_int).decode


def loads_object(raw: bytes) -> dict:
    """The JSON object in a request body; {} for an empty one. MalformedBody otherwise."""
    if not raw.strip():
        return {}
    try:
        data = _decode(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise MalformedBody("The request body is not UTF-8.") from None
    except MalformedBody:
        raise
    except ValueError as exc:
        raise MalformedBody(f"The request body is not valid JSON: {exc}") from None
    except RecursionError:
        # A body of thousands of nested arrays is the client's problem, not a 500.
        raise MalformedBody("The request body is nested too deeply.") from None
    if not isinstance(data, dict):
        raise MalformedBody("The request body must be a JSON object.")
    return data


class StrictJSONParser(JSONParser):
    def parse(self, stream, media_type=None, parser_context=None):
        try:
            return loads_object(stream.read() if stream is not None else b"")
        except MalformedBody as exc:
            raise ParseError(str(exc)) from None
