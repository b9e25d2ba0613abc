"""Install the folders Ganeti reads, exactly as committed, with the interpreter written in.

Each component keeps the files Ganeti runs in one subfolder, laid out as installed
(DESIGN.md, "Layout").  Their Python shims start with ``#!/usr/bin/python3``; Ganeti runs
them with a reset environment, so the interpreter that has the snf package must be named
in that line: the virtual environment's python in tests, /usr/bin/python3 in the Debian
packages.  Used by ``make install``::

    python packaging/install_ganeti_files.py --destdir DESTDIR \
        --ganeti-libdir /usr/local/lib/ganeti --sysconfdir /etc --python /path/to/python3
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SHEBANG = b"#!/usr/bin/python3"


def targets(ganeti_libdir: Path, sysconfdir: Path) -> dict[str, Path]:
    """Committed folder (relative to the repository) -> where Ganeti looks for its contents."""
    return {
        "extstorage/archipelago/provider": ganeti_libdir / "extstorage" / "archipelago",
        "os-providers/snf-image/provider": ganeti_libdir / "os" / "snf-image",
        "hooks/ganeti": sysconfdir / "ganeti" / "hooks",
        "kvm-ifup/ganeti": sysconfdir / "ganeti",
    }


def install_tree(source: Path, target: Path, python: str) -> list[Path]:
    """Copy ``source`` into ``target`` (merging), rewriting shims' interpreter lines.

    Symbolic links are kept as links (providers dispatch on the name they were called by);
    files keep their mode; folder READMEs are not installed, so a folder whose component is
    not written yet creates nothing (an empty provider folder would be an invalid provider).
    Returns the files written.
    """
    written: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(source):
        dirnames.sort()
        rel = Path(dirpath).relative_to(source)
        for name in sorted(filenames):
            src, dst = Path(dirpath) / name, target / rel / name
            if name in ("README.md", ".gitkeep"):
                continue
            dst.parent.mkdir(parents=True, exist_ok=True)
            if dst.is_symlink() or dst.exists():
                dst.unlink()
            if src.is_symlink():
                dst.symlink_to(os.readlink(src))
            else:
                data = src.read_bytes()
                if data.startswith(SHEBANG + b"\n"):
                    data = b"#!" + python.encode() + data[len(SHEBANG) :]
                dst.write_bytes(data)
                shutil.copymode(src, dst)
            written.append(dst)
    return written


def install_unit(source: Path, unit_dir: Path, python: str) -> Path:
    """The systemd unit of nfdhcpd, its ExecStart pointing beside the interpreter (where
    pip put the ``nfdhcpd`` command)."""
    text = source.read_text().replace(
        "ExecStart=/usr/bin/nfdhcpd", f"ExecStart={Path(python).parent / 'nfdhcpd'}"
    )
    unit_dir.mkdir(parents=True, exist_ok=True)
    target = unit_dir / source.name
    target.write_text(text)
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--destdir", type=Path, default=Path("/"))
    parser.add_argument("--ganeti-libdir", type=Path, default=Path("/usr/local/lib/ganeti"))
    parser.add_argument("--sysconfdir", type=Path, default=Path("/etc"))
    parser.add_argument("--python", default=sys.executable, help="interpreter for the shims")
    parser.add_argument(
        "--unit-dir", type=Path, default=Path("/usr/local/lib/systemd/system"),
        help="where the systemd unit of nfdhcpd goes",
    )  # fmt: skip
    args = parser.parse_args(argv)
    if not os.path.isabs(args.python):
        parser.error(f"--python must be an absolute path, not {args.python!r}")
    for folder, where in targets(args.ganeti_libdir, args.sysconfdir).items():
        dest = args.destdir / where.relative_to("/")
        files = install_tree(REPO / folder, dest, args.python)
        print(f"install: {folder}/ -> {dest} ({len(files)} files)")
    unit = REPO / "packaging" / "systemd" / "nfdhcpd.service"
    target = install_unit(unit, args.destdir / args.unit_dir.relative_to("/"), args.python)
    print(f"install: {unit.relative_to(REPO)} -> {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
