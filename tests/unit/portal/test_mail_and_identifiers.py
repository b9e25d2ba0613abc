"""Mail over real SMTP (a server on loopback), and who may take an external identity."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from email import message_from_bytes
from pathlib import Path

import pytest
from flask import Flask

from snf.common.config import MailConfig
from snf.common.errors import Conflict
from snf.portal import mail
from snf.portal.extensions import db
from snf.portal.identity import accounts, signup
from snf.portal.identity.models import LoginMethod, User


class _SmtpServer(threading.Thread):
    """Just enough SMTP (RFC 5321) to receive one message per connection."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.received: list[tuple[str, list[str], bytes]] = []

    def run(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn, conn.makefile("rwb") as f:
                self._session(f)

    def _session(self, f) -> None:  # type: ignore[no-untyped-def]
        def reply(line: str) -> None:
            f.write(line.encode() + b"\r\n")
            f.flush()

        reply("220 test ESMTP")
        sender, rcpts = "", []
        while line := f.readline():
            cmd = line.decode().strip()
            verb = cmd.split(" ", 1)[0].upper()
            if verb in ("EHLO", "HELO"):
                reply("250 test")
            elif verb == "MAIL":
                sender = cmd.split(":", 1)[1].strip("<> ")
                reply("250 ok")
            elif verb == "RCPT":
                rcpts.append(cmd.split(":", 1)[1].strip("<> "))
                reply("250 ok")
            elif verb == "DATA":
                reply("354 go on")
                data = b""
                while (chunk := f.readline()) != b".\r\n":
                    data += chunk
                self.received.append((sender, rcpts, data))
                reply("250 queued")
            elif verb == "QUIT":
                reply("221 bye")
                return
            else:
                reply("250 ok")

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def smtp() -> Iterator[_SmtpServer]:
    server = _SmtpServer()
    server.start()
    yield server
    server.close()


def test_smtp_backend_delivers(smtp: _SmtpServer) -> None:
    config = MailConfig(backend="smtp", smtp_host="127.0.0.1", smtp_port=smtp.port,
                        sender="cloud <noreply@cloud.test>")  # fmt: skip
    mail.send(config, "carol@example.test", "Verify", "open this link\n")
    ((sender, rcpts, data),) = smtp.received
    assert sender == "noreply@cloud.test" and rcpts == ["carol@example.test"]
    message = message_from_bytes(data)
    assert message["Subject"] == "Verify" and "open this link" in message.get_payload()


def test_unreachable_smtp_is_one_clear_error() -> None:
    with socket.socket() as probe:  # a loopback port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = MailConfig(backend="smtp", smtp_host="127.0.0.1", smtp_port=port)
    with pytest.raises(mail.MailError, match="could not send mail"):
        mail.send(config, "x@example.test", "s", "b")


def test_outbox_holds_only_whole_messages(tmp_path: Path) -> None:
    config = MailConfig(outbox_dir=tmp_path / "out")
    mail.send(config, "a@example.test", "one", "body")
    (path,) = (tmp_path / "out").iterdir()
    assert path.suffix == ".eml" and b"Subject: one" in path.read_bytes()


def test_external_identity_moves_only_from_an_unverified_account(app: Flask) -> None:
    with app.app_context():
        abandoned = accounts.create_user(db.session, "gone@example.test", "Gone")
        abandoned.login_methods.append(LoginMethod(provider="oidc", identifier="https://op a"))
        kept = accounts.create_user(db.session, "kept@example.test", "Kept", active=True)
        kept.login_methods.append(LoginMethod(provider="oidc", identifier="https://op b"))
        db.session.commit()
        signup.release_identifier(db.session, "oidc", "https://op a")
        assert db.session.get(User, abandoned.uuid) is None
        with pytest.raises(Conflict):
            signup.release_identifier(db.session, "oidc", "https://op b")
        assert db.session.get(User, kept.uuid) is not None
