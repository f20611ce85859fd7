"""`pip install ./sdk/python` into a fresh virtualenv, then the quick sample from there.

Slow and needs the package index (for httpx and the build backend), so it runs
only with COMBO_SDK_INSTALL_TEST=1. COMBO_SDK_INSTALL_PYTHON picks the
interpreter for the venv (e.g. a Python 3.9, the oldest supported).
"""

import os
import subprocess
import sys

import pytest

from tests.sdk.conftest import NO_MODEL_NOTICE, SDK_DIR

pytestmark = pytest.mark.skipif(
    os.environ.get("COMBO_SDK_INSTALL_TEST") != "1",
    reason="installs into a fresh venv from the package index; set COMBO_SDK_INSTALL_TEST=1 to run",
)


def test_pip_install_into_a_fresh_venv_then_run_the_quick_sample(tmp_path, live, agent):
    python = os.environ.get("COMBO_SDK_INSTALL_PYTHON") or sys.executable
    venv = tmp_path / "venv"
    subprocess.run([python, "-m", "venv", str(venv)], check=True, timeout=120)
    venv_python = str(venv / "bin" / "python")
    install = subprocess.run(
        [venv_python, "-m", "pip", "install", "-q", str(SDK_DIR)], capture_output=True, text=True, timeout=600
    )
    assert install.returncode == 0, install.stderr

    # Run from a folder without the source tree, so the installed copy is the one imported.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COMBO_", "PYTHON"))}
    env.update(COMBO_API_KEY=live.api_key, COMBO_BASE_URL=live.base_url, COMBO_AGENT_ID=agent.id)
    where = subprocess.run(
        [venv_python, "-c", "import combo_sdk, sys; print(combo_sdk.__file__); print(sys.version_info[:2])"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60,
    )
    assert where.returncode == 0, where.stderr
    assert str(venv) in where.stdout.splitlines()[0]
    assert os.path.exists(os.path.join(os.path.dirname(where.stdout.splitlines()[0]), "py.typed"))

    sample = subprocess.run(
        [venv_python, str(SDK_DIR / "examples" / "quick_sample.py")],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60,
    )
    assert sample.returncode == 0, sample.stderr
    assert sample.stdout.startswith(NO_MODEL_NOTICE)
