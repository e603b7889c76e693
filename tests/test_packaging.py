"""The wheel is what a server installs: it must carry the compiled catalogs, and xinyi
installed from it must answer in English and Traditional Chinese, not silently in the
source language (gettext falls back without a word when a catalog is missing)."""
from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from babel.messages.pofile import read_po

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """The wheel built as pip builds it (isolated, from pyproject.toml), unpacked as an install would.
    It is built from a copy of the sources: setuptools builds in the tree, and a build/ folder left
    there by an earlier build would be packed again."""
    out = tmp_path_factory.mktemp("wheel")
    sources = out / "sources"
    shutil.copytree(ROOT, sources, ignore=shutil.ignore_patterns(
        ".git", ".venv", "build", "*.egg-info", "artifacts", "__pycache__", "*.db", "*.mo", ".pytest_cache"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out), str(sources)], check=True)
    [wheel] = out.glob("xinyi-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(out / "site")
    return out / "site"


@pytest.mark.parametrize("locale", ["en", "zh_Hant"])
def test_xinyi_installed_from_the_wheel_speaks_every_language(installed, locale, tmp_path):
    assert (installed / "handlers" / "locales" / locale / "LC_MESSAGES" / "messages.mo").is_file()
    with (ROOT / "locales" / locale / "LC_MESSAGES" / "messages.po").open("rb") as source:
        message = next(m for m in read_po(source) if m.id and m.string and "{" not in m.id)
    script = ("import sys; from handlers import i18n; "
              f"print(i18n.LOCALE_DIR); print(i18n.t(sys.argv[1], {locale!r}))")
    # From another folder, with the unpacked wheel first on the path: the checkout's locales/ is out of reach.
    answer = subprocess.run([sys.executable, "-c", script, message.id], cwd=tmp_path, check=True, capture_output=True,
                            text=True, env={"PYTHONPATH": str(installed), "PATH": "/usr/bin:/bin"}).stdout.splitlines()
    assert answer == [str(installed / "handlers" / "locales"), message.string]
