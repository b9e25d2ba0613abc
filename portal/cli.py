"""snf-portal: run the portal and administer it.

    snf-portal serve [--bind HOST:PORT] [--workers N]       gunicorn with the portal
    snf-portal db upgrade [REVISION] | db current
    snf-portal user add EMAIL --name NAME [--password-stdin] [--active] [--admin]
    snf-portal user list [--pending] | user show USER | user activate USER
    snf-portal user reject USER [--reason TEXT]      (moderation; also ends sessions and tokens)
    snf-portal user modify USER [--name NAME] [--admin | --no-admin] [--password-stdin]
    snf-portal service add NAME | service list | service revoke NAME
    snf-portal token issue USER | token revoke USER
    snf-portal quota show USER | quota set USER RESOURCE LIMIT     (the user's base quota)
    snf-portal project list | project create NAME [--owner USER] [--grant RES=PROJECT:MEMBER]...
                                                  [--join auto|moderated|closed]
    snf-portal project add-member PROJECT USER | project remove-member PROJECT USER
    snf-portal project applications | project approve|deny PROJECT [--app-id N] [--reason R]
    snf-portal pithos reconcile [--dry-run]     (version maps left without a version by crashes)
    snf-portal backend|flavor|reconcile ...      (compute: see snf.portal.compute.cli)

USER is a UUID or an email.  Tokens are printed once, when issued: only their SHA-256 is
kept.  The database is ``[portal] database_url`` of /etc/snf/snf.toml.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from sqlalchemy import select

from snf.common.cli import run_main
from snf.common.config import Config, load_config
from snf.common.errors import InvalidInput

from . import migrate
from .compute import cli as compute_cli


def _read_password(args: argparse.Namespace) -> str | None:
    if not getattr(args, "password_stdin", False):
        return None
    password = sys.stdin.readline().rstrip("\n")
    if len(password) < 8:
        raise InvalidInput("a password needs at least 8 characters")
    return password


def _with_session(config: Config, action) -> int:  # type: ignore[no-untyped-def]
    from .app import create_app
    from .extensions import db

    app = create_app(config)
    with app.app_context():
        result = action(db.session)
        db.session.commit()
    return result or 0


def _user_cmd(config: Config, args: argparse.Namespace) -> int:
    from .identity import accounts, signup
    from .identity.models import User

    def act(session) -> int:  # type: ignore[no-untyped-def]
        if args.action == "add":
            user = accounts.create_user(session, args.email, args.name or args.email,
                                        password=_read_password(args), active=args.active,
                                        admin=args.admin)  # fmt: skip
            print(user.uuid)
        elif args.action == "list":
            query = select(User).order_by(User.created)
            if args.pending:
                query = query.where(
                    User.email_verified, User.moderated.is_(False), User.rejected_reason.is_(None)
                )
            for user in session.scalars(query):
                admin = " admin" if user.is_admin else ""
                print(f"{user.uuid}\t{user.email}\t{user.display_name}\t{user.state}{admin}")
        elif args.action == "show":
            user = accounts.find_user(session, args.user)
            methods = ", ".join(m.provider for m in user.login_methods) or "none"
            print(f"uuid: {user.uuid}\nemail: {user.email}\nname: {user.display_name}")
            print(f"state: {user.state}\nadmin: {user.is_admin}\nlogin methods: {methods}")
        elif args.action == "activate":
            accounts.activate(accounts.find_user(session, args.user))
        elif args.action == "reject":
            user = accounts.find_user(session, args.user)
            signup.reject(user, args.reason)
            accounts.revoke_user_tokens(session, user)
        elif args.action == "modify":
            user = accounts.find_user(session, args.user)
            if args.name:
                user.display_name = args.name
            if args.admin is not None:
                user.is_admin = args.admin
            password = _read_password(args)
            if password is not None:
                accounts.set_password(user, password)
        return 0

    return _with_session(config, act)


def _service_cmd(config: Config, args: argparse.Namespace) -> int:
    from .identity import accounts
    from .identity.models import Service

    def act(session) -> int:  # type: ignore[no-untyped-def]
        if args.action == "add":
            token, _ = accounts.add_service(session, args.name)
            print(token)
        elif args.action == "list":
            for service in session.scalars(select(Service).order_by(Service.name)):
                state = "revoked" if service.revoked else "active"
                print(f"{service.name}\t{service.uuid}\t{state}")
        elif args.action == "revoke":
            accounts.revoke_service(session, args.name)
        return 0

    return _with_session(config, act)


def _token_cmd(config: Config, args: argparse.Namespace) -> int:
    from .identity import accounts

    def act(session) -> int:  # type: ignore[no-untyped-def]
        user = accounts.find_user(session, args.user)
        if args.action == "issue":
            token, row = accounts.issue_user_token(session, user, kind="api",
                                                   hours=config.portal.api_token_hours)  # fmt: skip
            print(token)
            print(f"expires {row.expires:%Y-%m-%d %H:%M} UTC", file=sys.stderr)
        else:
            print(f"revoked {accounts.revoke_user_tokens(session, user)} tokens", file=sys.stderr)
        return 0

    return _with_session(config, act)


def _quota_cmd(config: Config, args: argparse.Namespace) -> int:
    from snf.quota import engine as quota

    from .identity import accounts

    def act(session) -> int:  # type: ignore[no-untyped-def]
        user = accounts.find_user(session, args.user)
        quota.ensure_user(session, user.uuid)
        if args.action == "set":
            limit = _count(args.limit)
            quota.set_grants(session, user.uuid, {args.resource: {
                "project_capacity": limit, "member_capacity": limit}})  # fmt: skip
        for project, holdings in quota.quotas(session, user.uuid).items():
            for resource, q in holdings.items():
                print(f"{project}\t{resource}\t{q['usage']}/{q['limit']}\tpending {q['pending']}")
        return 0

    return _with_session(config, act)


def _count(text: str) -> int:
    if not text.isdigit():
        raise InvalidInput(f"not a non-negative whole number: {text!r}")
    return int(text)


def _project_cmd(config: Config, args: argparse.Namespace) -> int:
    from snf.quota import engine as quota
    from snf.quota.models import Project

    from . import projects_applications as applications
    from .identity import accounts
    from .identity.models import User

    def act(session) -> int:  # type: ignore[no-untyped-def]
        if args.action == "list":
            for project in session.scalars(select(Project).order_by(Project.name)):
                print(f"{project.id}\t{project.name}\t{project.state}")
        elif args.action == "applications":
            for app in applications.pending_applications(session, None):
                kind = "modify" if app.is_modification else "new"
                who = session.get(User, app.applicant)
                print(f"{app.id}\t{app.project_id}\t{kind}\t{app.name or '-'}\t"
                      f"{who.email if who else app.applicant}")  # fmt: skip
        elif args.action in ("approve", "deny"):
            applications.decide(session, None, args.project, args.action, args.reason,
                                app_id=args.app_id)  # fmt: skip
        elif args.action == "create":
            grants = {}
            for grant in args.grant:
                resource, _, caps = grant.partition("=")
                project_cap, _, member_cap = caps.partition(":")
                member = _count(member_cap or project_cap)
                grants[resource] = {
                    "project_capacity": _count(project_cap),
                    "member_capacity": member,
                }
            owner = accounts.find_user(session, args.owner).uuid if args.owner else None
            project_id = quota.create_project(session, name=args.name, owner=owner, grants=grants)
            session.get(Project, project_id).join_policy = args.join
            print(project_id)
        else:
            user = accounts.find_user(session, args.user)
            quota.ensure_user(session, user.uuid)
            if args.action == "add-member":
                quota.add_member(session, args.project, user.uuid)
            else:
                quota.remove_member(session, args.project, user.uuid)
        return 0

    return _with_session(config, act)


def _pithos_cmd(config: Config, args: argparse.Namespace) -> int:
    from snf.archipelago.backends import open_store

    from .pithos import reconcile

    def act(session):  # type: ignore[no-untyped-def]
        store = open_store(config.store)
        try:
            done = reconcile.orphan_maps(session, store, dry_run=args.dry_run,
                                         window=config.pithos.orphan_map_seconds)  # fmt: skip
        finally:
            store.close()
        verb = "would remove" if args.dry_run else "removed"
        print(f"{done.checked} version maps checked, {done.young} too young to judge, "
              f"{verb} {len(done.removed)}")  # fmt: skip
        for name in done.removed:
            print(f"  {name}")
        return 0

    return _with_session(config, act)


def _serve(config: Config, args: argparse.Namespace) -> int:
    bind = args.bind or config.portal.bind
    workers = str(args.workers or config.portal.workers)
    # Long uploads and downloads keep a (sync) worker busy: the timeout bounds a silent hang,
    # not a transfer.  Header names with "_" are kept (gunicorn drops them by default): image
    # properties travel as X-Image-Meta-Property-ROOT_PARTITION and the like, and the portal
    # trusts no header a proxy sets, so "_" and "-" meaning the same costs nothing.
    argv = [sys.executable, "-m", "gunicorn", "--bind", bind, "--workers", workers,
            "--timeout", str(config.portal.worker_timeout), "--access-logfile", "-",
            "--header-map", "dangerous", "snf.portal.app:create_app()"]  # fmt: skip
    os.execv(sys.executable, argv)
    return 0


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="snf-portal", description=__doc__.split("\n")[0])
    parser.add_argument("--config-dir", type=Path, help="default: $SNF_CONFIG_DIR or /etc/snf")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("serve", help="run the portal under gunicorn")
    p.add_argument("--bind")
    p.add_argument("--workers", type=int)
    p = sub.add_parser("db", help="the database schema")
    p.add_argument("action", choices=["upgrade", "current"])
    p.add_argument("revision", nargs="?", default="head")
    p = sub.add_parser("user", help="users")
    users = p.add_subparsers(dest="action", required=True)
    q = users.add_parser("add")
    q.add_argument("email")
    q.add_argument("--name")
    q.add_argument("--password-stdin", action="store_true", help="read a password from stdin")
    q.add_argument("--active", action="store_true", help="verified, moderated and active now")
    q.add_argument("--admin", action="store_true")
    users.add_parser("list").add_argument(
        "--pending", action="store_true", help="only accounts waiting for moderation"
    )
    for action in ("show", "activate"):
        users.add_parser(action).add_argument("user")
    q = users.add_parser("reject")
    q.add_argument("user")
    q.add_argument("--reason", default="")
    q = users.add_parser("modify")
    q.add_argument("user")
    q.add_argument("--name")
    q.add_argument("--admin", action=argparse.BooleanOptionalAction, default=None)
    q.add_argument("--password-stdin", action="store_true")
    p = sub.add_parser("service", help="service accounts (nodes, hooks, event daemon)")
    services = p.add_subparsers(dest="action", required=True)
    services.add_parser("add").add_argument("name")
    services.add_parser("list")
    services.add_parser("revoke").add_argument("name")
    p = sub.add_parser("token", help="users' API tokens")
    tokens = p.add_subparsers(dest="action", required=True)
    tokens.add_parser("issue").add_argument("user")
    tokens.add_parser("revoke").add_argument("user")
    p = sub.add_parser("quota", help="a user's quotas")
    quotas = p.add_subparsers(dest="action", required=True)
    quotas.add_parser("show").add_argument("user")
    q = quotas.add_parser("set", help="set a user's base quota of one resource")
    q.add_argument("user")
    q.add_argument("resource")
    q.add_argument("limit")
    p = sub.add_parser("project", help="projects")
    projects = p.add_subparsers(dest="action", required=True)
    projects.add_parser("list")
    q = projects.add_parser("create")
    q.add_argument("name")
    q.add_argument("--owner")
    q.add_argument("--grant", action="append", default=[], metavar="RES=PROJECT:MEMBER")
    q.add_argument(
        "--join",
        choices=["auto", "moderated", "closed"],
        default="moderated",
        help="who may join: anyone at once, on the owner's approval, nobody",
    )
    for action in ("add-member", "remove-member"):
        q = projects.add_parser(action)
        q.add_argument("project")
        q.add_argument("user")
    projects.add_parser("applications", help="pending project applications")
    for action in ("approve", "deny"):
        q = projects.add_parser(action, help=f"{action} a project's latest application")
        q.add_argument("project")
        q.add_argument("--app-id", type=int, help="the application (default: the latest)")
        q.add_argument("--reason", default="")
    p = sub.add_parser("pithos", help="the object store")
    q = p.add_subparsers(dest="action", required=True).add_parser(
        "reconcile", help="remove version maps that no version names (left by crashes)"
    )
    q.add_argument("--dry-run", action="store_true")
    compute_cli.add_parsers(sub)
    args = parser.parse_args(argv)
    config = load_config(args.config_dir)

    if args.command == "db":
        url = config.portal.database_url
        if args.action == "upgrade":
            migrate.upgrade(url, args.revision)
        print(migrate.current(url) or "empty")
        return 0
    commands = {"serve": _serve, "user": _user_cmd, "service": _service_cmd, "token": _token_cmd,
                "quota": _quota_cmd, "project": _project_cmd, "pithos": _pithos_cmd}  # fmt: skip
    if args.command in compute_cli.COMMANDS:
        command = compute_cli.COMMANDS[args.command]
        return _with_session(config, lambda session: command(session, config, args))
    return commands[args.command](config, args)


def cli() -> None:
    run_main(main, prog="snf-portal")


if __name__ == "__main__":
    cli()
