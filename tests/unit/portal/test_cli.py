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
    ],
)
def test_errors_are_one_line(conf: list[str], argv: list[str], message: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", "from snf.portal.cli import cli; cli()", *conf, *argv],
        capture_output=True, text=True,
    )  # fmt: skip
    assert proc.returncode != 0
    assert proc.stderr.count("\n") == 1 and message in proc.stderr
