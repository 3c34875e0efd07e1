"""STORE_CLEANUP_GRACE_DAYS: how long unusable codes stay on the store before the clean-up removes them."""

from __future__ import annotations

import pytest

from app.config import SETTING_NAMES, load_settings
from app.errors import ConfigError

DEVELOPMENT = {"ONCECODE_ENV": "development"}


def test_the_grace_period_defaults_to_seven_days_and_is_a_known_setting():
    assert load_settings(DEVELOPMENT, read_development_file=False).store_cleanup_grace_days == 7
    assert "STORE_CLEANUP_GRACE_DAYS" in SETTING_NAMES


@pytest.mark.parametrize("days", ["0", "30", "365"])
def test_the_grace_period_can_be_set(days: str):
    settings = load_settings({**DEVELOPMENT, "STORE_CLEANUP_GRACE_DAYS": days}, read_development_file=False)
    assert settings.store_cleanup_grace_days == int(days)


@pytest.mark.parametrize("days", ["-1", "366", "seven", "1.5", "\u00b2"])
def test_a_bad_grace_period_is_refused_by_name(days: str):
    with pytest.raises(ConfigError, match="STORE_CLEANUP_GRACE_DAYS must be a whole number of days from 0 to 365"):
        load_settings({**DEVELOPMENT, "STORE_CLEANUP_GRACE_DAYS": days}, read_development_file=False)
