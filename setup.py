"""Everything is in pyproject.toml; this only compiles the Babel catalogs on every build,
editable installs included (locales/*/LC_MESSAGES/messages.po -> messages.mo), and puts the
compiled catalogs into the built `handlers` package (handlers/locales/), so that a wheel
carries them: `locales/` itself is no package."""
import shutil
from pathlib import Path

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from setuptools import setup
from setuptools.command.build_py import build_py

LOCALES = Path(__file__).resolve().parent / "locales"


def compile_catalogs(root: Path) -> None:
    for po in sorted(root.glob("*/LC_MESSAGES/*.po")):
        with po.open("rb") as source:
            catalog = read_po(source, locale=po.parent.parent.name)
        with po.with_suffix(".mo").open("wb") as target:
            write_mo(target, catalog)


class BuildWithCatalogs(build_py):
    def run(self) -> None:
        compile_catalogs(LOCALES)
        super().run()
        shipped = Path(self.build_lib) / "handlers" / "locales"
        for mo in LOCALES.glob("*/LC_MESSAGES/*.mo"):
            target = shipped / mo.relative_to(LOCALES)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(mo, target)


setup(cmdclass={"build_py": BuildWithCatalogs})
