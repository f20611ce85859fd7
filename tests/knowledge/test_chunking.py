"""Packing sections into sized, overlapping chunks that keep one position each."""

from __future__ import annotations

import itertools
import random

import pytest

from agents.knowledge.chunking import Chunk, chunk, split_paragraphs
from agents.knowledge.parsing import Section

WORDS = "agent answer cites passage owner upload refund policy server token index search".split()


def sentence(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(words)).capitalize() + "."


def paragraph(rng: random.Random, sentences: int) -> str:
    return " ".join(sentence(rng, rng.randint(4, 12)) for _ in range(sentences))


def document(seed: int, paragraphs: int, max_sentences: int) -> str:
    rng = random.Random(seed)
    return "\n\n".join(paragraph(rng, rng.randint(1, max_sentences)) for _ in range(paragraphs))


def texts(chunks: list[Chunk]) -> list[str]:
    return [c.text for c in chunks]


def shared_prefix_suffix(previous: str, following: str) -> int:
    """Length of the longest start of `following` that ends `previous`."""
    for length in range(min(len(previous), len(following)), 0, -1):
        if previous.endswith(following[:length]):
            return length
    return 0


# ---------------------------------------------------------------- sizes and packing


@pytest.mark.parametrize("size", [120, 400, 1200])
def test_no_chunk_is_longer_than_size(size):
    text = document(seed=1, paragraphs=60, max_sentences=30)  # many paragraphs exceed size
    chunks = chunk([Section(text)], size=size, overlap=size // 8)
    assert len(chunks) > 5
    assert max(len(c.text) for c in chunks) <= size


def test_short_paragraphs_are_packed_into_one_chunk():
    paragraphs = ["First paragraph here.", "Second one, also short.", "Third and last."]
    chunks = chunk([Section("\n\n".join(paragraphs))])
    assert texts(chunks) == ["First paragraph here.\n\nSecond one, also short.\n\nThird and last."]


def test_paragraphs_that_fit_are_never_split():
    text = document(seed=2, paragraphs=80, max_sentences=3)
    paragraphs = text.split("\n\n")
    assert max(len(p) for p in paragraphs) <= 300
    chunks = chunk([Section(text)], size=500, overlap=60)
    for p in paragraphs:
        assert any(p in c.text for c in chunks), p


def test_without_overlap_chunks_rebuild_the_text_exactly():
    text = document(seed=3, paragraphs=40, max_sentences=3)
    chunks = chunk([Section(text)], size=500, overlap=0)
    assert "\n\n".join(texts(chunks)) == text


def test_consecutive_chunks_overlap_by_about_the_overlap_at_a_word_boundary():
    text = document(seed=4, paragraphs=60, max_sentences=2)  # paragraphs up to ~200 chars
    chunks = texts(chunk([Section(text)], size=400, overlap=60))
    assert len(chunks) > 10
    longest_word = max(len(w) for w in WORDS) + 1  # a word plus its full stop
    for previous, following in itertools.pairwise(chunks):
        shared = shared_prefix_suffix(previous, following)
        assert 60 - longest_word - 1 <= shared <= 60
        assert previous[len(previous) - shared - 1].isspace()  # starts at a word


def test_overlap_stays_within_a_section():
    chunks = chunk([Section("Alpha beta gamma."), Section("Delta epsilon zeta.")], overlap=10)
    assert texts(chunks) == ["Alpha beta gamma.", "Delta epsilon zeta."]


# ---------------------------------------------------------------- long paragraphs and words


def test_long_paragraph_is_split_at_sentence_ends():
    rng = random.Random(5)
    long_paragraph = paragraph(rng, 40)
    chunks = texts(chunk([Section(long_paragraph)], size=300, overlap=0))
    assert len(chunks) > 3
    assert all(c.endswith(".") for c in chunks)
    assert " ".join(chunks) == long_paragraph


def test_sentence_longer_than_size_is_split_between_words():
    rng = random.Random(6)
    words = [rng.choice(WORDS) for _ in range(200)]
    text = " ".join(words)
    chunks = texts(chunk([Section(text)], size=100, overlap=0))
    assert all(len(c) <= 100 for c in chunks)
    assert all(set(c.split()) <= set(WORDS) for c in chunks)  # no word was cut
    assert " ".join(chunks) == text


def test_word_longer_than_size_is_the_only_thing_cut_mid_word():
    text = "a " + "x" * 250 + " b"
    chunks = texts(chunk([Section(text)], size=100, overlap=0))
    assert chunks == ["a", "x" * 100, "x" * 100, "x" * 50 + " b"]


def test_line_oriented_block_is_split_at_line_ends():
    lines = [f"{i},customer {i},refund issued. see note {i}" for i in range(60)]
    chunks = texts(chunk([Section("\n".join(lines))], size=200, overlap=0))
    assert len(chunks) > 5
    for c in chunks:
        assert all(line in lines for line in c.split("\n"))
    assert "\n".join(chunks) == "\n".join(lines)


# ---------------------------------------------------------------- positions


def test_chunks_carry_their_section_position_and_never_cross_sections():
    rng = random.Random(7)
    sections = [
        Section(paragraph(rng, 30), {"page": 1}),
        Section("Short second page.", {"page": 2}),
        Section("Loose text.", None),
    ]
    chunks = chunk(sections, size=300, overlap=40)
    pages = [c.position for c in chunks]
    assert pages[-2:] == [{"page": 2}, None]
    assert set(map(str, pages[:-2])) == {"{'page': 1}"}
    assert chunks[-2].text == "Short second page."
    assert [c.index for c in chunks] == list(range(len(chunks)))


def test_chunk_positions_are_copies_of_the_section_position():
    section = Section("Some text.", {"heading": "Intro"})
    (only,) = chunk([section])
    only.position["heading"] = "changed"
    assert section.position == {"heading": "Intro"}


# ---------------------------------------------------------------- headings and code


def test_markdown_heading_starts_a_new_chunk():
    chunks = chunk([Section("intro para\n\n## Heading\n\nbody text here")])
    assert texts(chunks) == ["intro para", "## Heading\n\nbody text here"]


def test_heading_chunk_carries_no_overlap_from_before():
    rng = random.Random(8)
    text = paragraph(rng, 20) + "\n\n## Billing\n\nInvoices go out monthly."
    chunks = texts(chunk([Section(text)], size=300, overlap=60))
    assert chunks[-1] == "## Billing\n\nInvoices go out monthly."


def test_heading_is_never_left_alone_in_a_chunk():
    rng = random.Random(9)
    body = paragraph(rng, 3)
    assert 100 < len(body) < 190
    text = "Opening words here.\n\n## Title\n\n" + body
    chunks = texts(chunk([Section(text)], size=120, overlap=0))
    assert chunks[0] == "Opening words here."
    assert chunks[1].startswith("## Title\n\n") and len(chunks[1]) > len("## Title\n\n")
    assert "## Title" not in chunks


def test_consecutive_headings_stay_together():
    chunks = chunk([Section("# Guide\n\n## Setup\n\nInstall it.")])
    assert texts(chunks) == ["# Guide\n\n## Setup\n\nInstall it."]


def test_comment_lines_do_not_break_chunks_when_heading_breaks_are_off():
    code = "x = 1\n\n# set up y\ny = 2"
    assert texts(chunk([Section(code)], heading_breaks=False)) == [code]
    assert texts(chunk([Section(code)])) == ["x = 1", "# set up y\ny = 2"]


def test_fenced_code_block_with_blank_lines_is_one_paragraph():
    fence = "```python\ndef f():\n\n    return 1\n\n\nprint(f())\n```"
    text = f"Intro.\n\n{fence}\n\nOutro."
    assert split_paragraphs(text) == ["Intro.", fence, "Outro."]
    chunks = texts(chunk([Section(text)], size=60, overlap=0))
    assert chunks == ["Intro.\n\n" + fence, "Outro."]


# ---------------------------------------------------------------- hygiene


def test_blank_sections_and_blank_lines_produce_no_empty_chunks():
    sections = [
        Section("   \n\n  "),
        Section("\n\nReal text.\n\n\n\n   \n\nMore.\n\n"),
        Section(""),
    ]
    chunks = chunk(sections)
    assert texts(chunks) == ["Real text.\n\nMore."]
    assert all(c.text.strip() for c in chunks)


def test_chunking_is_deterministic():
    sections = [Section(document(seed=10, paragraphs=50, max_sentences=20), {"page": 3})]
    assert chunk(sections, size=350, overlap=50) == chunk(sections, size=350, overlap=50)


@pytest.mark.parametrize(("size", "overlap"), [(0, 0), (100, -1), (100, 51)])
def test_invalid_sizes_are_rejected(size, overlap):
    with pytest.raises(ValueError):
        chunk([Section("text")], size=size, overlap=overlap)
