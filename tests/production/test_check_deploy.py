"""`manage.py check --deploy` is clean apart from what the reverse proxy does."""

import os
import re
import secrets
import subprocess
import sys

from tests.live import ROOT


def test_check_deploy_leaves_only_the_proxys_jobs(tmp_path):
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "combo.settings",
        "COMBO_DATA_DIR": str(tmp_path),
        "SECRET_KEY": secrets.token_urlsafe(64),
        "ALLOWED_HOSTS": "combo.example.com",
        "BEHIND_TLS_PROXY": "true",
        "DEBUG": "false",
    }
    result = subprocess.run([sys.executable, "manage.py", "check", "--deploy"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=120)
    found = set(re.findall(r"\(([a-z_]+\.[EW]\d+)\)", result.stdout + result.stderr))
    # HSTS (W004) and the HTTPS redirect (W008) are set in deploy/nginx.conf.
    assert found == {"security.W004", "security.W008"}, result.stdout + result.stderr
