"""snf-archipelago: the operator's view of the block store and its volumes.

    snf-archipelago list                          volumes, snapshots and images
    snf-archipelago show NAME [--entries]         one map, its metadata and holder
    snf-archipelago create NAME SIZE [--origin MAP]   a thin volume or a thin clone
    snf-archipelago snapshot VOLUME SNAPSHOT      (live, through the holder, if attached)
    snf-archipelago hash SNAPSHOT                 private blocks -> content blocks
    snf-archipelago grow NAME SIZE
    snf-archipelago remove NAME                   a volume, snapshot or image
    snf-archipelago import NAME FILE              a raw disk image as a read-only map
    snf-archipelago usage                         what the store holds
    snf-archipelago gc [--window SECONDS] [--dry-run]

Sizes take K, M, G, T suffixes (powers of 1024).  The store is the ``[store]`` section of
/etc/snf/snf.toml (``--config-dir`` or SNF_CONFIG_DIR to use another).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

from snf.common.cli import run_main
from snf.common.config import load_config
from snf.common.errors import InvalidInput

from . import gc, volumes
from .backends import open_store
from .mapfile import KINDS
from .store import Store

_SIZE = re.compile(r"(\d+)([KMGT]?)(i?B)?", re.IGNORECASE)
_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def parse_size(text: str) -> int:
    match = _SIZE.fullmatch(text.strip())
    if not match:
        raise InvalidInput(f"bad size {text!r}: use a number with K, M, G or T")
    return int(match.group(1)) * _UNITS[match.group(2).upper()]


def human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def _list(store: Store, args: argparse.Namespace) -> None:
    print(f"{'NAME':<48} {'KIND':<9} {'SIZE':>10}  {'ORIGIN/SOURCE':<24} HOLDER")
    for name in store.list_maps():
        info = volumes.describe(store, name)
        kind = info.get("kind", "snapshot" if info["readonly"] else "volume")
        parent = info.get("origin") or info.get("source") or "-"
        print(f"{name:<48} {kind:<9} {human(info['size']):>10}  {parent:<24} "
              f"{info['holder'] or '-'}")  # fmt: skip


def _show(store: Store, args: argparse.Namespace) -> None:
    print(json.dumps(volumes.describe(store, args.name), indent=2, sort_keys=True))
    if args.entries:
        vmap = volumes.load_map(store, args.name)
        for index, entry in vmap.entries():
            flag = " writable" if entry.writable else ""
            print(f"{index:8d} {KINDS[entry.kind]:<8} {entry.ident}{flag}")


def _import(store: Store, args: argparse.Namespace) -> None:
    path = Path(args.file)
    total = path.stat().st_size
    t0 = time.monotonic()
    last = [0.0]

    def progress(done: int) -> None:
        if time.monotonic() - last[0] > 1 or done == total:
            last[0] = time.monotonic()
            print(f"\rimport: {human(done)} of {human(total)}", end="", file=sys.stderr)

    with open(path, "rb") as f:
        vmap = volumes.import_image(store, args.name, f, progress=progress)
    took = time.monotonic() - t0
    print(f"\nimported {args.name}: {human(vmap.size)} in {took:.1f} s", file=sys.stderr)


def _usage(store: Store, args: argparse.Namespace) -> None:
    u = store.usage()
    print(f"maps: {u.maps}\ncontent blocks: {u.blocks} ({human(u.block_bytes)})\n"
          f"private objects: {u.objects} ({human(u.object_bytes)})")  # fmt: skip


def _gc(store: Store, args: argparse.Namespace) -> None:
    r = gc.collect(store, window=args.window, dry_run=args.dry_run)
    verb = "would delete" if args.dry_run else "deleted"
    print(f"read {r.maps} maps; kept {r.kept_blocks} blocks and {r.kept_objects} objects, "
          f"{r.young} too young; {verb} {r.deleted_blocks} blocks and {r.deleted_objects} "
          f"objects ({human(r.freed_bytes)})")  # fmt: skip


def _remove(store: Store, args: argparse.Namespace) -> None:
    if volumes.load_map(store, args.name).readonly:
        volumes.remove_map(store, args.name)
    else:
        volumes.remove_volume(store, args.name)


COMMANDS = {
    "list": _list,
    "show": _show,
    "create": lambda s, a: volumes.create_volume(s, a.name, parse_size(a.size), origin=a.origin),
    "snapshot": lambda s, a: volumes.snapshot_volume(s, a.volume, a.snapshot),
    "hash": lambda s, a: print(json.dumps(volumes.hash_snapshot(s, a.name))),
    "grow": lambda s, a: volumes.grow_volume(s, a.name, parse_size(a.size)),
    "remove": _remove,
    "import": _import,
    "usage": _usage,
    "gc": _gc,
}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="snf-archipelago", description=__doc__.split("\n")[0])
    parser.add_argument("--config-dir", type=Path, help="default: $SNF_CONFIG_DIR or /etc/snf")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="volumes, snapshots and images")
    p = sub.add_parser("show", help="one map")
    p.add_argument("name")
    p.add_argument("--entries", action="store_true", help="also every block entry")
    p = sub.add_parser("create", help="a thin volume, or a thin clone with --origin")
    p.add_argument("name")
    p.add_argument("size")
    p.add_argument("--origin", help="a read-only map (image or snapshot) to clone")
    p = sub.add_parser("snapshot", help="freeze a volume into a read-only map")
    p.add_argument("volume")
    p.add_argument("snapshot")
    p = sub.add_parser("hash", help="turn a snapshot's private blocks into content blocks")
    p.add_argument("name")
    p = sub.add_parser("grow", help="grow a volume")
    p.add_argument("name")
    p.add_argument("size")
    p = sub.add_parser("remove", help="remove a volume, snapshot or image")
    p.add_argument("name")
    p = sub.add_parser("import", help="import a raw disk image as a read-only map")
    p.add_argument("name")
    p.add_argument("file")
    sub.add_parser("usage", help="what the store holds")
    p = sub.add_parser("gc", help="delete blocks and objects that no map references")
    p.add_argument("--window", type=float, default=gc.WINDOW,
                   help="keep anything younger than this many seconds (default: 3600)")  # fmt: skip
    p.add_argument("--dry-run", action="store_true")
    args = parser.parse_args(argv)
    store = open_store(load_config(args.config_dir).store)
    try:
        COMMANDS[args.command](store, args)
    finally:
        store.close()
    return 0


def cli() -> None:
    run_main(main, prog="snf-archipelago")


if __name__ == "__main__":
    cli()
