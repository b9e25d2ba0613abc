"""The customization tasks, run in order on a mounted image through a worker session.

A session is anything with ``call(op, **args)`` for the operations of ``agent.Worker``: the
worker itself (``direct`` mode) or the agent in the helper VM (``helper`` mode), so every
task runs the same code in both modes and every file access goes through ``SafeRoot``.
Each task can be skipped with the image property ``EXCLUDE_TASK_<NAME>`` (or all with
``EXCLUDE_ALL_TASKS``); a task that does not apply to the image (no ``/etc/ssh``, no
cloud-init) says so and does nothing.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from snf.common.errors import InvalidInput

from . import accounts, guest_files
from .ganeti_env import OsEnv
from .params import ImageParams


class Session(Protocol):
    def call(self, op: str, **args: Any) -> Any: ...


@dataclass
class Guest:
    """Typed access to the mounted image."""

    session: Session

    def read(self, path: str, limit: int = 1 << 20) -> bytes | None:
        return self.session.call("read", path=path, limit=limit)

    def text(self, path: str) -> str | None:
        data = self.read(path)
        return None if data is None else data.decode("utf-8", errors="surrogateescape")

    def write(
        self,
        path: str,
        data: bytes | str,
        mode: int | None = None,
        uid: int | None = None,
        gid: int | None = None,
    ) -> None:
        if isinstance(data, str):
            data = data.encode("utf-8", errors="surrogateescape")
        self.session.call("write", path=path, data=data, mode=mode, uid=uid, gid=gid)

    def exists(self, path: str) -> bool:
        return bool(self.session.call("exists", path=path))

    def is_link(self, path: str) -> bool:
        return bool(self.session.call("is_link", path=path))

    def listdir(self, path: str) -> list[str]:
        return list(self.session.call("listdir", path=path))

    def makedirs(self, path: str, mode: int, uid: int, gid: int) -> None:
        self.session.call("makedirs", path=path, mode=mode, uid=uid, gid=gid)

    def remove(self, path: str) -> bool:
        return bool(self.session.call("remove", path=path))


@dataclass
class Context:
    params: ImageParams
    env: OsEnv
    say: Callable[[str], None]
    now: float = field(default_factory=time.time)

    @property
    def nics(self) -> list[guest_files.NicConfig]:
        return [
            guest_files.NicConfig(n.index, n.mac, ipv6=n.network_subnet6 is not None)
            for n in self.env.nics
        ]


def _users(guest: Guest) -> dict[str, accounts.User]:
    return accounts.parse_passwd(guest.text("/etc/passwd") or "")


def assign_hostname(guest: Guest, ctx: Context) -> None:
    name = ctx.env.instance_name
    if name is None:
        ctx.say("no instance name: the host name is left as it is")
        return
    guest.write("/etc/hostname", guest_files.hostname_file(name))
    guest.write("/etc/hosts", guest_files.hosts_file(guest.text("/etc/hosts"), name))
    ctx.say(f"host name: {name}")


def change_password(guest: Guest, ctx: Context) -> None:
    p = ctx.params
    users = _users(guest)
    if p.passwd is not None or p.passwd_hash is not None:
        hashed = (
            accounts.check_hash(p.passwd_hash)
            if p.passwd_hash is not None
            else accounts.sha512_crypt(p.passwd or "")
        )
        if guest.is_link("/etc/shadow"):
            raise InvalidInput("refusing to write /etc/shadow: it is a symbolic link in the image")
        shadow = guest.text("/etc/shadow")
        if shadow is None:
            raise InvalidInput("the image has no /etc/shadow: cannot set a password")
        for user in p.users:
            shadow = accounts.set_password(shadow, user, hashed, accounts.today_days(ctx.now))
        guest.write("/etc/shadow", shadow)
        ctx.say(f"password set for {', '.join(p.users)}")
    if p.auth_keys:
        keys = accounts.parse_auth_keys(p.auth_keys)
        for name in p.users:
            user = users.get(name)
            if user is None:
                raise InvalidInput(f"user {name} is not in the image's /etc/passwd")
            ssh = user.home.rstrip("/") + "/.ssh"
            guest.makedirs(ssh, 0o700, user.uid, user.gid)
            path = ssh + "/authorized_keys"
            merged = accounts.merge_authorized_keys(guest.text(path) or "", keys)
            guest.write(path, merged, 0o600, user.uid, user.gid)
        ctx.say(f"{len(keys)} SSH key(s) authorized for {', '.join(p.users)}")


def delete_ssh_keys(guest: Guest, ctx: Context) -> None:
    gone = [n for n in guest.listdir("/etc/ssh") if guest_files.is_ssh_host_key(n)]
    for name in gone:
        guest.remove(f"/etc/ssh/{name}")
    ctx.say(f"SSH host keys removed: {len(gone)}")


def change_machine_id(guest: Guest, ctx: Context) -> None:
    if not guest.exists("/etc/machine-id"):
        ctx.say("no /etc/machine-id: nothing to reset")
        return
    for path, (data, mode) in guest_files.machine_id_reset().items():
        guest.write(path, data, mode, 0, 0)
    dbus = "/var/lib/dbus/machine-id"
    if guest.exists(dbus) and not guest.is_link(dbus):
        guest.remove(dbus)
    ctx.say("machine ID reset (a new one is made at first boot)")


def enforce_personality(guest: Guest, ctx: Context) -> None:
    files = ctx.params.personality
    if not files:
        return
    users = _users(guest)
    groups = accounts.parse_group(guest.text("/etc/group") or "")
    for item in files:
        uid = accounts.resolve_owner(item.owner, users)
        gid = accounts.resolve_group(item.group, groups)
        guest.write(item.path, item.contents, item.mode, uid, gid)
        ctx.say(f"injected {item.path} ({len(item.contents)} bytes, {item.mode:04o})")


def configure_network(guest: Guest, ctx: Context) -> None:
    nics = ctx.nics
    if not nics:
        return
    style = guest_files.network_style(guest.exists)
    if style is None:
        ctx.say("no known network configuration system in the image: NICs left as they are")
        return
    existing = guest.text("/etc/network/interfaces") if style == "ifupdown" else None
    for path, (text, mode) in guest_files.network_files(style, nics, existing).items():
        guest.write(path, text, mode, 0, 0)
    ctx.say(f"DHCP configured for {len(nics)} NIC(s) ({style})")


def initialize_datasource(guest: Guest, ctx: Context) -> None:
    wanted = ctx.params.cloud_init
    if wanted is None:
        wanted = guest.exists("/etc/cloud/cloud.cfg")
    if not wanted:
        if ctx.params.cloud_userdata is not None:
            ctx.say("cloud_userdata given but the image has no cloud-init: ignored")
        return
    name = ctx.env.instance_name or "localhost"
    ident = ctx.env.instance_uuid or name
    seed = guest_files.nocloud_seed(ident, name, ctx.params.cloud_userdata, ctx.nics)
    for path, (data, mode) in seed.items():
        guest.write(path, data, mode, 0, 0)
    ctx.say("cloud-init NoCloud data written")


#: The tasks that run on the mounted image, in order (the partition table and the
#: filesystem are grown before, by ``customize.py``).
MOUNTED_TASKS: tuple[tuple[str, Callable[[Guest, Context], None]], ...] = (
    ("ASSIGNHOSTNAME", assign_hostname),
    ("CHANGEPASSWORD", change_password),
    ("DELETESSHKEYS", delete_ssh_keys),
    ("CHANGEMACHINEID", change_machine_id),
    ("ENFORCEPERSONALITY", enforce_personality),
    ("CONFIGURENETWORK", configure_network),
    ("INITIALIZEDATASOURCE", initialize_datasource),
)


def run_mounted_tasks(guest: Guest, ctx: Context) -> None:
    for name, task in MOUNTED_TASKS:
        if ctx.params.excluded(name):
            ctx.say(f"task {name} excluded by the image's properties")
            continue
        task(guest, ctx)
