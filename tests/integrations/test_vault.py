"""integrations.vault: secrets are random, prefixed, and encrypted under a key derived from settings."""

import pytest

from integrations import vault


def test_secrets_are_prefixed_random_and_long():
    made = {vault.generate_secret() for _ in range(50)}
    assert len(made) == 50
    assert all(s.startswith("whsec_") and len(s) == 6 + 43 for s in made)


def test_encryption_round_trips_and_hides_the_secret():
    token = vault.encrypt("whsec_abc")
    assert "whsec_abc" not in token and vault.decrypt(token) == "whsec_abc"


def test_an_explicit_key_keeps_secrets_made_under_secret_key_readable(settings):
    settings.COMBO_WEBHOOK_ENCRYPTION_KEY = None
    old = vault.encrypt("whsec_old")
    settings.COMBO_WEBHOOK_ENCRYPTION_KEY = "an operator's own key material"
    new = vault.encrypt("whsec_new")
    assert vault.decrypt(old) == "whsec_old" and vault.decrypt(new) == "whsec_new"
    settings.SECRET_KEY = "rotated"
    assert vault.decrypt(new) == "whsec_new"  # the explicit key alone reads it
    with pytest.raises(vault.SecretUnreadable):
        vault.decrypt(old)


def test_a_changed_key_makes_old_secrets_unreadable_not_wrong(settings):
    token = vault.encrypt("whsec_x")
    settings.SECRET_KEY = "something else"
    with pytest.raises(vault.SecretUnreadable) as caught:
        vault.decrypt(token)
    assert "whsec_x" not in str(caught.value)
