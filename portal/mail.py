"""Outgoing mail: an outbox directory (one machine, tests) or SMTP ([mail] backend).

An outbox message is one RFC 5322 file, ``<time>-<random>.eml``, created atomically (a
temporary name, then rename), so a reader never sees half a message."""

from __future__ import annotations

import logging
import os
import secrets
import smtplib
import time
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

from snf.common.config import MailConfig
from snf.common.errors import SnfError

log = logging.getLogger("snf.portal.mail")


class MailError(SnfError):
    http_status = 503
    openstack_name = "serviceUnavailable"


def compose(config: MailConfig, to: str, subject: str, body: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = config.sender
    message["To"] = to
    message["Subject"] = subject
    message["Date"] = formatdate(localtime=False)
    message["Message-ID"] = make_msgid(domain="snf-cloud")
    message.set_content(body)
    return message


def send(config: MailConfig, to: str, subject: str, body: str) -> None:
    message = compose(config, to, subject, body)
    try:
        if config.backend == "outbox":
            _to_outbox(config, message)
        else:
            _to_smtp(config, message)
    except (OSError, smtplib.SMTPException) as exc:
        log.error("could not send mail to %s: %s", to, exc)
        raise MailError(f"could not send mail: {exc}") from None
    log.info("mail to %s: %s", to, subject)


def _to_outbox(config: MailConfig, message: EmailMessage) -> None:
    outbox = config.outbox_dir
    outbox.mkdir(parents=True, exist_ok=True)
    name = f"{time.time_ns()}-{secrets.token_hex(4)}.eml"
    tmp = outbox / f".{name}.tmp"
    with open(tmp, "wb") as f:
        f.write(message.as_bytes())
        f.flush()
        os.fsync(f.fileno())
    os.rename(tmp, outbox / name)


def _to_smtp(config: MailConfig, message: EmailMessage) -> None:
    with smtplib.SMTP(config.smtp_host, config.smtp_port, timeout=30) as smtp:
        if config.smtp_starttls:
            smtp.starttls()
        if config.smtp_user:
            password = (
                config.smtp_password_file.read_text().strip() if config.smtp_password_file else ""
            )
            smtp.login(config.smtp_user, password)
        smtp.send_message(message)
