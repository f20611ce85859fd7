"""Test-only settings: the product's settings with a throwaway data dir."""

import os
import tempfile

os.environ.setdefault("COMBO_DATA_DIR", tempfile.mkdtemp(prefix="combo-test-"))

from combo.settings import *  # noqa: E402,F401,F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # fast user set-up in tests

# Test-only views (a deprecated operation, a crashing view) sit beside the product's URLs.
ROOT_URLCONF = "tests.urls"

# Webhook result retries: the product's schedule spreads 7 attempts over about
# an hour; tests keep the number of attempts and retry at once.
COMBO_WEBHOOK_RETRY_DELAYS = [0.0] * 6
COMBO_WEBHOOK_DELIVERY_TIMEOUT = 5.0
