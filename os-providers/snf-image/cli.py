"""snf-image: the operator's checks of the image provider on this node.

    snf-image helper build     build (or find) the helper VM's kernel and initramfs
    snf-image helper check     boot the helper VM once and report how long it took
    snf-image verify KEY=VALUE ...   check OS parameters as Ganeti's verify would

The settings are the ``[image]`` section of /etc/snf/snf.toml (``--config-dir`` or
SNF_CONFIG_DIR to use another).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from snf.common.cli import run_main
from snf.common.config import load_config
from snf.common.errors import InvalidInput

from .helper_image import helper_files
from .helper_vm import HelperVM
from .params import parse_params
from .provider import check_params


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="snf-image", description=__doc__.split("\n")[0])
    parser.add_argument("--config-dir", type=Path, help="default: $SNF_CONFIG_DIR or /etc/snf")
    sub = parser.add_subparsers(dest="command", required=True)
    helper = sub.add_parser("helper", help="the helper VM").add_subparsers(
        dest="action", required=True
    )
    helper.add_parser("build", help="build its kernel and initramfs")
    helper.add_parser("check", help="boot it once")
    p = sub.add_parser("verify", help="check OS parameters")
    p.add_argument("params", nargs="+", metavar="KEY=VALUE")
    args = parser.parse_args(argv)
    config = load_config(args.config_dir).image
    if args.command == "verify":
        pairs = [item.partition("=") for item in args.params]
        if any(not sep for _, sep, _ in pairs):
            raise InvalidInput("parameters are KEY=VALUE (img_id=..., img_format=...)")
        check_params(parse_params({k: v for k, _, v in pairs}))
        print("ok")
        return 0
    files = helper_files(config.helper_cache_dir, config.helper_kernel, str(config.helper_python))
    print(f"kernel {files.kernel}\ninitramfs {files.initrd}")
    if args.action == "check":
        with tempfile.NamedTemporaryFile(prefix="snf-image-check-") as disk:
            disk.truncate(1 << 20)
            with HelperVM(files, disk.name, "ext4", accel=config.helper_accel,
                          memory_mib=config.helper_memory_mib) as vm:  # fmt: skip
                vm.quit()
                print(f"helper VM ready in {vm.boot_seconds:.1f} s ({config.helper_accel})")
    return 0


def cli() -> None:
    run_main(main, prog="snf-image")


if __name__ == "__main__":
    cli()
