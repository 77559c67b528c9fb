"""The public names of ``import realtime``: listed once, imported on first use."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys

import pytest

import realtime


@pytest.mark.parametrize("name", realtime.__all__)
def test_each_public_name_is_the_object_of_the_module_that_defines_it(name):
    value = getattr(realtime, name)
    assert getattr(importlib.import_module(value.__module__), name) is value


def test_realtime_testing_is_reachable_as_an_attribute_but_not_star_imported():
    assert realtime.testing is importlib.import_module("realtime.testing")
    assert "testing" not in realtime.__all__
    assert {"testing", *realtime.__all__} <= set(dir(realtime))


def test_an_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="has no attribute 'nope'"):
        realtime.nope  # noqa: B018


def test_importing_the_package_imports_none_of_its_modules_and_needs_no_settings():
    env = {key: value for key, value in os.environ.items() if key != "DJANGO_SETTINGS_MODULE"}
    script = (
        "import sys, realtime; "
        "print(sorted(m for m in sys.modules if m.startswith(('realtime.', 'django.apps'))))"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"
