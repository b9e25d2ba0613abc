"""The snf configuration: one TOML file per machine, plus drop-ins.

Every snf program reads ``/etc/snf/snf.toml``, then ``/etc/snf/conf.d/*.toml`` in file-name
order (names starting with a dot are skipped); a later file overrides an earlier one key by
key inside a section, so a drop-in lists only the keys it changes. Missing files mean
defaults: every key has one that works on one machine. ``SNF_CONFIG_DIR`` names another
directory (tests, development); code started by Ganeti has a reset environment and always
reads ``/etc/snf``.

There is one section per role. An unknown section or key, or a value of the wrong type, is
an error naming the file, section and key. Paths must be absolute; to leave an optional path
unset, omit the key or give an empty string (TOML has no null). ``snf-config defaults``
prints every key at its default (``snf.toml.sample``), ``snf-config show`` the effective
configuration, ``snf-config check`` checks the files.

To add a key, add one typed field with its default to its section's dataclass; loading,
checks and the sample follow from the type: ``str``, ``int``, ``float``, ``bool``, ``Path``,
``Path | None``, ``Literal[...]`` or ``list[str]``.
"""

from __future__ import annotations

import argparse
import difflib
import functools
import inspect
import json
import os
import re
import sys
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal, get_args, get_origin, get_type_hints

from snf.common.cli import run_main
from snf.common.errors import ConfigError

DEFAULT_CONFIG_DIR = Path("/etc/snf")
CONFIG_DIR_ENV = "SNF_CONFIG_DIR"
MAIN_FILE = "snf.toml"
DROPIN_DIR = "conf.d"


@dataclass(frozen=True)
class StoreConfig:
    """[store]: where blocks and maps live.

    Shared by the portal, the archipelago provider, the volume daemon and snf-image: all of
    them must see the same store. backend "dir" keeps blocks and maps below path (one
    machine, or a shared filesystem); "rados" keeps them in the Ceph pools blocks_pool and
    maps_pool, reached with ceph_conf as the Ceph user rados_id.
    """

    backend: Literal["dir", "rados"] = "dir"
    path: Path = Path("/var/lib/snf/store")
    ceph_conf: Path = Path("/etc/ceph/ceph.conf")
    rados_id: str = "admin"
    blocks_pool: str = "blocks"
    maps_pool: str = "maps"


@dataclass(frozen=True)
class PortalConfig:
    """[portal]: the web portal and its APIs.

    bind is the host:port the portal listens on (workers: gunicorn processes); base_url the
    URL clients reach it at (it goes into the service catalog); database_url an SQLAlchemy
    URL (SQLite on one machine, postgresql+psycopg://... otherwise). The session secret is
    read from secret_key_file (created, mode 0600, on first start). API tokens last
    api_token_hours; tokens issued by Keystone's password method keystone_token_hours.
    A worker silent for worker_timeout seconds (a stuck transfer) is restarted.
    """

    bind: str = "127.0.0.1:8080"
    base_url: str = "http://127.0.0.1:8080"
    database_url: str = "sqlite:////var/lib/snf/portal.db"
    secret_key_file: Path = Path("/etc/snf/portal-secret")
    api_token_hours: int = 720
    keystone_token_hours: int = 24
    workers: int = 4
    worker_timeout: int = 900


@dataclass(frozen=True)
class LoginConfig:
    """[login]: signing up and logging in to the portal's web UI.

    local_login / local_signup / local_add are the policies of the local password method
    (may log in, may sign up, may be added to an existing account). With moderation = true
    a verified signup waits for an administrator (``snf-portal user activate``) unless its
    email matches one of auto_moderate (regular expressions). After max_attempts failed
    logins within attempt_window_seconds, from one address or for one account, further
    attempts get 429. Email verification links last verification_hours, a web session
    session_hours (cookies are marked Secure when [portal] base_url is https).
    """

    local_login: bool = True
    local_signup: bool = True
    local_add: bool = True
    moderation: bool = True
    auto_moderate: list[str] = field(default_factory=list)
    max_attempts: int = 5
    attempt_window_seconds: int = 300
    verification_hours: int = 48
    session_hours: int = 12


@dataclass(frozen=True)
class MailConfig:
    """[mail]: how the portal sends mail (verification links, moderation notices).

    backend "outbox" writes each message as a file into outbox_dir (one machine, tests);
    "smtp" sends it through smtp_host:smtp_port (STARTTLS when smtp_starttls; a login with
    smtp_user and the password in smtp_password_file when smtp_user is set). Messages come
    from sender; administrators to notify of pending signups are listed in admins.
    """

    backend: Literal["outbox", "smtp"] = "outbox"
    outbox_dir: Path = Path("/var/spool/snf/outbox")
    smtp_host: str = "localhost"
    smtp_port: int = 25
    smtp_starttls: bool = False
    smtp_user: str = ""
    smtp_password_file: Path | None = None
    sender: str = "snf-cloud <noreply@localhost>"
    admins: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class SamlConfig:
    """[saml]: log in through a SAML2 identity provider (a Shibboleth federation's IdP).

    The portal is the service provider; its entity ID is <base_url>/identity/saml/metadata,
    its key and certificate sp_key_file / sp_cert_file (they sign AuthnRequests). The IdP
    is idp_entity_id, with its single sign-on URL idp_sso_url (HTTP-Redirect binding) and
    its signing certificate idp_cert_file. Its scoped attributes (eppn) must end in one of
    idp_scopes (none: any). identifiers lists, in order of preference, where a user's
    identifier comes from: "persistent-id" (the persistent NameID), "pairwise-id",
    "targeted-id" (eduPersonTargetedID), "eppn". Responses that answer no request of ours
    are rejected unless allow_unsolicited. login / signup / add are the method's policies.
    """

    enabled: bool = False
    name: str = "Academic login"
    sp_key_file: Path = Path("/etc/snf/saml/sp.key")
    sp_cert_file: Path = Path("/etc/snf/saml/sp.crt")
    idp_entity_id: str = ""
    idp_sso_url: str = ""
    idp_cert_file: Path = Path("/etc/snf/saml/idp.crt")
    idp_scopes: list[str] = field(default_factory=list)
    identifiers: list[str] = field(
        default_factory=lambda: ["persistent-id", "pairwise-id", "targeted-id", "eppn"]
    )
    allow_unsolicited: bool = False
    login: bool = True
    signup: bool = True
    add: bool = True


@dataclass(frozen=True)
class OidcConfig:
    """[oidc]: log in through an OpenID Connect provider.

    preset "google" fills in Google's issuer; "custom" uses issuer (its discovery document
    is <issuer>/.well-known/openid-configuration). The portal is registered there as
    client_id with the secret in client_secret_file and the redirect URI
    <base_url>/identity/oidc/callback. Accounts are keyed by (issuer, sub); the provider's
    email is trusted as verified only when trust_email and it says email_verified.
    login / signup / add are the method's policies.
    """

    enabled: bool = False
    preset: Literal["google", "custom"] = "google"
    name: str = "Google"
    issuer: str = ""
    client_id: str = ""
    client_secret_file: Path = Path("/etc/snf/oidc-client-secret")
    scopes: list[str] = field(default_factory=lambda: ["openid", "email", "profile"])
    trust_email: bool = True
    login: bool = True
    signup: bool = True
    add: bool = True


@dataclass(frozen=True)
class PithosConfig:
    """[pithos]: the object store (Swift API with Pithos' extensions) in the portal.

    An object holds at most max_object_bytes; a listing returns at most list_limit names
    per request. New containers keep old versions of overwritten objects when versioning
    is "auto" (they count towards the owner's quota until the object is deleted) and drop
    them with "none". Uploads hash and store blocks with upload_threads threads.
    Maps of versions whose database row never committed (a crash) are removed by
    `snf-portal pithos reconcile` once older than orphan_map_seconds.
    """

    max_object_bytes: int = 5 << 30
    list_limit: int = 10000
    versioning: Literal["auto", "none"] = "auto"
    upload_threads: int = 2
    orphan_map_seconds: int = 3600


@dataclass(frozen=True)
class ComputeConfig:
    """[compute]: servers on the registered Ganeti clusters (`snf-portal backend add`).

    New instances run the OS os (snf-image) and get NICs on default_networks (Ganeti
    network names) unless a request names others, which must be in public_networks. RAPI
    passwords of backends are kept in backend_secrets_dir (root only). A backend's free
    memory and disk are read again when older than capacity_seconds. The reconciler
    (`snf-portal reconcile`) gives up on an action recorded without a job after
    build_grace_seconds.
    """

    os: str = "snf-image+default"
    default_networks: list[str] = field(default_factory=list)
    public_networks: list[str] = field(default_factory=list)
    backend_secrets_dir: Path = Path("/etc/snf/backends")
    capacity_seconds: int = 30
    build_grace_seconds: int = 300
    rapi_timeout: int = 30


@dataclass(frozen=True)
class HooksConfig:
    """[hooks]: Ganeti hooks and the event daemon.

    Events go to portal_url, authenticated with the token in service_token_file (readable
    by root only). Events wait in spool_dir until the portal has accepted them; each POST
    gives up after timeout seconds, and a post-hook tries for at most hook_deliver_seconds
    before it leaves its event to the spool. snf-eventd reads Ganeti's job queue and ssconf
    files below ganeti_data_dir and remembers the jobs it reported in eventd_state_file.
    """

    portal_url: str = "http://127.0.0.1:8080"
    service_token_file: Path = Path("/etc/snf/service-token")
    spool_dir: Path = Path("/var/spool/snf/events")
    timeout: float = 5.0
    hook_deliver_seconds: float = 3.0
    ganeti_data_dir: Path = Path("/var/lib/ganeti")
    eventd_state_file: Path = Path("/var/lib/snf/eventd.state")


@dataclass(frozen=True)
class ImageConfig:
    """[image]: the snf-image OS provider.

    mode "helper" customizes a new disk inside a small throw-away VM, so the image's
    filesystems are never mounted on the node; "direct" mounts them on the node (trusted
    images only). The helper VM runs QEMU with accelerator helper_accel ("kvm" on real
    hardware; "tcg", plain emulation, works everywhere, also inside a VM) and
    helper_memory_mib of memory; it boots helper_kernel (unset: the newest /boot/vmlinuz-*)
    with an initramfs built from the node's own tools and helper_python, cached in
    helper_cache_dir. A helper step that takes longer than helper_timeout seconds fails.
    Images named pithos://<account>/<container>/<path> are read from the portal at
    portal_url with the service token in service_token_file (readable by root only);
    qcow2 images that are not local files are first downloaded into work_dir.
    """

    mode: Literal["helper", "direct"] = "helper"
    helper_accel: Literal["tcg", "kvm"] = "tcg"
    helper_memory_mib: int = 256
    helper_kernel: Path | None = None
    helper_python: Path = Path("/usr/bin/python3")
    helper_cache_dir: Path = Path("/var/cache/snf/image-helper")
    helper_timeout: int = 900
    portal_url: str = "http://127.0.0.1:8080"
    service_token_file: Path = Path("/etc/snf/service-token")
    work_dir: Path = Path("/var/tmp")


@dataclass(frozen=True)
class NetworkConfig:
    """[network]: the NIC scripts.

    With dry_run = true they print their commands only. What each NIC's setup did is kept
    in state_dir (one file per tap) for its teardown.
    """

    dry_run: bool = False
    state_dir: Path = Path("/var/lib/snf/network")


@dataclass(frozen=True)
class NfdhcpdConfig:
    """[nfdhcpd]: the DHCP/DHCPv6/RA/NS responder.

    It reads one binding per NIC from bindings_dir (written by the NIC setup) and answers
    the packets iptables queues to it: DHCP on dhcp_queue, router and neighbour
    solicitations on rs_queue and ns_queue, DHCPv6 on dhcpv6_queue (0: that protocol is
    not answered). DHCP leases last lease_time seconds, renewed after renewal_time; the
    server address is server_ip, or, when empty, each network's gateway. Clients get
    nameservers and domain (empty: the part of the host name after its first dot) over
    DHCP, nameservers6 and domains6 in RAs and DHCPv6 replies; ipv6_mode "slaac+dhcpv6"
    sets the RA's O flag, "slaac" does not. RAs are also sent every ra_period seconds.
    Each NIC gets at most rate answers per second (bursts of burst). Once its queues are
    bound the daemon runs as user (empty: stays root); its pid is in pidfile. transport
    "nfqueue" needs the queues; "packet" listens on AF_PACKET instead (it answers but
    cannot drop: kernels without NFQUEUE, Open vSwitch); "auto" falls back to it when the
    queues cannot be bound.
    """

    bindings_dir: Path = Path("/var/lib/snf/nfdhcpd")
    transport: Literal["auto", "nfqueue", "packet"] = "auto"
    dhcp_queue: int = 42
    rs_queue: int = 43
    ns_queue: int = 44
    dhcpv6_queue: int = 45
    lease_time: int = 604800
    renewal_time: int = 600
    server_ip: str = ""
    nameservers: list[str] = field(default_factory=list)
    domain: str = ""
    nameservers6: list[str] = field(default_factory=list)
    domains6: list[str] = field(default_factory=list)
    ipv6_mode: Literal["slaac", "slaac+dhcpv6"] = "slaac+dhcpv6"
    ra_period: int = 300
    rate: float = 10.0
    burst: int = 20
    user: str = "nobody"
    pidfile: Path = Path("/run/snf/nfdhcpd.pid")


@dataclass(frozen=True)
class ArchipelagodConfig:
    """[archipelagod]: the volume daemon, one per node.

    Its control and NBD sockets, state and FUSE mount points live in run_dir; it logs to
    log_file. blockdev says how attached volumes become kernel block devices: "nbd-client"
    (the kernel's nbd driver), "fuse-loop" (the daemon's own FUSE export plus a loop device,
    for kernels without nbd; the device dies with the daemon), "qsd-loop" (the same through
    qemu-storage-daemon: survives daemon restarts, slower), "auto" (nbd-client where the
    kernel has nbd, else fuse-loop), or "none" (QEMU's userspace NBD access only). workers
    is the number of I/O threads.
    """

    run_dir: Path = Path("/run/snf/archipelagod")
    log_file: Path = Path("/var/log/snf/archipelagod.log")
    blockdev: Literal["auto", "nbd-client", "fuse-loop", "qsd-loop", "none"] = "auto"
    workers: int = 4


@dataclass(frozen=True)
class LogConfig:
    """[log]: logging, for every snf program on this machine.

    level is one of "debug", "info", "warning", "error". Messages go to file (unset: to
    standard error), and also to syslog when syslog = true.
    """

    level: Literal["debug", "info", "warning", "error"] = "info"
    file: Path | None = None
    syslog: bool = False


@dataclass(frozen=True)
class Config:
    """The effective configuration: one attribute per section, and the files read."""

    store: StoreConfig = field(default_factory=StoreConfig)
    portal: PortalConfig = field(default_factory=PortalConfig)
    login: LoginConfig = field(default_factory=LoginConfig)
    mail: MailConfig = field(default_factory=MailConfig)
    saml: SamlConfig = field(default_factory=SamlConfig)
    oidc: OidcConfig = field(default_factory=OidcConfig)
    pithos: PithosConfig = field(default_factory=PithosConfig)
    compute: ComputeConfig = field(default_factory=ComputeConfig)
    hooks: HooksConfig = field(default_factory=HooksConfig)
    image: ImageConfig = field(default_factory=ImageConfig)
    network: NetworkConfig = field(default_factory=NetworkConfig)
    nfdhcpd: NfdhcpdConfig = field(default_factory=NfdhcpdConfig)
    archipelagod: ArchipelagodConfig = field(default_factory=ArchipelagodConfig)
    log: LogConfig = field(default_factory=LogConfig)
    sources: tuple[Path, ...] = ()

    def section(self, name: str) -> Any:
        """Return the section called ``name`` (``KeyError`` if there is none)."""
        if name not in SECTIONS:
            raise KeyError(f"no configuration section [{name}]")
        return getattr(self, name)


SECTIONS: dict[str, type] = {
    f.name: get_type_hints(Config)[f.name] for f in fields(Config) if f.name != "sources"
}


@functools.cache
def _keys(section: type) -> dict[str, Any]:
    """The keys of a section dataclass and their (resolved) types, in declaration order."""
    hints = get_type_hints(section)
    return {f.name: hints[f.name] for f in fields(section)}


# --- loading -------------------------------------------------------------------------------


def load_config(config_dir: Path | None = None) -> Config:
    """Read ``snf.toml`` and ``conf.d/*.toml`` from ``config_dir`` and return the result.

    ``config_dir`` defaults to ``$SNF_CONFIG_DIR`` if set and not empty, else ``/etc/snf``.
    Raises :class:`ConfigError` (one line: file, section, key, expected, found).
    """
    if config_dir is None:
        config_dir = Path(os.environ.get(CONFIG_DIR_ENV) or DEFAULT_CONFIG_DIR)
    merged: dict[str, dict[str, Any]] = {name: {} for name in SECTIONS}
    sources = _config_files(config_dir)
    for path in sources:
        for name, values in _read_file(path).items():
            merged[name].update(values)
    sections = {name: cls(**merged[name]) for name, cls in SECTIONS.items()}
    return Config(**sections, sources=tuple(sources))


def _config_files(config_dir: Path) -> list[Path]:
    """The files to read, in order; missing ones are left out."""
    if os.path.exists(config_dir) and not os.path.isdir(config_dir):
        raise ConfigError(f"{config_dir}: not a directory (want the directory of {MAIN_FILE})")
    main, dropins = config_dir / MAIN_FILE, config_dir / DROPIN_DIR
    files = [main] if _exists(main) else []
    if not _exists(dropins):
        return files
    try:
        names = sorted(e.name for e in os.scandir(dropins) if e.name.endswith(".toml"))
    except OSError as exc:
        raise ConfigError(f"{dropins}: cannot read directory: {_reason(exc)}") from exc
    return files + [dropins / name for name in names if not name.startswith(".")]


def _exists(path: Path) -> bool:
    """False if ``path`` is missing; an error if it cannot be looked at (not "missing")."""
    try:
        os.lstat(path)
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {_reason(exc)}") from exc
    return True


def _read_file(path: Path) -> dict[str, dict[str, Any]]:
    """Parse and check one file; return {section: {key: converted value}}."""
    try:
        with open(path, "rb") as fp:
            data = tomllib.load(fp)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {_one_line(str(exc))}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: cannot read: not UTF-8 text ({exc.reason})") from exc
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {_reason(exc)}") from exc
    result: dict[str, dict[str, Any]] = {}
    for name, table in data.items():
        if not isinstance(table, dict):
            raise ConfigError(f"{path}: {_misplaced(name, table)}")
        if name not in SECTIONS:
            raise ConfigError(f"{path}: [{_name(name)}]: unknown section{_hint(name, SECTIONS)}")
        keys = _keys(SECTIONS[name])
        values: dict[str, Any] = {}
        for key, value in table.items():
            where = f"{path}: [{name}] {_name(key)}"
            if key not in keys:
                raise ConfigError(f"{where}: unknown key{_hint(key, keys)}")
            values[key] = _convert(value, keys[key], where)
        result[name] = values
    return result


def _convert(value: Any, tp: Any, where: str) -> Any:
    """Check ``value`` (as parsed by tomllib) against the field type ``tp``; return it typed."""
    origin, args = get_origin(tp), get_args(tp)
    path = isinstance(value, str) and os.path.isabs(value) and "\0" not in value
    if tp is str and isinstance(value, str):
        return value
    if tp is bool and isinstance(value, bool):
        return value
    if tp is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if tp is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if tp is Path and path:
        return Path(value)
    if origin is Literal and any(value == c and type(value) is type(c) for c in args):
        return value
    if tp == Path | None and (value == "" or path):
        return Path(value) if value else None
    if tp == list[str] and isinstance(value, list) and all(isinstance(v, str) for v in value):
        return list(value)
    raise ConfigError(f"{where}: must be {_expected(tp)}, not {_show(value)}")


_WORDS: dict[Any, str] = {
    str: "a string",
    bool: "true or false",
    int: "an integer",
    float: "a number",
    Path: "an absolute path",
    Path | None: 'an absolute path, or "" for none',
    list[str]: "a list of strings",
}


def _expected(tp: Any) -> str:
    """What a value of field type ``tp`` must be, in words."""
    if get_origin(tp) is Literal:
        return "one of " + ", ".join(repr(c) for c in get_args(tp))
    return _WORDS[tp]


def _show(value: Any) -> str:
    """A found value as the operator wrote it (short, one line)."""
    if isinstance(value, bool | list):
        text = _toml_value(value)
    elif isinstance(value, dict):
        text = "a table"
    else:
        text = repr(value) if isinstance(value, str | int | float) else str(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _misplaced(name: str, value: Any) -> str:
    """The message for a top-level key that is not a table."""
    if name in SECTIONS:
        return f"[{name}]: must be a table, not {_show(value)}"
    owners = [s for s, cls in SECTIONS.items() if name in _keys(cls)]
    hint = f"; did you mean [{owners[0]}] {name}?" if owners else ""
    return f"{_name(name)}: keys must be inside a [section]{hint}"


def _hint(name: str, known: dict[str, Any]) -> str:
    close = difflib.get_close_matches(name, list(known), n=1)
    if close:
        return f"; did you mean {close[0]!r}?"
    return f" (known: {', '.join(known)})"


def _name(name: str) -> str:
    return name if re.fullmatch(r"[A-Za-z0-9_.-]+", name) else repr(name)


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _reason(exc: OSError) -> str:
    return exc.strerror or _one_line(str(exc)) or type(exc).__name__


# --- rendering ----------------------------------------------------------------------------


def to_toml(config: Config, *, comments: bool = True) -> str:
    """Render every section and key of ``config`` as TOML that :func:`load_config` reads back.

    With ``comments`` each section is preceded by its documentation. A key whose value is
    None is rendered as a comment: ``# file = ""``.
    """
    out: list[str] = []
    for name in SECTIONS:
        section = config.section(name)
        if comments:
            doc = inspect.cleandoc(type(section).__doc__ or "")
            out += [f"# {line}".rstrip() for line in doc.splitlines()]
        out.append(f"[{name}]")
        for key in _keys(type(section)):
            value = getattr(section, key)
            out.append(f'# {key} = ""' if value is None else f"{key} = {_toml_value(value)}")
        out.append("")
    return "\n".join(out)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)  # inf and nan are TOML too
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    return _toml_string(str(value))


def _toml_string(text: str) -> str:
    # JSON's escapes are TOML's, except that TOML wants DEL escaped too.
    return json.dumps(text, ensure_ascii=False).replace("\x7f", "\\u007f")


# --- snf-config ---------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    """``snf-config``: show or check the configuration, or print the defaults."""
    parser = argparse.ArgumentParser(prog="snf-config", description="The snf configuration.")
    parser.add_argument(
        "--config-dir", type=Path, metavar="DIR", help="default: $SNF_CONFIG_DIR or /etc/snf"
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands.add_parser("show", help="print the effective configuration as TOML")
    commands.add_parser("check", help="check the files; print 'ok: N files' or the error")
    commands.add_parser("defaults", help="print every key at its default (the sample file)")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    if args.command == "defaults":
        sys.stdout.write(to_toml(Config()))
        return 0
    config = load_config(args.config_dir)
    count = len(config.sources)
    if args.command == "check":
        print(f"ok: {count} file{'' if count == 1 else 's'}")
        return 0
    header = ["# effective snf configuration; files read, in order:"]
    header += [f"#   {path}" for path in config.sources] or ["#   none: all defaults"]
    sys.stdout.write("\n".join(header) + "\n\n" + to_toml(config, comments=False))
    return 0


def cli() -> None:
    """The ``snf-config`` console script."""
    run_main(main, prog="snf-config")
