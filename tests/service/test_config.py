"""Settings: environment variables, validation, and the README's configuration table."""

from pathlib import Path

import pytest
from pydantic import ValidationError

from service.config import Settings

README = Path(__file__).resolve().parents[2] / "README.md"


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


def test_the_readme_documents_every_setting():
    text = README.read_text()
    missing = [
        f"EXTD_{name.upper()}"
        for name in Settings.model_fields
        if f"`EXTD_{name.upper()}`" not in text
    ]
    assert not missing
