"""The overview's quick sample runs unchanged against a live server (issue 7)."""

import os
import subprocess
import sys

from tests.sdk.conftest import NO_MODEL_NOTICE, SDK_DIR


def test_the_quick_sample_runs_as_written(live, agent, capsys):
    from combo_sdk import ComboAgent
    client = ComboAgent(api_key=live.api_key, base_url=live.base_url)
    session = client.sessions.create(agent_id=agent.id)
    response = client.completions.create(session_id=session.id, question="Review this PR for me", stream=False)
    print(response.answer)

    printed = capsys.readouterr().out
    assert printed.startswith(NO_MODEL_NOTICE)
    assert '"Review this PR for me"' in printed
    assert response.session_id == session.id
    stored = client.sessions.retrieve(session.id)
    assert [(m.role, m.content) for m in stored.messages] == [
        ("user", "Review this PR for me"),
        ("assistant", response.answer),
    ]


def test_the_example_file_prints_the_offline_answer(live, agent):
    env = {k: v for k, v in os.environ.items() if not k.startswith("COMBO_")}
    env.update(
        COMBO_API_KEY=live.api_key,
        COMBO_BASE_URL=live.base_url,
        COMBO_AGENT_ID=agent.id,
        PYTHONPATH=str(SDK_DIR),
    )
    result = subprocess.run(
        [sys.executable, str(SDK_DIR / "examples" / "quick_sample.py")],
        env=env, capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(NO_MODEL_NOTICE)
    assert "You review pull requests." in result.stdout
    assert '"Review this PR for me"' in result.stdout


def test_the_example_file_keeps_the_overview_lines():
    """Only the placeholders differ from the overview's sample."""
    source = (SDK_DIR / "examples" / "quick_sample.py").read_text()
    for line in [
        "from combo_sdk import ComboAgent",
        "response = client.completions.create(",
        "    session_id=session.id,",
        '    question="Review this PR for me",',
        "    stream=False,",
        ")",
        "print(response.answer)",
    ]:
        assert line in source.splitlines()
