"""The public verification page: anyone holding a certificate checks it, without an
account. The station serves it (imager.station.web.verify, from its own files and
ledger) and so does the network's portal (imager.portal.web, from what the stations
pushed): the same routes, the same pages, the same answers (imager.certify.public).

- GET at the path of the verify_url printed on the certificates (DEFAULT_PATH when
  there is none), with the `?id=…&sha256=…` every certificate prints in its QR code;
  the same at SHORT/<id>?sha256=… and SHORT/<id>/<sha256>. Without id and hash: the
  form.
- POST at the same path: a PDF or signed JSON file (multipart form field `file`, or
  the file itself as the body with Content-Type application/pdf or application/json),
  at most MAX_UPLOAD bytes, checked and forgotten (nothing is kept).

What is said and what never is: imager.certify.public (the id and hash must match the
ledger together; an unknown id and a wrong hash get the same 404 page, byte for byte).
Where the answer comes from is the caller's: `router` takes the look-up and the
upload check.
Every answer is HTML, or JSON when the Accept header prefers application/json.
Lookups and uploads are limited per client address (LOOKUPS per WINDOW seconds).

No form token on the upload: the check changes nothing and needs no session, so there
is no session to ride. A browser's post from another site is still refused (Fetch
Metadata `Sec-Fetch-Site`, else `Origin` against `Host`, as Go's CrossOriginProtection
does): another site cannot make its visitors' browsers spend the server's time and
their address's lookups. A client that sends neither header (curl, a script) is no
browser another site drives, and is let through.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection
from typing import Any
from urllib.parse import urlsplit

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from imager.certify import labels as L
from imager.certify.public import Answer
from imager.web.i18n import N_, SHARED_LOCALE, catalogue
from imager.web.limits import Limiter
from imager.web.pages import Render, language

DEFAULT_PATH = "/verifier"
SHORT = "/v"
LOOKUPS, WINDOW = 30, 60.0
MAX_UPLOAD = 20 << 20
_FORM_SLACK = 64 << 10          # a multipart body: the file, its boundaries and headers
_PATH = re.compile(r"(/[A-Za-z0-9._~-]+)+/?")
_RAW_TYPES = ("application/pdf", "application/json")
_HEADERS = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer",
            "X-Robots-Tag": "noindex", "Vary": "Accept"}

NOT_FOUND = N_("Not found, or it does not match")
NOT_FOUND_TEXT = N_("We found no document with this number and this SHA-256. Check what "
                    "you typed. You can also send the file of the document below.")
NOT_FOUND_CARE = N_("A document this page cannot find may not be genuine. Ask the workshop "
                    "that gave it to you.")
LEAD = N_("This page tells you whether a document from this workshop is genuine: an "
          "erasure certificate, a destruction record or a donation certificate. You do not "
          "need an account.")
STATES = {
    "genuine": (N_("This document is genuine."),
                N_("It was issued by this workshop. It has not been withdrawn.")),
    "withdrawn": (N_("This document was withdrawn."),
                  N_("It is no longer valid. The workshop withdrew it, for the reason "
                     "below.")),
    "signed": (N_("The signature is good."),
               N_("Another workshop of the network issued this document. Only that "
                  "workshop can say whether it was withdrawn: check it on its page.")),
    "unconfirmed": (N_("We cannot confirm this document for now."),
                    N_("The problem is on our side. Please ask the workshop.")),
    "not_genuine": (N_("This document is not genuine, or it was changed."),
                    N_("Do not rely on it. Ask the workshop that gave it to you.")),
}


def path_of(url: str | None, taken: Collection[str]) -> str:
    """The path of a verify_url (what the QR codes lead to); DEFAULT_PATH when there is
    none, or when its first segment is one of the server's other pages (`taken`)."""
    path = urlsplit(url).path.rstrip("/") if url else ""
    if not _PATH.fullmatch(path or "/") or path.split("/")[1] in taken:
        return DEFAULT_PATH
    return path


def wants_json(accept: str) -> bool:
    """Whether an Accept header prefers application/json to text/html (a tie: HTML)."""
    best = {"application/json": 0.0, "text/html": 0.0}
    for part in accept.split(","):
        media, *params = (p.strip() for p in part.split(";"))
        quality = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        if media.lower() in best:
            best[media.lower()] = max(best[media.lower()], quality)
    return best["application/json"] > best["text/html"]


def cross_site(request: Request) -> bool:
    """A browser's post from another site (see the module)."""
    site = request.headers.get("sec-fetch-site")
    if site is not None:
        return site not in ("same-origin", "none")
    origin = request.headers.get("origin")
    if origin is None:
        return False
    return urlsplit(origin).netloc.lower() != request.headers.get("host", "").lower()


def rows(document: dict[str, Any], lang: str) -> list[tuple[str, str]]:
    """The public fields in words, as (label, value); the certificates' own words
    (imager.certify.labels) for kinds, classes and results."""
    gettext = _shared(lang).gettext
    out = [(N_("Document number"), document["id"]),
           (N_("Kind of document"), L.word("kind", document["kind"], lang)),
           (N_("Date of the document"), L.day(document["issued_at"], lang)),
           (N_("Issued by"), document["issuer"] or L.text("na", lang))]
    if "drive_model" in document:
        out.append((N_("Drive model"), document["drive_model"] or L.text("na", lang)))
    if document.get("method_class"):          # "Clear: the data can no longer be..."
        out.append((N_("Method"), L.word("class_meaning", document["method_class"], lang)))
    if document.get("outcome"):
        out.append((N_("Result"), L.word("result", document["outcome"], lang)))
    if document.get("drives"):
        out.append((N_("Drives"), gettext(N_(
            "%(drives)s in all: %(erased)s erased, %(not_erased)s not erased, "
            "%(destroyed)s destroyed")) % document["drives"]))
    if document.get("donor_kind"):
        kind = L.word("donor_kind", document["donor_kind"], lang)
        out.append((N_("Donor"), f"{document['donor']} ({kind})" if document.get("donor")
                    else kind))
    if document.get("withdraws"):
        out.append((N_("Withdraws the document"), document["withdraws"]))
    return out


def _shared(lang: str) -> Any:
    """The shared catalogue (this page's own messages)."""
    return catalogue(lang, SHARED_LOCALE)


def _client(request: Request) -> str:
    return request.client.host if request.client else "?"


LookUp = Callable[[str, str], Answer | None]
CheckUpload = Callable[[bytes], Answer]


def router(path: str, *, look_up: LookUp, check_upload: CheckUpload, render: Render,
           lead: str = LEAD, states: dict[str, tuple[str, str]] | None = None,
           limiter: Limiter | None = None) -> APIRouter:
    """The verification page's routes, public, at `path` (and SHORT): `look_up(id,
    sha256)` answers a QR code (None: not found), `check_upload(data)` a file sent;
    `render` is the role's (its base page); `lead` and `states` say who answers (this
    workshop, or the network)."""
    web = APIRouter()
    states = states or STATES
    limiter = limiter or Limiter(LOOKUPS, WINDOW)

    def page(request: Request, status: int = 200, notice: tuple[str, ...] = ()) -> Response:
        """The form, with a notice (title, sentences) above it if any. Nothing of the
        request is echoed: a not-found page is the same for every id and hash."""
        if wants_json(request.headers.get("accept", "")):
            state = "not_found" if status == 404 else "refused" if notice else "form"
            lang = language(request)
            said = {"state": state, "message": " ".join(
                _shared(lang).gettext(n) for n in notice) or None}
            return JSONResponse(said, status, headers=_HEADERS)
        response = render(request, "verify.html", {
            "path": path, "notice": notice, "max_mib": MAX_UPLOAD >> 20, "lead": lead,
            "tone": "bad" if status == 404 else "notice",
            "lang_href": lambda other: f"{path}?lang={other}"}, status=status)
        response.headers.update(_HEADERS)
        return response

    def result(request: Request, found: Answer) -> Response:
        if wants_json(request.headers.get("accept", "")):
            return JSONResponse(found.to_dict(), headers=_HEADERS)
        lang = language(request)
        withdrawal = found.withdrawal and {**found.withdrawal,
                                           "day": L.day(found.withdrawal["at"], lang)}
        response = render(request, "verify_result.html", {
            "path": path, "found": found, "state": states[found.state],
            "rows": rows(found.document, lang) if found.document else [],
            "withdrawal": withdrawal})
        response.headers.update(_HEADERS)
        return response

    def too_many(request: Request) -> Response:
        response = page(request, 429, (N_("Too many checks"), N_(
            "Too many checks from this computer. Wait one minute, then try again.")))
        response.headers["Retry-After"] = str(int(WINDOW))
        return response

    def lookup(request: Request, doc_id: str, sha256: str) -> Response:
        if not limiter.allow(_client(request)):
            return too_many(request)
        found = look_up(doc_id, sha256)
        if found is None:
            return page(request, 404, (NOT_FOUND, NOT_FOUND_TEXT, NOT_FOUND_CARE))
        return result(request, found)

    @web.get(path, include_in_schema=False)
    def verify(request: Request) -> Response:
        query = request.query_params
        if "id" not in query and "sha256" not in query:
            return page(request)
        return lookup(request, query.get("id", ""), query.get("sha256", ""))

    @web.get(SHORT + "/{doc_id}", include_in_schema=False)
    def short(doc_id: str, request: Request) -> Response:
        return lookup(request, doc_id, request.query_params.get("sha256", ""))

    @web.get(SHORT + "/{doc_id}/{sha256}", include_in_schema=False)
    def shorter(doc_id: str, sha256: str, request: Request) -> Response:
        return lookup(request, doc_id, sha256)

    @web.post(path, include_in_schema=False)
    async def upload(request: Request) -> Response:
        if cross_site(request):
            return page(request, 403, (N_("Sent from another site"), N_(
                "This form was sent from another website. Open this page yourself, then "
                "send the file from here.")))
        if not limiter.allow(_client(request)):
            return too_many(request)
        data = await _file(request)
        if isinstance(data, tuple):
            return page(request, *data)
        return result(request, await run_in_threadpool(check_upload, data))

    return web


async def _file(request: Request) -> bytes | tuple[int, tuple[str, ...]]:
    """The file sent (as a form's `file`, or as the body itself), or why it is refused:
    (status, notice). Its size is known before it is read (BodyLimit wants a length)."""
    too_big = (413, (N_("File too large"), N_(
        "This file is too large. A certificate is much smaller: send its PDF or its JSON "
        "file.")))
    length = int(request.headers.get("content-length") or 0)
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if length > MAX_UPLOAD + (0 if kind in _RAW_TYPES else _FORM_SLACK):
        return too_big
    if kind in _RAW_TYPES:
        data = await request.body()
    else:
        async with request.form(max_files=1, max_fields=8) as form:
            sent = form.get("file")
            data = await sent.read(MAX_UPLOAD + 1) if isinstance(sent, UploadFile) else b""
    if len(data) > MAX_UPLOAD:
        return too_big
    if not data:
        return 400, (N_("No file"), N_("Choose the PDF or the JSON file of the document, "
                                       "then press the button."))
    return data
