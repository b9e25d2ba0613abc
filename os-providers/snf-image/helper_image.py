"""The helper VM's kernel and initramfs, built from what the node already has.

The helper boots the node's own Debian kernel (decompressed once into an ELF ``vmlinux``:
QEMU loads it directly through its PVH entry, which skips the slow in-guest xz
decompression under TCG) with an initramfs holding:

- busybox (``/busybox``, and ``mount``/``umount``/``insmod`` applets),
- the kernel modules for virtio-mmio disks and serial ports, ext4 and xfs (from
  ``/lib/modules/<version>``, in ``modules.dep`` order),
- ``e2fsck``, ``resize2fs`` and ``xfs_growfs`` with their shared libraries,
- the node's Python interpreter with just the standard-library modules the agent imports,
  as compiled code in ``/usr/lib/pythonXY.zip``, plus ``snf.image.agent`` and
  ``snf.image.saferoot``.

Nothing from the node is shared with the VM at run time.  The result is cached under
``cache_dir`` by a digest of its inputs, so it is rebuilt only when the kernel, the tools,
Python or the agent change.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import lzma
import os
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from snf.common.errors import ConfigError, SnfError

from . import agent, saferoot
from .cpio import Cpio

log = logging.getLogger(__name__)

BUSYBOX = "/bin/busybox"
APPLETS = ("sh", "mount", "umount", "insmod", "sleep", "poweroff", "cat", "ls", "sync")
TOOLS = (agent.E2FSCK, agent.RESIZE2FS, agent.XFS_GROWFS)
BASE_MODULES = ("virtio_mmio", "virtio_blk", "virtio_console")
FS_MODULES = {"ext4": ("crc32c_generic", "ext4"), "xfs": ("crc32c_generic", "xfs")}
PORT_NAME = "snf.agent"
#: The guest's console says this once the agent is about to start.
READY_MARK = "snf-image-helper: agent"
FORMAT_VERSION = "1"

INIT = """#!/busybox sh
/busybox mount -t devtmpfs dev /dev
/busybox mount -t proc proc /proc
/busybox mount -t sysfs sys /sys
/busybox mount -t tmpfs tmp /tmp
say() { echo "snf-image-helper: $*" > /dev/ttyS0; }
fs=ext4
for word in $(/busybox cat /proc/cmdline); do
  case "$word" in snf.fs=*) fs="${word#snf.fs=}";; esac
done
for m in $(/busybox cat /modules/base /modules/"$fs"); do
  /busybox insmod /modules/"$m" || say "cannot load $m"
done
port=
for try in 1 2 3 4 5 6 7 8 9 10; do
  for p in /sys/class/virtio-ports/*; do
    [ "$(/busybox cat "$p/name" 2>/dev/null)" = PORT_NAME ] && port=/dev/"${p##*/}"
  done
  [ -n "$port" ] && break
  /busybox sleep 0.2
done
say "agent $port"
/usr/bin/python3 -I -S -m snf.image.agent "$port" > /dev/ttyS0 2>&1
say "agent exited with $?"
/busybox sync
/busybox poweroff -f
""".replace("PORT_NAME", PORT_NAME)

# Run by the helper's Python: import the agent from a staging folder, then write every
# module it loaded (standard library and agent) as compiled code into one zip file.
_CLOSURE = r"""
import importlib._bootstrap_external as ext, json, marshal, os, sys, zipfile
stage, out = sys.argv[1], sys.argv[2]
sys.path.insert(0, stage)
import snf.image.agent
roots = sorted({os.path.dirname(os.__file__), stage}, key=len, reverse=True)
natives = []
with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as zf:
    for name, module in sorted(sys.modules.items()):
        path = getattr(module, "__file__", None)
        if not path:
            continue
        if path.endswith(".so"):
            natives.append(path)
            continue
        root = next((r for r in roots if path.startswith(r + "/")), None)
        if root is None or not path.endswith(".py"):
            continue
        source = open(path, "rb").read()
        code = compile(source, path, "exec", dont_inherit=True)
        data = ext._code_to_timestamp_pyc(code, 0, len(source))
        zf.writestr(os.path.relpath(path, root) + "c", bytes(data))
print(json.dumps({"natives": natives, "version": "%d%d" % sys.version_info[:2],
                  "stdlib": os.path.dirname(os.__file__)}))
"""


@dataclass(frozen=True)
class HelperFiles:
    kernel: Path
    initrd: Path


def find_kernel(kernel: Path | None) -> tuple[Path, str]:
    """The kernel to boot and its version (the newest ``/boot/vmlinuz-*`` by default)."""
    if kernel is None:
        found = sorted(Path("/boot").glob("vmlinuz-*"), key=lambda p: p.stat().st_mtime)
        if not found:
            raise ConfigError("no /boot/vmlinuz-* for the helper VM: install linux-image-amd64")
        kernel = found[-1]
    if not kernel.name.startswith("vmlinuz-") or not kernel.is_file():
        raise ConfigError(f"[image] helper_kernel {kernel} is not a /boot/vmlinuz-<version> file")
    version = kernel.name.removeprefix("vmlinuz-")
    if not Path("/lib/modules", version, "modules.dep").is_file():
        raise ConfigError(f"no modules for the helper kernel {version} in /lib/modules")
    return kernel, version


def extract_vmlinux(bzimage: bytes) -> bytes | None:
    """The ELF kernel inside a bzImage (xz or gzip payload), None if none is found."""
    for magic, opener in ((b"\xfd7zXZ\x00", "xz"), (b"\x1f\x8b\x08", "gz")):
        start = bzimage.find(magic)
        while start >= 0:
            try:
                if opener == "xz":
                    data = lzma.LZMADecompressor(format=lzma.FORMAT_XZ).decompress(bzimage[start:])
                else:
                    data = gzip.GzipFile(fileobj=_Reader(bzimage[start:])).read()
            except (lzma.LZMAError, OSError, EOFError):
                data = b""
            if data.startswith(b"\x7fELF"):
                return data
            start = bzimage.find(magic, start + 1)
    return None


class _Reader:
    """A gzip source that stops quietly at the payload's end (bzImages carry trailing data)."""

    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def read(self, n: int = -1) -> bytes:
        n = len(self.data) - self.pos if n < 0 else n
        out = self.data[self.pos : self.pos + n]
        self.pos += len(out)
        return out


def module_order(moddir: Path, names: tuple[str, ...]) -> list[str]:
    """The module files (relative to ``moddir``) that load ``names``, dependencies first."""
    deps: dict[str, list[str]] = {}
    by_name: dict[str, str] = {}
    for line in (moddir / "modules.dep").read_text().splitlines():
        path, _, rest = line.partition(":")
        deps[path] = rest.split()
        by_name[Path(path).name.split(".ko")[0].replace("-", "_")] = path
    order: list[str] = []

    def visit(path: str) -> None:
        if path in order:
            return
        for dep in deps.get(path, []):
            visit(dep)
        order.append(path)

    for name in names:
        if name not in by_name:
            raise SnfError(f"the helper kernel has no module {name} (in {moddir})")
        visit(by_name[name])
    return order


def _libraries(binary: str) -> list[str]:
    out = subprocess.run(["ldd", binary], capture_output=True, text=True, check=True).stdout
    libs = []
    for line in out.splitlines():
        words = line.split()
        if "=>" in words and len(words) > words.index("=>") + 1:
            libs.append(words[words.index("=>") + 1])
        elif words and words[0].startswith("/"):
            libs.append(words[0])
    return [lib for lib in libs if lib.startswith("/")]


def add_host_file(archive: Cpio, path: str) -> None:
    """Copy the node's file ``path`` into the archive at the same path, with every symbolic
    link met on the way (``/lib64 -> usr/lib64``, ``libc.so.6 -> ...``) copied as a link."""
    parts = path.strip("/").split("/")
    for i in range(len(parts)):
        here = "/" + "/".join(parts[: i + 1])
        if os.path.islink(here):
            target = os.readlink(here)
            archive.symlink(here, target)
            resolved = os.path.normpath(os.path.join(os.path.dirname(here), target))
            add_host_file(archive, "/".join([resolved, *parts[i + 1 :]]))
            return
    st = os.stat(path)
    archive.file(path, Path(path).read_bytes(), st.st_mode & 0o777)


def _add_binary(archive: Cpio, path: str) -> None:
    add_host_file(archive, path)
    for lib in _libraries(path):
        add_host_file(archive, lib)


def _python_closure(python: str, workdir: Path) -> tuple[Path, dict[str, object]]:
    stage = workdir / "stage"
    package = stage / "snf" / "image"
    package.mkdir(parents=True)
    (stage / "snf" / "__init__.py").write_text("")
    (package / "__init__.py").write_text("")
    for module in (agent, saferoot):
        (package / Path(module.__file__).name).write_bytes(Path(module.__file__).read_bytes())
    out = workdir / "python.zip"
    done = subprocess.run(
        [python, "-I", "-S", "-c", _CLOSURE, str(stage), str(out)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise SnfError(f"cannot collect the helper's Python modules with {python}: {done.stderr}")
    return out, json.loads(done.stdout)


def _digest(kernel: Path, python: str) -> str:
    h = hashlib.sha256(FORMAT_VERSION.encode())
    for path in [str(kernel), BUSYBOX, python, *TOOLS]:
        st = os.stat(path)
        h.update(f"{os.path.realpath(path)} {st.st_size} {st.st_mtime_ns}\n".encode())
    for module in (agent, saferoot):
        h.update(Path(module.__file__).read_bytes())
    h.update(INIT.encode())
    return h.hexdigest()[:16]


def build_initramfs(version: str, python: str, workdir: Path) -> bytes:
    archive = Cpio()
    for top in ("bin", "sbin", "lib", "lib64"):
        if os.path.islink("/" + top):
            archive.symlink(top, os.readlink("/" + top))
    for name in ("dev", "proc", "sys", "tmp", "mnt", "etc", "usr/bin", "usr/sbin"):
        archive.directory(name)
    archive.device("dev/console", 5, 1)
    archive.symlink("etc/mtab", "/proc/self/mounts")
    archive.file("busybox", Path(BUSYBOX).read_bytes(), 0o755)
    for applet in APPLETS:
        archive.symlink(f"usr/bin/{applet}", "/busybox")
    archive.file("init", INIT.encode(), 0o755)
    for tool in TOOLS:
        _add_binary(archive, tool)
    moddir = Path("/lib/modules", version)
    lists = {"base": module_order(moddir, BASE_MODULES)}
    lists |= {fs: module_order(moddir, names) for fs, names in FS_MODULES.items()}
    for name, paths in lists.items():
        for path in paths:
            archive.file(f"modules/{Path(path).name}", (moddir / path).read_bytes())
        archive.file(f"modules/{name}", "\n".join(Path(p).name for p in paths).encode() + b"\n")
    real_python = os.path.realpath(python)
    _add_binary(archive, real_python)
    archive.symlink("usr/bin/python3", real_python)
    zipped, info = _python_closure(python, workdir)
    archive.file(f"usr/lib/python{info['version']}.zip", zipped.read_bytes())
    archive.directory(f"{info['stdlib']}/lib-dynload")
    for native in info["natives"]:  # type: ignore[union-attr]
        _add_binary(archive, str(native))
    return archive.bytes()


def helper_files(cache_dir: Path, kernel: Path | None, python: str) -> HelperFiles:
    """The helper's kernel and initramfs, built into ``cache_dir`` unless already there."""
    kernel, version = find_kernel(kernel)
    if not os.path.isfile(python):
        raise ConfigError(f"[image] helper_python {python} does not exist")
    folder = cache_dir / _digest(kernel, python)
    files = HelperFiles(folder / "vmlinux", folder / "initrd")
    if files.kernel.exists() and files.initrd.exists():
        return files
    log.info("building the helper VM's kernel and initramfs into %s", folder)
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        bzimage = kernel.read_bytes()
        elf = extract_vmlinux(bzimage)
        kernel_tmp, initrd_tmp = Path(tmp, "vmlinux"), Path(tmp, "initrd")
        kernel_tmp.write_bytes(elf if elf is not None else bzimage)
        initrd_tmp.write_bytes(build_initramfs(version, python, Path(tmp)))
        os.replace(initrd_tmp, files.initrd)
        os.replace(kernel_tmp, files.kernel)
    return files
