"""The ECharts shipped in bot/static/vendor/echarts is the one package.json pins exactly and
package-lock.json locks, with its licences, and the wheel carries it."""
from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "bot" / "static" / "vendor" / "echarts"


def test_the_shipped_echarts_is_the_pinned_version():
    pinned = json.loads((ROOT / "package.json").read_text())["dependencies"]["echarts"]
    assert re.fullmatch(r"\d+\.\d+\.\d+", pinned), f"echarts {pinned!r} is not pinned exactly (npm install --save-exact)"
    locked = json.loads((ROOT / "package-lock.json").read_text())["packages"]["node_modules/echarts"]
    assert locked["version"] == pinned and locked["integrity"].startswith("sha512-")
    shipped = (SHIPPED / "echarts.min.js").read_text(encoding="utf-8")
    assert re.findall(r'\bversion="(\d+\.\d+\.\d+)"', shipped) == [pinned]  # echarts.version in the bundle
    assert "Licensed to the Apache Software Foundation" in shipped[:400]


def test_the_licences_ship_beside_it_in_the_wheel():
    assert "Apache License" in (SHIPPED / "LICENSE").read_text()
    assert "The Apache Software Foundation" in (SHIPPED / "NOTICE").read_text()
    for bundled in ("LICENSE-d3", "LICENSE-zrender", "LICENSE-tslib"):
        assert (SHIPPED / bundled).stat().st_size > 0
    package_data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["bot"]
    assert "static/vendor/echarts/*" in package_data
