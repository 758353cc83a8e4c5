#!/usr/bin/python3
"""The laptop's message queue for the welcome page's form "envoyer un message".

Runs on the laptop, where imager is not installed: Python 3 standard library only.

    accueil_messages.py serve --queue DIR --port 8377 [--site DIR]
        A small HTTP service bound to 127.0.0.1 only. POST /messages (the page's
        form, application/x-www-form-urlencoded: text required, name and contact
        optional, lang fr|en) writes the message atomically into the queue
        directory (0700; each message a 0600 JSON file: it is a person's data),
        then answers with a page in plain French (or English). GET / and the
        page's files are served from --site, so the answer's "back" link works.
    accueil_messages.py send --queue DIR --portal URL [--once | --loop]
        Posts each queued message as JSON to the portal; deletes it only after a
        2xx; keeps it after a network error, a timeout, a 5xx or a 4xx that says
        "retry" (408, 425, 429, or any answer with Retry-After), with exponential
        backoff capped; drops it, and logs why, after a permanent refusal (400,
        413, 415, 422) or once it is older than --keep-days.

Limits (each answered in plain words): a message's text 4 KiB (UTF-8), name 200 B,
contact 300 B, a request 16 KiB; the queue 100 messages or 1 MiB.

What the portal must do (a later issue builds it):
    POST <portal URL>, Content-Type: application/json; charset=utf-8,
    header Idempotency-Key: <id>, body:
      {"format": "accueil-message/1",
       "id": "<UUID, the same at every attempt>",
       "written_at": "2026-12-06T10:15:00+01:00",   (when the person wrote it)
       "sent_at": "2026-12-06T11:02:13+01:00",      (this attempt)
       "attempt": 1,
       "machine": "<the laptop's hostname: its asset tag>",
       "lang": "fr", "name": "<or empty>", "text": "<the message>",
       "contact": "<phone or e-mail, or empty>"}
    Answer 2xx (200, 201, 202) once the message is stored; answer 2xx again for
    an id it already has (a retry after a lost answer). Answer 429 or 503 with
    Retry-After (seconds) when busy; 5xx when it cannot store it now. Answer 400,
    413, 415 or 422 only when this message will never be accepted: the laptop
    then drops it. Any other 4xx (401, 403, 404...) is taken as a problem of the
    portal's configuration: the message is kept and tried again until it expires.
"""

from __future__ import annotations

import argparse
import email.utils
import html
import http.server
import json
import os
import socket
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

DEFAULT_PORT = 8377
MAX_TEXT_BYTES = 4096
MAX_NAME_BYTES = 200
MAX_CONTACT_BYTES = 300
MAX_BODY_BYTES = 16 * 1024
MAX_MESSAGES = 100
MAX_QUEUE_BYTES = 1024 * 1024
PERMANENT = (400, 413, 415, 422)
RETRY_4XX = (408, 425, 429)
FORMAT = "accueil-message/1"


def log(message: str) -> None:
    """One line to the journal (stderr). Never a message's content: only its id."""
    print(message, file=sys.stderr, flush=True)


# -- the queue ------------------------------------------------------------------------


class Queue:
    """A directory of messages, one JSON file each, named so that the oldest
    sorts first. Files appear whole (written aside, then renamed) and private."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(directory, 0o700)

    def files(self) -> list[Path]:
        return sorted(p for p in self.directory.glob("*.json") if p.is_file())

    def usage(self) -> tuple[int, int]:
        """(how many messages, how many bytes) the queue holds."""
        files = self.files()
        return len(files), sum(p.stat().st_size for p in files)

    def add(self, message: dict[str, Any]) -> Path:
        name = f"{time.time_ns():020d}-{message['id']}.json"
        return self.save(self.directory / name, message)

    def save(self, path: Path, message: dict[str, Any]) -> Path:
        """Write `message` to `path` atomically, readable by its owner only."""
        data = json.dumps(message, ensure_ascii=False, indent=1).encode("utf-8")
        temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
            os.replace(temporary, path)
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise
        self._sync()
        return path

    def load(self, path: Path) -> dict[str, Any] | None:
        try:
            found = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            log(f"dropped {path.name}: unreadable ({exc})")
            path.unlink(missing_ok=True)
            return None
        return found if isinstance(found, dict) else None

    def remove(self, path: Path) -> None:
        path.unlink(missing_ok=True)
        self._sync()

    def _sync(self) -> None:
        fd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def now_local() -> str:
    return datetime.now(UTC).astimezone().isoformat(timespec="seconds")


# -- the local service ----------------------------------------------------------------

WORDS: dict[str, dict[str, Any]] = {
    "fr": {
        "thanks_title": "Message gardé",
        "thanks": ["Merci. Votre message est bien gardé dans l'ordinateur.",
                   "Il partira tout seul quand l'ordinateur sera connecté à Internet.",
                   "Messages en attente d'envoi : {waiting}."],
        "empty": ["Votre message est vide.", "Écrivez quelques mots, puis envoyez."],
        "too_long": ["Votre message est trop long.",
                     "Raccourcissez-le, ou envoyez-le en deux fois."],
        "field_too_long": ["Votre nom ou votre contact est trop long.", "Raccourcissez-le."],
        "full": ["La boîte d'envoi de l'ordinateur est pleine.",
                 "Connectez l'ordinateur à Internet : les messages partiront.",
                 "Ensuite, vous pourrez écrire de nouveau.",
                 "Pressé ? Appelez le numéro de la page d'accueil."],
        "refused": ["Ce formulaire s'envoie seulement depuis la page d'accueil de "
                    "l'ordinateur."],
        "bad": ["Ce message n'a pas pu être lu.", "Revenez à la page d'accueil et "
                "écrivez-le de nouveau."],
        "error_title": "Message non envoyé",
        "back": "Revenir à la page d'accueil",
        "home": "/",
    },
    "en": {
        "thanks_title": "Message kept",
        "thanks": ["Thank you. Your message is kept in the computer.",
                   "It will leave by itself once the computer is connected to the Internet.",
                   "Messages waiting to be sent: {waiting}."],
        "empty": ["Your message is empty.", "Write a few words, then send."],
        "too_long": ["Your message is too long.", "Make it shorter, or send it in two parts."],
        "field_too_long": ["Your name or your contact is too long.", "Make it shorter."],
        "full": ["The computer's outbox is full.",
                 "Connect the computer to the Internet: the messages will leave.",
                 "Then you can write again.",
                 "In a hurry? Call the number on the welcome page."],
        "refused": ["This form can only be sent from the computer's welcome page."],
        "bad": ["This message could not be read.", "Go back to the welcome page and "
                "write it again."],
        "error_title": "Message not sent",
        "back": "Back to the welcome page",
        "home": "/en.html",
    },
}
STYLE = ("body{font-family:'DejaVu Sans',Arial,sans-serif;font-size:22px;line-height:1.5;"
         "color:#111;background:#fff;max-width:40rem;margin:2rem auto;padding:0 1rem}"
         "a{color:#0a3d91;font-weight:bold}h1{font-size:1.6em}")


def page(lang: str, title: str, lines: list[str]) -> bytes:
    """A short answer page in plain words, with a way back."""
    words = WORDS[lang]
    title = html.escape(title, quote=False)
    body = "".join(f"<p>{html.escape(line, quote=False)}</p>" for line in lines)
    return (f'<!DOCTYPE html><html lang="{lang}"><head><meta charset="utf-8"/>'
            f'<meta name="viewport" content="width=device-width, initial-scale=1"/>'
            f"<title>{title}</title><style>{STYLE}</style></head><body><main>"
            f"<h1>{title}</h1>{body}"
            f'<p><a href="{words["home"]}">{html.escape(words["back"], quote=False)}</a></p>'
            f"</main></body></html>").encode()


class Refused(Exception):
    """A request answered with an error page: HTTP status and the words' key."""

    def __init__(self, status: int, key: str) -> None:
        super().__init__(key)
        self.status, self.key = status, key


def read_form(handler: http.server.BaseHTTPRequestHandler, port: int) -> dict[str, str]:
    """The form fields of a POST, once its origin and size are checked."""
    allowed = {f"127.0.0.1:{port}", f"localhost:{port}"}
    if handler.headers.get("Host") not in allowed:
        raise Refused(403, "refused")
    origin = handler.headers.get("Origin")
    if origin is not None and origin != "null" and urllib.parse.urlsplit(origin).netloc \
            not in allowed:
        raise Refused(403, "refused")
    given = handler.headers.get("Content-Length") or ""
    length = int(given) if given.isdigit() else -1
    if length < 0:
        raise Refused(411, "bad")
    if length > MAX_BODY_BYTES:
        raise Refused(413, "too_long")
    try:
        fields = urllib.parse.parse_qs(handler.rfile.read(length).decode("utf-8"),
                                       strict_parsing=False, max_num_fields=10)
    except (UnicodeDecodeError, ValueError) as exc:
        raise Refused(400, "bad") from exc
    return {k: v[0] for k, v in fields.items()}


def message_of(fields: dict[str, str]) -> dict[str, Any]:
    """A new queued message from the form's fields, within the limits."""
    def clean(value: str) -> str:
        text = value.replace("\r\n", "\n").replace("\r", "\n")
        return "".join(ch for ch in text if ch == "\n" or ch == "\t" or ch >= " ").strip()

    text = clean(fields.get("text", ""))
    name, contact = clean(fields.get("name", "")), clean(fields.get("contact", ""))
    if not text:
        raise Refused(400, "empty")
    if len(text.encode("utf-8")) > MAX_TEXT_BYTES:
        raise Refused(413, "too_long")
    if len(name.encode("utf-8")) > MAX_NAME_BYTES or \
            len(contact.encode("utf-8")) > MAX_CONTACT_BYTES:
        raise Refused(413, "field_too_long")
    return {"id": str(uuid.uuid4()), "written_at": now_local(),
            "lang": "en" if fields.get("lang") == "en" else "fr",
            "name": name, "text": text, "contact": contact,
            "attempts": 0, "next_attempt": 0.0, "last_error": ""}


def make_handler(queue: Queue, port: int, site: Path | None,
                 ) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        server_version = "accueil-messages/1"
        timeout = 10

        def log_message(self, format: str, *args: Any) -> None:
            pass                    # requests are not logged: only queue events are

        def do_POST(self) -> None:
            lang = "en" if "en.html" in (self.headers.get("Referer") or "") else "fr"
            if urllib.parse.urlsplit(self.path).path != "/messages":
                return self.answer(404, page(lang, "Page introuvable / not found", []))
            try:
                fields = read_form(self, port)
                lang = "en" if fields.get("lang") == "en" else "fr"
                message = message_of(fields)
                count, size = queue.usage()
                if count >= MAX_MESSAGES or size + len(json.dumps(message)) > MAX_QUEUE_BYTES:
                    log(f"refused a message: the queue is full ({count} messages, {size} B)")
                    raise Refused(507, "full")
                queue.add(message)
            except Refused as refused:
                words = WORDS[lang]
                return self.answer(refused.status, page(lang, words["error_title"],
                                                         words[refused.key]),
                                   {"Retry-After": "600"} if refused.status == 507 else {})
            log(f"queued message {message['id']} ({count + 1} waiting)")
            self.send_response(303)
            self.send_header("Location", f"/messages/sent?lang={lang}")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def do_GET(self) -> None:
            parts = urllib.parse.urlsplit(self.path)
            if parts.path == "/messages/sent":
                lang = "en" if "lang=en" in parts.query else "fr"
                words = WORDS[lang]
                waiting = str(queue.usage()[0])
                return self.answer(200, page(lang, words["thanks_title"],
                                             [line.format(waiting=waiting)
                                              for line in words["thanks"]]))
            self.static(parts.path)

        def static(self, path: str) -> None:
            target = site_file(site, path)
            if target is None:
                return self.answer(404, page("fr", "Page introuvable / not found", []))
            types = {".html": "text/html; charset=utf-8", ".css": "text/css",
                     ".svg": "image/svg+xml", ".png": "image/png"}
            self.answer(200, target.read_bytes(),
                        {"Content-Type": types.get(target.suffix, "application/octet-stream")})

        def answer(self, status: int, body: bytes, headers: dict[str, str] | None = None,
                   ) -> None:
            self.send_response(status)
            headers = {"Content-Type": "text/html; charset=utf-8", **(headers or {})}
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.send_header("X-Content-Type-Options", "nosniff")
            self.end_headers()
            self.wfile.write(body)

    return Handler


def site_file(site: Path | None, path: str) -> Path | None:
    """The file of the welcome page at URL path `path`, never outside `site`."""
    if site is None:
        return None
    relative = urllib.parse.unquote(path).lstrip("/") or "index.html"
    if any(part.startswith(".") for part in relative.split("/")):
        return None
    target = (site / relative).resolve()
    if not target.is_relative_to(site.resolve()) or not target.is_file():
        return None
    return target


def serve(args: argparse.Namespace) -> int:
    queue = Queue(args.queue)
    handler = make_handler(queue, args.port, args.site)
    server = http.server.HTTPServer(("127.0.0.1", args.port), handler)
    log(f"listening on http://127.0.0.1:{args.port}/messages, queue {args.queue}")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


# -- the sender -----------------------------------------------------------------------


class Offline(Exception):
    """The portal cannot be reached now (no network, no answer in time)."""


def post(url: str, payload: dict[str, Any], timeout: float) -> tuple[int, str | None]:
    """POST `payload` as JSON; (status, Retry-After). Offline when unreachable."""
    request = urllib.request.Request(
        url, data=json.dumps(payload, ensure_ascii=False).encode("utf-8"), method="POST",
        headers={"Content-Type": "application/json; charset=utf-8",
                 "User-Agent": "accueil-messages/1", "Idempotency-Key": payload["id"]})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            return answer.status, answer.headers.get("Retry-After")
    except urllib.error.HTTPError as refused:
        return refused.code, refused.headers.get("Retry-After")
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        raise Offline(str(getattr(exc, "reason", exc))) from exc


def retry_after(value: str | None) -> float:
    """Seconds from a Retry-After header (seconds or an HTTP date); 0 if none."""
    if not value:
        return 0.0
    if value.strip().isdigit():
        return float(value.strip())
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return 0.0
    return max(0.0, when.timestamp() - time.time())


class Sender:
    def __init__(self, queue: Queue, args: argparse.Namespace) -> None:
        self.queue, self.args = queue, args

    def round(self) -> dict[str, int]:
        """Try every due message once, oldest first; stop at the first sign that
        the portal is unreachable. Returns what happened, counted."""
        done = {"sent": 0, "kept": 0, "dropped": 0, "waiting": 0}
        for path in self.queue.files():
            message = self.queue.load(path)
            if message is None:
                continue
            outcome = self.one(path, message)
            done[outcome] += 1
            if outcome == "kept" and message.get("last_error", "").startswith("offline"):
                break
        done["waiting"] = len(self.queue.files())
        return done

    def one(self, path: Path, message: dict[str, Any]) -> str:
        if self.expired(message):
            log(f"dropped message {message['id']}: not sent after {self.args.keep_days} days")
            self.queue.remove(path)
            return "dropped"
        if float(message.get("next_attempt", 0)) > time.time():
            return "kept"
        attempt = int(message.get("attempts", 0)) + 1
        payload = {"format": FORMAT, "id": message["id"], "written_at": message["written_at"],
                   "sent_at": now_local(), "attempt": attempt, "machine": self.args.machine,
                   **{k: message.get(k, "") for k in ("lang", "name", "text", "contact")}}
        try:
            status, wait = post(self.args.portal, payload, self.args.timeout)
        except Offline as exc:
            return self.keep(path, message, f"offline: {exc}", 0.0)
        if 200 <= status < 300:
            log(f"sent message {message['id']} (HTTP {status}, attempt {attempt})")
            self.queue.remove(path)
            return "sent"
        if status in PERMANENT and not wait:
            log(f"dropped message {message['id']}: the portal refused it for good "
                f"(HTTP {status})")
            self.queue.remove(path)
            return "dropped"
        return self.keep(path, message, f"HTTP {status}", retry_after(wait))

    def keep(self, path: Path, message: dict[str, Any], why: str, wait: float) -> str:
        attempts = int(message.get("attempts", 0)) + 1
        delay = min(self.args.backoff_cap,
                    max(self.args.backoff_base * 2 ** (attempts - 1), wait))
        message.update(attempts=attempts, next_attempt=time.time() + delay, last_error=why)
        self.queue.save(path, message)
        log(f"kept message {message['id']}: {why}; next try in {delay:.0f} s")
        return "kept"

    def expired(self, message: dict[str, Any]) -> bool:
        try:
            written = datetime.fromisoformat(message["written_at"])
        except (KeyError, TypeError, ValueError):
            return True
        age = datetime.now(UTC) - written
        return bool(age.total_seconds() > self.args.keep_days * 86400)


def send(args: argparse.Namespace) -> int:
    sender = Sender(Queue(args.queue), args)
    while True:
        done = sender.round()
        if any(done[k] for k in ("sent", "dropped")) or not args.loop:
            log("round: " + ", ".join(f"{k} {v}" for k, v in done.items()))
        if not args.loop:
            return 0
        time.sleep(args.interval)


# -- command line ---------------------------------------------------------------------


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(description="File locale des messages de la page "
                                              "d'accueil / the welcome page's message queue")
    sub = top.add_subparsers(dest="command", required=True)
    sv = sub.add_parser("serve", help="the local service (127.0.0.1)")
    sv.add_argument("--queue", type=Path, required=True)
    sv.add_argument("--port", type=int, default=DEFAULT_PORT)
    sv.add_argument("--site", type=Path, help="the welcome page's directory, served at /")
    sv.set_defaults(func=serve)
    sd = sub.add_parser("send", help="post the queued messages to the portal")
    sd.add_argument("--queue", type=Path, required=True)
    sd.add_argument("--portal", required=True, help="the portal's URL for messages")
    sd.add_argument("--loop", action="store_true", help="keep going, a round every --interval")
    sd.add_argument("--once", action="store_true", help="one round (the default)")
    sd.add_argument("--interval", type=float, default=180.0)
    sd.add_argument("--timeout", type=float, default=20.0, help="seconds per request")
    sd.add_argument("--backoff-base", type=float, default=60.0)
    sd.add_argument("--backoff-cap", type=float, default=6 * 3600.0)
    sd.add_argument("--keep-days", type=float, default=30.0)
    sd.add_argument("--machine", default=socket.gethostname())
    sd.set_defaults(func=send)
    return top


def main(argv: list[str] | None = None) -> int:
    os.umask(0o077)
    args = parser().parse_args(argv)
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
