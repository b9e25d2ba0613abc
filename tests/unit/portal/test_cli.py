"""snf-portal end to end in-process (main()), and its one-line errors in a subprocess."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import pytest

from snf.portal.cli import main


@pytest.fixture
def conf(tmp_path: Path) -> list[str]:
    etc = tmp_path / "etc"
    etc.mkdir()
    (etc / "snf.toml").write_text(
        f'[portal]\ndatabase_url = "sqlite:///{tmp_path / "p.db"}"\n'
        f'secret_key_file = "{tmp_path / "secret"}"\n'
    )
    assert main(["--config-dir", str(etc), "db", "upgrade"]) == 0
    return ["--config-dir", str(etc)]


def test_users_tokens_services_quotas_and_projects(conf: list[str], capsys, monkeypatch) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO("a good password\n"))
    main([*conf, "user", "add", "bob@example.test", "--name", "Bob", "--active",
          "--password-stdin"])  # fmt: skip
    uuid = capsys.readouterr().out.strip()
    main([*conf, "user", "show", "bob@example.test"])
    out = capsys.readouterr().out
    assert f"uuid: {uuid}" in out and "state: active" in out and "local" in out
    main([*conf, "token", "issue", uuid])
    assert len(capsys.readouterr().out.strip()) >= 40
    main([*conf, "service", "add", "node1"])
    main([*conf, "service", "list"])
    assert "node1" in capsys.readouterr().out
    main([*conf, "quota", "set", "bob@example.test", "cyclades.vm", "7"])
    assert f"{uuid}\tcyclades.vm\t0/7" in capsys.readouterr().out
    main([*conf, "project", "create", "lab", "--owner", uuid, "--grant", "cyclades.vm=10:3"])
    project = capsys.readouterr().out.strip()
    main([*conf, "project", "add-member", project, uuid])
    main([*conf, "quota", "show", uuid])
    assert f"{project}\tcyclades.vm\t0/3" in capsys.readouterr().out
    main([*conf, "project", "list"])
    assert "lab" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv,message",
    [
        (["user", "add", "not-an-email"], "not an email address"),
        (["user", "show", "nobody@example.test"], "no user nobody@example.test"),
        (["quota", "set", "nobody@example.test", "cyclades.vm", "1"], "no user"),
        (["backend", "drain", "nowhere"], "no backend 'nowhere'"),
        (["backend", "add", "Bad_Name", "--host", "127.0.0.1", "--user", "u",
          "--password-stdin", "--no-pin"], "bad backend name"),
        (["backend", "add", "c9", "--host", "127.0.0.1", "--port", "9", "--user", "u",
          "--password-stdin", "--no-pin"], "cannot talk to RAPI at 127.0.0.1:9"),
        (["backend", "add", "c9", "--host", "127.0.0.1", "--user", "u", "--password-stdin",
          "--pin-from", "/nonexistent.pem"], "cannot read /nonexistent.pem"),
        (["flavor", "add", "f", "--vcpus", "0", "--ram", "1", "--disk", "1"], "--vcpus"),
        (["flavor", "remove", "nothing"], "no flavor 'nothing'"),
    ],
)  # fmt: skip
def test_errors_are_one_line(conf: list[str], argv: list[str], message: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", "from snf.portal.cli import cli; cli()", *conf, *argv],
        capture_output=True, text=True, input="secret\n",
    )  # fmt: skip
    assert proc.returncode != 0
    assert proc.stderr.count("\n") == 1 and message in proc.stderr


def test_moderation(conf: list[str], capsys) -> None:
    from sqlalchemy import create_engine
    from sqlalchemy.orm import Session

    from snf.common.config import load_config
    from snf.portal.identity import accounts, signup

    config = load_config(Path(conf[1]))
    engine = create_engine(config.portal.database_url)
    with Session(engine) as session:
        for email in ("wait@example.test", "bad@example.test"):
            method = signup.NewMethod("local", email, "pass word 1")
            user, code = signup.signup(
                session, config, email=email, display_name=email, method=method
            )
            signup.verify(session, config, code or "")
        accounts.issue_user_token(session, user, kind="api", hours=1)
        session.commit()
    assert main([*conf, "user", "list", "--pending"]) == 0
    listed = capsys.readouterr().out
    assert "wait@example.test" in listed and "pending moderation" in listed
    assert main([*conf, "user", "reject", "bad@example.test", "--reason", "spam"]) == 0
    assert main([*conf, "user", "activate", "wait@example.test"]) == 0
    capsys.readouterr()
    assert main([*conf, "user", "list", "--pending"]) == 0
    assert capsys.readouterr().out == ""
    main([*conf, "user", "show", "bad@example.test"])
    assert "state: rejected" in capsys.readouterr().out
    with Session(engine) as session:
        assert (
            accounts.current_api_token(session, accounts.find_user(session, "bad@example.test"))
            is None
        )


def test_flavors_and_an_empty_reconcile(conf: list[str], capsys) -> None:
    main([*conf, "flavor", "add", "small", "--vcpus", "1", "--ram", "512", "--disk", "5"])
    flavor = capsys.readouterr().out.strip()
    main([*conf, "flavor", "add", "copy", "--vcpus", "1", "--ram", "512", "--disk", "5",
          "--template", "file"])  # fmt: skip
    main([*conf, "flavor", "list"])
    listed = capsys.readouterr().out
    assert f"{flavor}\tsmall\t1 vcpus\t512 MiB\t5 GiB\text_archipelago" in listed
    assert "\tcopy\t" in listed and "\tfile" in listed
    main([*conf, "flavor", "remove", "small"])
    main([*conf, "flavor", "list"])
    assert "small" not in capsys.readouterr().out
    assert main([*conf, "reconcile"]) == 0  # no backend: nothing to do
