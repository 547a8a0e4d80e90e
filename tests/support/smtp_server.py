"""A tiny real SMTP server for tests: listens on 127.0.0.1 (a free port), speaks enough
ESMTP for smtplib and aiosmtplib (EHLO/HELO, AUTH PLAIN/LOGIN, MAIL, RCPT, DATA, RSET, NOOP,
QUIT; no TLS), keeps every message it receives, and stops after `lifetime` seconds at the
latest (or when the `with` block ends)."""

from __future__ import annotations

import base64
import email
import email.policy
import socketserver
import threading
import time
from dataclasses import dataclass, field
from email.message import EmailMessage


@dataclass
class Received:
    mail_from: str
    rcpt_to: list[str]
    message: EmailMessage
    login: str | None
    at: float = field(default_factory=time.time)

    @property
    def subject(self) -> str:
        return str(self.message["Subject"] or "")

    @property
    def text(self) -> str:
        """Every text part, decoded."""
        parts = [p.get_content() for p in self.message.walk() if p.get_content_maintype() == "text"]
        return "\n".join(parts)


class _Handler(socketserver.StreamRequestHandler):
    timeout = 30

    def reply(self, line: str) -> None:
        self.wfile.write((line + "\r\n").encode())
        self.wfile.flush()

    def readline(self) -> str | None:
        raw = self.rfile.readline(65536)
        return raw.decode("utf-8", "replace").rstrip("\r\n") if raw else None

    def handle(self) -> None:
        server: SmtpServer = self.server.owner  # type: ignore[attr-defined]
        self.reply("220 127.0.0.1 s1mig test SMTP")
        mail_from, rcpt, login = "", [], None
        while (line := self.readline()) is not None:
            verb, _, arg = line.partition(" ")
            verb = verb.upper()
            if verb == "EHLO":
                self.wfile.write(b"250-127.0.0.1\r\n250-AUTH PLAIN LOGIN\r\n250-8BITMIME\r\n250 SIZE 10485760\r\n")
                self.wfile.flush()
            elif verb == "HELO":
                self.reply("250 127.0.0.1")
            elif verb == "AUTH":
                login = self._auth(arg)
                if login is None:
                    self.reply("535 authentication failed")
                    continue
                self.reply("235 authenticated")
            elif verb == "MAIL":
                mail_from, rcpt = arg.split(":", 1)[1].strip().split(" ")[0].strip("<>"), []
                self.reply("250 OK")
            elif verb == "RCPT":
                rcpt.append(arg.split(":", 1)[1].strip().split(" ")[0].strip("<>"))
                self.reply("250 OK")
            elif verb == "DATA":
                self.reply("354 end with <CRLF>.<CRLF>")
                lines = []
                while (data := self.readline()) is not None and data != ".":
                    lines.append(data[1:] if data.startswith("..") else data)
                msg = email.message_from_string("\r\n".join(lines) + "\r\n", policy=email.policy.default)
                server.add(Received(mail_from, rcpt, msg, login))  # type: ignore[arg-type]
                self.reply("250 OK queued")
            elif verb in ("RSET", "NOOP"):
                if verb == "RSET":
                    mail_from, rcpt = "", []
                self.reply("250 OK")
            elif verb == "QUIT":
                self.reply("221 bye")
                return
            else:
                self.reply("502 command not implemented")

    def _auth(self, arg: str) -> str | None:
        mech, _, initial = arg.partition(" ")
        server: SmtpServer = self.server.owner  # type: ignore[attr-defined]
        if mech.upper() == "PLAIN":
            if not initial:
                self.reply("334 ")
                initial = self.readline() or ""
            _, user, password = base64.b64decode(initial).decode().split("\0")
        elif mech.upper() == "LOGIN":
            self.reply("334 " + base64.b64encode(b"Username:").decode())
            user = base64.b64decode(self.readline() or "").decode()
            self.reply("334 " + base64.b64encode(b"Password:").decode())
            password = base64.b64decode(self.readline() or "").decode()
        else:
            return None
        return user if server.credentials is None or server.credentials == (user, password) else None


class _TCPServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


class SmtpServer:
    """`with SmtpServer() as smtp:` ... smtp.port, smtp.wait_for(n), smtp.messages."""

    def __init__(self, lifetime: float = 600, credentials: tuple[str, str] | None = None):
        self.lifetime = lifetime
        self.credentials = credentials  # when set, AUTH must give exactly these
        self.messages: list[Received] = []
        self._cond = threading.Condition()
        self._stopped = False
        self._server = _TCPServer(("127.0.0.1", 0), _Handler)
        self._server.owner = self  # type: ignore[attr-defined]
        self.port: int = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True)
        self._timer = threading.Timer(lifetime, self.stop)
        self._timer.daemon = True

    def add(self, received: Received) -> None:
        with self._cond:
            self.messages.append(received)
            self._cond.notify_all()

    def wait_for(self, count: int, timeout: float) -> list[Received]:
        """The messages once at least `count` arrived (or whatever came within `timeout` s)."""
        with self._cond:
            self._cond.wait_for(lambda: len(self.messages) >= count, timeout=timeout)
            return list(self.messages)

    def start(self) -> SmtpServer:
        self._thread.start()
        self._timer.start()
        return self

    def stop(self) -> None:
        self._timer.cancel()
        with self._cond:
            if self._stopped:
                return
            self._stopped = True
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> SmtpServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
