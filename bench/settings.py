"""Benchmark-only settings: the product plus one bare comparison view (bench/urls.py)."""

from combo.settings import *  # noqa: F401,F403

ROOT_URLCONF = "bench.urls"
