"""Settings are declared once (realtime.conf.Config) and README.md's configuration table says
exactly what that declaration says."""

from __future__ import annotations

import ast
import dataclasses
import re
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from realtime import checks, conf
from realtime.broker import checks as broker_checks
from tests import markdown

README = Path(__file__).resolve().parent.parent / "README.md"
# `realtime.E001`, or a range: `W001`, an en dash, `W004`
CHECK_IDS = re.compile(r"`(?:realtime\.)?([EW])(\d{3})`(?:\u2013`[EW](\d{3})`)?")


def readme_settings() -> dict[str, tuple[str, str]]:
    """README's configuration table: key → (default cell, meaning cell), in table order."""
    rows = markdown.first_table(markdown.section(README.read_text(), "Configuration"))
    return {row[0].strip("`"): (row[1].strip("`"), row[2]) for row in rows}


def readme_check_ids() -> set[str]:
    """The system check ids README's configuration section names, ranges expanded."""
    text = markdown.section(README.read_text(), "Configuration")
    ids = set()
    for kind, first, last in CHECK_IDS.findall(text):
        ids |= {f"realtime.{kind}{n:03}" for n in range(int(first), int(last or first) + 1)}
    return ids


def _words(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def _row(key: str) -> str:
    default = conf.DEFAULTS[key]
    shown = f'"{default}"' if isinstance(default, str) else repr(default)
    return f"| `{key}` | `{shown}` | {conf.DOCS[key]} |"


def test_the_readme_table_lists_every_setting_in_declaration_order():
    assert list(readme_settings()) == list(conf.DEFAULTS), "README rows, one per setting:\n" + (
        "\n".join(_row(key) for key in conf.DEFAULTS)
    )


@pytest.mark.parametrize("key", list(conf.DEFAULTS))
def test_the_readme_gives_each_settings_declared_default_and_doc(key):
    default, meaning = readme_settings()[key]
    documented = ast.literal_eval(default)
    assert (documented, type(documented)) == (conf.DEFAULTS[key], type(conf.DEFAULTS[key])), _row(
        key
    )
    assert _words(meaning) == _words(conf.DOCS[key]), _row(key)


def test_defaults_and_validation_come_from_the_config_fields():
    fields = dataclasses.fields(conf.Config)
    assert [field.name.upper() for field in fields] == list(conf.DEFAULTS) == list(conf.TYPES)
    assert dataclasses.asdict(conf.Config()) == {
        key.lower(): value for key, value in conf.DEFAULTS.items()
    }


def test_each_value_is_normalized_as_its_field_declares(realtime_settings):
    realtime_settings(ALLOWED_ORIGINS=["https://a.example"], HEARTBEAT_INTERVAL=30)
    config = conf.get_config()
    assert config.allowed_origins == ("https://a.example",)
    assert type(config.heartbeat_interval) is float


def test_a_value_of_the_wrong_type_is_refused_with_the_accepted_types(realtime_settings):
    realtime_settings(ALLOWED_ORIGINS="https://a.example")
    with pytest.raises(ImproperlyConfigured, match="must be list or tuple or NoneType, not str"):
        conf.get_config()


def test_the_readme_names_every_system_check_id_and_no_other():
    sources = [Path(checks.__file__), Path(broker_checks.__file__)]
    registered = {
        i for p in sources for i in re.findall(r'id="(realtime\.[EW]\d{3})"', p.read_text())
    }
    assert readme_check_ids() == registered
