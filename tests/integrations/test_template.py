"""integrations.template: dotted-path placeholders only, missing paths empty, nothing executes."""

from integrations.template import invalid_placeholders, question_for, render

PAYLOAD = {
    "action": "opened",
    "number": 42,
    "draft": False,
    "pull_request": {"title": "Fix the parser", "user": {"login": "octocat"}, "labels": ["bug", "parser"]},
    "commits": [{"id": "abc123", "message": "first"}, {"id": "def456"}],
    "weird-key": "dash ok",
}


def test_it_fills_dotted_paths_and_list_indexes():
    template = "Review PR #{{ number }} '{{pull_request.title}}' by {{ pull_request.user.login }}; first commit {{ commits.0.id }}"
    assert render(template, PAYLOAD) == "Review PR #42 'Fix the parser' by octocat; first commit abc123"


def test_missing_paths_render_empty():
    assert render("[{{ nope }}][{{ pull_request.nope.deeper }}][{{ commits.9.id }}][{{ commits.1.message }}]", PAYLOAD) == "[][][][]"


def test_non_string_values_render_as_json():
    assert render("{{ draft }} {{ pull_request.labels }} {{ commits.1 }}", PAYLOAD) == (
        'false ["bug","parser"] {"id":"def456"}'
    )


def test_dunder_names_are_just_missing_keys():
    # Lookups index parsed JSON; they never touch attributes, so nothing can reach Python objects.
    template = "{{ __class__ }}|{{ __class__.__mro__ }}|{{ pull_request.__dict__ }}|{{ commits.__len__ }}|{{ number.real }}"
    assert render(template, PAYLOAD) == "||||"


def test_anything_but_a_path_renders_empty_and_is_reported():
    template = "{{ pull_request.title | upper }}{{ 7*7 }}{{ ''.__class__ }}{% if x %}{{ action }}"
    assert render(template, PAYLOAD) == "{% if x %}opened"
    assert invalid_placeholders(template) == ["{{ pull_request.title | upper }}", "{{ 7*7 }}", "{{ ''.__class__ }}"]


def test_dashes_in_keys_are_allowed():
    assert render("{{ weird-key }}", PAYLOAD) == "dash ok"


def test_an_empty_template_asks_the_payloads_question():
    assert question_for("", {"question": "  Review this PR for me "}) == "Review this PR for me"
    assert question_for("   ", {"question": 3}) == ""
    assert question_for("", {}) == ""


def test_a_template_rendering_only_whitespace_gives_no_question():
    assert question_for("{{ missing }}  ", PAYLOAD) == ""
