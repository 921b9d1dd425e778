"""The configuration page's settings table is the rendering of ``Settings``, field for field."""

from service.config import Settings
from tools import settings_table


def test_the_configuration_page_is_up_to_date():
    page = settings_table.PAGE.read_text()
    assert settings_table.table_on_page(page) == settings_table.render(), (
        f"{settings_table.PAGE.name} is out of date: run `{settings_table.REGENERATE}`"
    )


def test_every_setting_is_on_the_page_with_a_description():
    page = settings_table.PAGE.read_text()
    for name, field in Settings.model_fields.items():
        assert field.description, f"Settings.{name} needs a description= (the page shows it)"
        assert f"| `EXTD_{name.upper()}` |" in page


def test_defaults_are_written_as_in_the_environment():
    assert settings_table.env_text(((1024, 768), (768, 1024))) == "1024x768,768x1024"
    assert settings_table.env_text(False) == "false"
    row = next(r for r in settings_table.render().splitlines() if "`EXTD_CACHE_DIR`" in r)
    assert "`~/.cache/extd`" in row  # whoever renders it


def test_the_generator_rewrites_the_table_and_nothing_else(tmp_path, monkeypatch):
    current = settings_table.PAGE.read_text()
    page = tmp_path / "configuration.md"
    page.write_text(current.replace("| `EXTD_PORT` |", "| `EXTD_OLD_PORT` |"))
    monkeypatch.setattr(settings_table, "PAGE", page)
    assert settings_table.main(["--check"]) == 1
    assert settings_table.main([]) == 0
    assert page.read_text() == current
