"""A JSON parser that refuses what DRF's would quietly accept.

A body must be a JSON object (not a list, a string or NaN), so every endpoint can
say clearly what was wrong with it.
"""

from __future__ import annotations

import json

from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser


def _reject_constant(value: str):
    raise ValueError(f"{value} is not valid JSON")


class StrictJSONParser(JSONParser):
    def parse(self, stream, media_type=None, parser_context=None):
        raw = stream.read() if stream is not None else b""
        if not raw.strip():
            return {}
        try:
            data = json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)
        except UnicodeDecodeError:
            raise ParseError("The request body is not UTF-8.") from None
        except ValueError as exc:
            raise ParseError(f"The request body is not valid JSON: {exc}") from None
        except RecursionError:
            # A body of thousands of nested arrays is the client's problem, not a 500.
            raise ParseError("The request body is nested too deeply.") from None
        if not isinstance(data, dict):
            raise ParseError("The request body must be a JSON object.")
        return data
