"""Settings: environment variables and validation (tests/tools/test_settings_table.py holds
them against docs/configuration.md)."""

from pathlib import Path

import pytest
from pydantic import ValidationError

from service.config import Settings


def test_environment_variables_with_the_extd_prefix(monkeypatch):
    monkeypatch.setenv("EXTD_PORT", "9123")
    monkeypatch.setenv("EXTD_MAX_BATCH_SIZE", "4")
    monkeypatch.setenv("EXTD_ADMIN_TOKEN", "s3cret")
    monkeypatch.setenv("EXTD_WATCH_WEIGHTS", "false")
    settings = Settings()
    assert settings.port == 9123
    assert settings.max_batch_size == 4
    assert settings.admin_token.get_secret_value() == "s3cret"
    assert "s3cret" not in repr(settings)
    assert settings.watch_weights is False


def test_invalid_values_are_refused(monkeypatch):
    monkeypatch.setenv("EXTD_QUEUE_SIZE", "0")
    with pytest.raises(ValidationError, match="queue_size"):
        Settings()


def test_the_weights_folder_defaults_to_the_cache_folder(monkeypatch, tmp_path):
    monkeypatch.delenv("EXTD_WEIGHTS_DIR", raising=False)
    monkeypatch.setenv("EXTD_CACHE_DIR", str(tmp_path))
    settings = Settings()
    assert settings.weights_dir == tmp_path / "weights"
    assert settings.runtime().weights_folder == settings.weights_dir
    monkeypatch.setenv("EXTD_WEIGHTS_DIR", "/srv/weights")
    assert Settings().weights_dir == Settings().runtime().weights_folder == Path("/srv/weights")
