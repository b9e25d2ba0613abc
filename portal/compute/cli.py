"""``snf-portal backend|flavor|reconcile``: the compute side of the administration CLI.

snf-portal backend add NAME --host HOST [--port 5080] --user USER --password-stdin
                            [--pin SHA256 | --no-pin] [--hypervisor kvm|fake|...]
snf-portal backend list | backend drain NAME | backend undrain NAME | backend remove NAME
snf-portal flavor add NAME --vcpus N --ram MiB --disk GiB [--template ext_archipelago]
snf-portal flavor list | flavor remove NAME
snf-portal reconcile [--every SECONDS]
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import select

from snf.common.config import Config
from snf.common.errors import Conflict, InvalidInput, NotFound
from snf.common.rapi import fingerprint_of_pem

log = logging.getLogger(__name__)


def add_parsers(sub: Any) -> None:
    p = sub.add_parser("backend", help="the Ganeti clusters servers run on")
    actions = p.add_subparsers(dest="action", required=True)
    q = actions.add_parser("add", help="register a cluster (its RAPI must answer)")
    q.add_argument("name")
    q.add_argument("--host", required=True, help="the RAPI address (the cluster's master)")
    q.add_argument("--port", type=int, default=5080)
    q.add_argument("--user", required=True, help="a RAPI user with write access")
    q.add_argument("--password-stdin", action="store_true", required=True)
    pin = q.add_mutually_exclusive_group(required=True)
    pin.add_argument("--pin", help="SHA-256 fingerprint of the RAPI certificate")
    pin.add_argument("--pin-from", type=Path, metavar="PEM",
                     help="pin the certificate in this copy of the master's rapi.pem")  # fmt: skip
    pin.add_argument("--no-pin", action="store_true", help="verify against the system CAs")
    q.add_argument("--hypervisor", help="for new instances (default: the cluster's)")
    actions.add_parser("list")
    for action in ("drain", "undrain", "remove"):
        actions.add_parser(action).add_argument("name")
    p = sub.add_parser("flavor", help="server flavors")
    actions = p.add_subparsers(dest="action", required=True)
    q = actions.add_parser("add")
    q.add_argument("name")
    q.add_argument("--vcpus", type=int, required=True)
    q.add_argument("--ram", type=int, required=True, help="MiB")
    q.add_argument("--disk", type=int, required=True, help="GiB")
    q.add_argument("--template", default="ext_archipelago",
                   help="ext_archipelago (thin clone) or a Ganeti disk template")  # fmt: skip
    actions.add_parser("list")
    actions.add_parser("remove").add_argument("name")
    p = sub.add_parser("reconcile", help="fix drift between the database and the clusters")
    p.add_argument("--every", type=float, help="repeat every SECONDS until interrupted")


def _backend(session: Any, config: Config, args: argparse.Namespace) -> int:
    from . import backends
    from .models import Backend

    if args.action == "add":
        password = sys.stdin.readline().rstrip("\n")
        if not password:
            raise InvalidInput("give the RAPI password on standard input")
        pin = args.pin
        if args.pin_from is not None:
            try:
                pin = fingerprint_of_pem(args.pin_from.read_text(encoding="ascii"))
            except (OSError, UnicodeDecodeError) as exc:
                raise InvalidInput(f"cannot read {args.pin_from}: {exc}") from None
        backend, cluster = backends.add(
            session, config.compute, args.name, args.host, username=args.user,
            password=password, pin=pin, port=args.port, hypervisor=args.hypervisor,
        )  # fmt: skip
        print(f"backend {backend.name}: cluster {cluster} at {args.host}:{args.port}")
    elif args.action == "list":
        for b in session.scalars(select(Backend).order_by(Backend.id)):
            state = "drained" if b.drained else "open"
            print(f"{b.name}\t{b.rapi_host}:{b.rapi_port}\t{state}\t"
                  f"free {b.free_memory_mib} MiB memory, {b.free_disk_mib} MiB disk")  # fmt: skip
    elif args.action == "remove":
        backends.remove(session, args.name)
    else:
        backends.find(session, args.name).drained = args.action == "drain"
    return 0


def _flavor(session: Any, config: Config, args: argparse.Namespace) -> int:
    from .models import Flavor

    if args.action == "add":
        for what in ("vcpus", "ram", "disk"):
            if getattr(args, what) < 1:
                raise InvalidInput(f"--{what} must be at least 1")
        taken = session.scalar(select(Flavor.id).where(Flavor.name == args.name))
        if taken is not None:
            raise Conflict(f"flavor {args.name!r} exists already")
        flavor = Flavor(name=args.name, vcpus=args.vcpus, ram=args.ram, disk=args.disk,
                        disk_template=args.template)  # fmt: skip
        session.add(flavor)
        session.flush()
        print(flavor.id)
    elif args.action == "list":
        for f in session.scalars(select(Flavor).where(~Flavor.deleted).order_by(Flavor.id)):
            print(
                f"{f.id}\t{f.name}\t{f.vcpus} vcpus\t{f.ram} MiB\t{f.disk} GiB\t{f.disk_template}"
            )
    else:
        flavor = session.scalar(select(Flavor).where(Flavor.name == args.name, ~Flavor.deleted))
        if flavor is None:
            raise NotFound(f"no flavor {args.name!r}")
        flavor.deleted = True  # servers keep pointing at it
    return 0


def _reconcile(session: Any, config: Config, args: argparse.Namespace) -> int:
    from snf.archipelago.backends import open_store

    from ..volumes import upkeep
    from .reconcile import reconcile

    store = open_store(config.store)
    while True:
        lines = reconcile(session, config.compute)
        lines += upkeep.run(session, store, config.compute.build_grace_seconds)
        for line in lines:
            print(line, flush=True)
        if not args.every:
            return 0
        session.commit()
        time.sleep(args.every)


COMMANDS: dict[str, Callable[[Any, Config, argparse.Namespace], int]] = {
    "backend": _backend,
    "flavor": _flavor,
    "reconcile": _reconcile,
}
