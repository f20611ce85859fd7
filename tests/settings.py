"""Test-only settings: the product's settings with a throwaway data dir."""

import atexit
import os
import shutil
import tempfile

if "COMBO_DATA_DIR" not in os.environ:  # made here, removed when this test run ends (servers it starts inherit it)
    os.environ["COMBO_DATA_DIR"] = tempfile.mkdtemp(prefix="combo-test-")
    if os.environ.get("COMBO_KEEP_TEST_DATA") != "1":
        atexit.register(shutil.rmtree, os.environ["COMBO_DATA_DIR"], True)

from combo.settings import *  # noqa: E402,F401,F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # fast user set-up in tests

# Test-only views (a deprecated operation, a crashing view) sit beside the product's URLs.
ROOT_URLCONF = "tests.urls"

# Webhook result retries: the product's schedule spreads 7 attempts over about
# an hour; tests keep the number of attempts and retry at once.
COMBO_WEBHOOK_RETRY_DELAYS = [0.0] * 6
COMBO_WEBHOOK_DELIVERY_TIMEOUT = 5.0
