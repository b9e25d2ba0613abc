"""The distribution maps every folder to its snf package, and lists every subpackage."""

import subprocess
import sys
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
PACKAGE_DIRS: dict[str, str] = PYPROJECT["tool"]["setuptools"]["package-dir"]


def test_every_python_package_below_a_mapped_folder_is_listed() -> None:
    listed = set(PYPROJECT["tool"]["setuptools"]["packages"])
    found = set()
    for package, folder in PACKAGE_DIRS.items():
        for init in (REPO / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(REPO / folder)
            found.add(".".join([package, *rel.parts]))
    assert found == listed


def test_the_design_layout_is_mapped() -> None:
    assert PACKAGE_DIRS == {
        "snf.common": "common",
        "snf.archipelago": "extstorage/archipelago",
        "snf.image": "os-providers/snf-image",
        "snf.hooks": "hooks",
        "snf.network": "kvm-ifup",
        "snf.nfdhcpd": "nfdhcpd",
        "snf.portal": "portal",
        "snf.quota": "quota",
    }


def test_packages_import_from_outside_the_repository(tmp_path: Path) -> None:
    code = "import " + ", ".join(PACKAGE_DIRS) + "; import snf.common.config, snf.common.rapi"
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                          text=True)  # fmt: skip
    assert proc.returncode == 0, proc.stderr


def test_common_imports_no_other_snf_package() -> None:
    for path in (REPO / "common").rglob("*.py"):
        text = path.read_text()
        for package in PACKAGE_DIRS:
            if package != "snf.common":
                assert f"import {package}" not in text and f"from {package}" not in text, path
