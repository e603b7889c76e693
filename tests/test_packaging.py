"""What a server installs. The lock files pin what pyproject.toml asks for, at the versions
tested. The wheel must carry the compiled catalogs, and xinyi installed from it must answer
in English and Traditional Chinese, not silently in the source language (gettext falls back
without a word when a catalog is missing)."""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest
from babel.messages.pofile import read_po
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent


def locked(name: str) -> dict[str, str]:
    text = (ROOT / name).read_text()
    return {canonicalize_name(package): version for package, version in re.findall(r"^([\w.-]+)==(\S+?) ", text, re.M)}


def test_the_locks_pin_every_requirement_at_its_floor():
    """A floor is the version tested: each requirement's floor is the version its lock pins, so
    `pip install xinyi` cannot bring an older, untested release."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    run, test = locked("requirements.lock"), locked("requirements-test.lock")
    wanted = [(run, project["project"]["dependencies"] + project["build-system"]["requires"]),
              (test, project["project"]["optional-dependencies"]["test"])]
    for lock, requirements in wanted:
        for line in requirements:
            requirement = Requirement(line)
            version = lock[canonicalize_name(requirement.name)]
            floors = [spec.version for spec in requirement.specifier if spec.operator == ">="]
            assert floors == [version], f"{requirement}: the lock pins {version}"
    assert {name: test[name] for name in run} == run  # the test lock runs the same versions


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """The wheel built with the locked setuptools and babel, as .ci/run builds xinyi, unpacked as an install would.
    It is built from a copy of the sources: setuptools builds in the tree, and a build/ folder left
    there by an earlier build would be packed again."""
    out = tmp_path_factory.mktemp("wheel")
    sources = out / "sources"
    shutil.copytree(ROOT, sources, ignore=shutil.ignore_patterns(
        ".git", ".venv", "build", "*.egg-info", "artifacts", "__pycache__", "*.db", "*.mo", ".pytest_cache"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(out),
                    str(sources)], check=True)
    [wheel] = out.glob("xinyi-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(out / "site")
    return out / "site"


@pytest.mark.slow
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
