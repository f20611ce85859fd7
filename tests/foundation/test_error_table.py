"""The error-code table has one source (combo.errors); the README and OpenAPI follow it."""

import re
from pathlib import Path

from combo.errors import ErrorCode, markdown_table

README = Path(__file__).resolve().parents[2] / "README.md"


def test_the_readme_table_is_the_code_table():
    text = README.read_text()
    block = re.search(r"<!-- error-codes:start -->\n(.*?)\n<!-- error-codes:end -->", text, re.S)
    assert block, "README.md lost its error-code markers"
    assert block.group(1).strip() == markdown_table()


def test_codes_sit_in_their_class_and_status_range():
    for member in ErrorCode:
        code, status = member.code, member.status
        if code < 20000:
            assert code >= 10000 and 400 <= status < 500, member
        elif code < 30000:
            assert 500 <= status < 600, member
        else:
            assert status in (502, 503, 504), member
