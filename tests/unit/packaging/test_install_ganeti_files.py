import importlib.util
import os
import stat
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
spec = importlib.util.spec_from_file_location(
    "install_ganeti_files", REPO / "packaging" / "install_ganeti_files.py"
)
assert spec and spec.loader
installer = importlib.util.module_from_spec(spec)
spec.loader.exec_module(installer)


def make_provider(root: Path) -> Path:
    src = root / "src"
    src.mkdir()
    (src / "README.md").write_text("not installed")
    shim = src / "create"
    shim.write_text("#!/usr/bin/python3\nfrom snf.x import main\nmain()\n")
    shim.chmod(0o755)
    (src / "attach").symlink_to("create")
    (src / "parameters.list").write_text("origin the map to clone\n")
    (src / "sub").mkdir()
    (src / "sub" / "tool").write_text("#!/bin/sh\necho hi\n")
    return src


def test_shims_get_the_interpreter_links_stay_links_modes_kept(tmp_path: Path) -> None:
    src = make_provider(tmp_path)
    dest = tmp_path / "dest"
    written = installer.install_tree(src, dest, "/opt/venv/bin/python")
    assert sorted(p.relative_to(dest).as_posix() for p in written) == [
        "attach", "create", "parameters.list", "sub/tool",
    ]  # fmt: skip
    assert (dest / "create").read_text().startswith("#!/opt/venv/bin/python\nfrom snf.x")
    assert stat.S_IMODE((dest / "create").stat().st_mode) == 0o755
    assert os.readlink(dest / "attach") == "create"
    assert (dest / "sub" / "tool").read_text().startswith("#!/bin/sh")  # not a python shim
    assert not (dest / "README.md").exists()


def test_reinstall_replaces_files_and_merges_into_existing_dirs(tmp_path: Path) -> None:
    src = make_provider(tmp_path)
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "admin-file").write_text("kept")
    installer.install_tree(src, dest, "/usr/bin/python3")
    installer.install_tree(src, dest, "/usr/bin/python3")
    assert (dest / "admin-file").read_text() == "kept"
    assert (dest / "create").read_text().startswith("#!/usr/bin/python3\n")


def test_a_folder_with_only_a_readme_creates_nothing(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "README.md").write_text("later")
    assert installer.install_tree(src, tmp_path / "dest", "/usr/bin/python3") == []
    assert not (tmp_path / "dest").exists()


def test_main_installs_every_ganeti_folder_under_destdir(tmp_path: Path, capsys) -> None:
    assert installer.main(["--destdir", str(tmp_path), "--python", "/usr/bin/python3"]) == 0
    out = capsys.readouterr().out
    for folder in installer.targets(Path("/l"), Path("/e")):
        assert (REPO / folder).is_dir()
        assert f"{folder}/ ->" in out


def test_relative_interpreter_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SystemExit):
        installer.main(["--destdir", str(tmp_path), "--python", "python3"])


def test_main_installs_the_nfdhcpd_unit_pointing_beside_the_interpreter(tmp_path: Path) -> None:
    python = "/opt/snf/venv/bin/python"
    assert installer.main(["--destdir", str(tmp_path), "--python", python]) == 0
    unit = (tmp_path / "usr/local/lib/systemd/system/nfdhcpd.service").read_text()
    assert "ExecStart=/opt/snf/venv/bin/nfdhcpd\n" in unit
    assert "AmbientCapabilities=CAP_NET_ADMIN CAP_NET_RAW" in unit
