"""PDF renderings of certificate records (WeasyPrint, HTML/CSS templates).

A record is plain JSON data (certificates/schema/); the PDF is its readable
face: one A4 page per drive, a summary plus a table for a donation. The
signed JSON travels inside the PDF as an attachment; the PAdES signature is
added afterwards by the signing module, never here.

Templates live in certificates/templates/ (Jinja2, autoescaped); the words
come from imager.certify.labels. No network: only file: and data: URLs load.
The Jinja environment, the font configuration and the stylesheet are built
once per process: a warm one-drive render takes ~0.13 s when WeasyPrint can
subset fonts with HarfBuzz (Debian: libharfbuzz-subset0), ~0.35 s when it
falls back to fontTools; 500 drives in a donation take ~4 s on two cores.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

import segno
from jinja2 import Environment, FileSystemLoader, Undefined, pass_context
from markupsafe import Markup
from weasyprint import CSS, HTML, Attachment, Document
from weasyprint.text.fonts import FontConfiguration
from weasyprint.urls import URLFetcher

from imager.certify import labels as L

TEMPLATES = Path(__file__).resolve().parents[2] / "certificates" / "templates"
Attachments = list[tuple[str, bytes, str]]  # (file name, content, description)
MAX_ERRORS = 10
MAX_ROWS = 8          # passes, refused methods, hidden-area actions shown on a drive page
CLIP = 300            # characters of free text shown on a drive page (full text in the JSON)
CLIP_COMPACT = 50
OFFLINE_COMMAND = "imager cert verify <file> --trust station.pem"


# -- cached machinery ------------------------------------------------------------

@lru_cache(maxsize=1)
def _fonts() -> FontConfiguration:
    return FontConfiguration()


@lru_cache(maxsize=1)
def _fetcher() -> URLFetcher:
    return URLFetcher(allowed_protocols={"file", "data"})


@lru_cache(maxsize=1)
def _stylesheet() -> CSS:
    return CSS(filename=str(TEMPLATES / "base.css"), font_config=_fonts(),
               url_fetcher=_fetcher())


class _Env(Environment):
    """Dot access on a record reads its keys only (`summary.clear` is the
    key, not dict.clear)."""

    def getattr(self, obj: Any, attribute: str) -> Any:
        if isinstance(obj, dict):
            return self.getitem(obj, attribute)
        return super().getattr(obj, attribute)


def _bind(fn: Callable[..., str]) -> Callable[..., str]:
    @pass_context
    def apply(ctx: Any, value: Any, *args: Any) -> str:
        return fn(None if isinstance(value, Undefined) else value, ctx.get("lang", "fr"), *args)
    return apply


def _value(value: Any, lang: str, limit: int | None = None) -> str:
    """Free text as printed: 'non renseigné' when missing, clipped when too long."""
    if L.missing(value):
        return L.text("na", lang)
    out = str(value)
    return out if limit is None or len(out) <= limit else out[:limit - 1].rstrip() + "…"


@pass_context
def _clipped(ctx: Any, value: Any, limit: int | None = None) -> str:
    value = None if isinstance(value, Undefined) else value
    if isinstance(value, Markup):  # already escaped (e.g. by join): print its text once
        value = value.unescape()
    clip = ctx.get("clip")
    limit = min(limit, clip) if limit and clip else limit or clip
    return _value(value, ctx.get("lang", "fr"), limit)


@pass_context
def _whole(ctx: Any, value: Any) -> str:
    """Identifiers and hashes: never clipped."""
    value = None if isinstance(value, Undefined) else value
    return _value(value, ctx.get("lang", "fr"))


FILTERS: dict[str, Callable[..., str]] = {
    "t": lambda key, lang: L.text(key, lang), "tc": lambda key, lang: L.label(key, lang),
    "w": lambda code, lang, category: L.word(category, code, lang),
    "capacity": L.capacity, "size": L.size, "num": L.number, "pct": L.percent,
    "dur": L.duration, "rate": L.throughput, "day": L.day, "moment": L.moment,
    "pattern": L.pattern, "period": lambda start, lang, end: L.period(start, end, lang),
}


@lru_cache(maxsize=1)
def _env() -> Environment:
    env = _Env(loader=FileSystemLoader(str(TEMPLATES)), autoescape=True, trim_blocks=True,
               lstrip_blocks=True, auto_reload=False)
    env.filters.update({name: _bind(fn) for name, fn in FILTERS.items()})
    env.filters["val"] = _clipped
    env.filters["whole"] = _whole
    env.filters["cap"] = _cap
    return env


# -- shared pieces ----------------------------------------------------------------

def qr_text(record_id: str, sha256: str, verify_url: str) -> str:
    """What the QR code says: the verify URL with id and hash, or imager:<id>:<sha256>."""
    if not verify_url:
        return f"imager:{record_id}:{sha256}"
    sep = "&" if "?" in verify_url else "?"
    return f"{verify_url}{sep}id={record_id}&sha256={sha256}"


def qr_data_uri(content: str) -> str:
    """A 1-pixel-per-module PNG (quiet zone included), drawn crisp by the CSS."""
    return segno.make(content, error="m", micro=False).png_data_uri(scale=1, border=4)


def _obj(value: Any) -> dict[str, Any]:
    """A record block, or {} when it is missing or malformed."""
    return value if isinstance(value, dict) else {}


def _issued(record: dict[str, Any]) -> datetime:
    return L.parse_datetime(record.get("issued_at")) or datetime(2000, 1, 1, tzinfo=UTC)


def _context(record: dict[str, Any], sha256: str, verify_url: str,
             attachments: Attachments) -> dict[str, Any]:
    rid = str(record.get("id") or "")
    qr = qr_text(rid, sha256, verify_url)
    return {"r": record, "lang": L.lang_of(record.get("language")), "sha256": sha256,
            "verify_url": verify_url, "qr_text": qr, "qr": qr_data_uri(qr), "clip": CLIP,
            "offline": OFFLINE_COMMAND, "max_rows": MAX_ROWS,
            "attached": [name for name, _, _ in attachments]}


def _document(html: str) -> Document:
    return HTML(string=html, base_url=TEMPLATES.as_uri() + "/", url_fetcher=_fetcher()).render(
        stylesheets=[_stylesheet()], font_config=_fonts())


def _write(doc: Document, attachments: Attachments, when: datetime) -> bytes:
    files = [Attachment(string=content, name=name, description=description,
                        created=when, modified=when)
             for name, content, description in attachments]
    pdf: bytes = doc.write_pdf(attachments=files)
    return pdf


def render_html(template: str, context: dict[str, Any]) -> str:
    """The HTML a PDF is made from (for tests and for the web preview)."""
    return _env().get_template(template).render(context)


# -- drive documents --------------------------------------------------------------

def _witness(record: dict[str, Any], lang: str) -> str:
    witness = _obj(_obj(record.get("sanitization")).get("witness"))
    name = _value(witness.get("name"), lang, 80)
    return f"{name} ({_value(witness['title'], lang, 80)})" if witness.get("title") else name


def _validation(record: dict[str, Any], lang: str) -> str:
    words = L.word("validation", _obj(record.get("validated_by")).get("method"), lang)
    ver = _obj(record.get("verification"))
    if ver.get("mode") == "sample":
        cover = "couverture" if lang == "fr" else "coverage"
        words += f" ({cover} {L.percent(ver.get('coverage'), lang)})"
    return words


def drive_sentence(record: dict[str, Any], lang: str) -> str:
    """What was done, in one or two plain sentences."""
    kind = record.get("kind")
    san = _obj(record.get("sanitization"))
    timing = _obj(record.get("timing"))
    cls = san.get("method_type")
    fields = {
        "date": L.day(timing.get("ended_at") or record.get("issued_at"), lang),
        "cls": L.word("class", cls, lang), "technique": L.word("technique", san.get("technique"),
                                                                lang),
        "verification": _validation(record, lang), "witness": _witness(record, lang),
        "meaning": L.word("class_meaning", cls, lang) if cls in L.WORDS["class_meaning"] else "",
    }
    template = L.SENTENCE.get(str(kind), L.SENTENCE["non-erasure"])
    return L.pick(template, lang).format(**fields).strip()


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


def _evidence_line(code: Any, record: dict[str, Any], lang: str) -> str:
    """One item of what the result rests on, in words with the record's facts."""
    san, ver = _obj(record.get("sanitization")), _obj(record.get("verification"))
    canary = _obj(san.get("canary"))
    passes = [p for p in san.get("passes") or [] if isinstance(p, dict)]
    first = passes[0] if passes else {}
    facts = {"n": len(passes), "size": L.size(_obj(record.get("media")).get("capacity_bytes"),
                                               lang),
             "command": _value(first.get("pattern"), lang),
             "planted": L.number(canary.get("planted"), lang),
             "survivors": L.number(canary.get("survivors"), lang),
             "mode": _cap(L.word("verification", ver.get("mode"), lang)),
             "coverage": L.percent(ver.get("coverage"), lang),
             "pattern": L.pattern(ver.get("pattern"), lang)}
    key = f"ev.{code}"
    return L.text(key, lang).format(**facts) if key in L.TEXT else str(code)


def evidence_lines(record: dict[str, Any], lang: str) -> dict[str, list[str]]:
    """What the result rests on, in words: proven by the station, reported by the drive."""
    ev = _obj(record.get("evidence"))
    return {part: [_evidence_line(code, record, lang) for code in ev.get(part) or []]
            for part in ("proven", "reported")}


def advice_lines(record: dict[str, Any], lang: str) -> list[str]:
    """The plan's advice in the record's language (French when it has no English)."""
    notes = [n for n in record.get("advice") or [] if isinstance(n, dict)]
    lines = [str(n.get(lang) or n.get("fr")) for n in notes if n.get(lang) or n.get("fr")]
    return [L.french_spaces(x) for x in lines] if lang == "fr" else lines


# Tried in order until the drive fits on one page: fixed two columns (fastest),
# balanced columns, balanced columns whose sections may split between them,
# then balanced columns in smaller type with shorter texts.
LAYOUTS: tuple[dict[str, Any], ...] = (
    {},
    {"balanced": True},
    {"balanced": True, "split": True},
    {"balanced": True, "compact": True, "clip": CLIP_COMPACT, "max_rows": 2, "max_errors": 4},
)


def render_drive_pdf(record: dict[str, Any], *, sha256: str, verify_url: str,
                     attachments: Attachments) -> bytes:
    """One A4 page stating what happened to one drive (erasure, failed erasure or
    destruction), with a QR code to verify it; `attachments` are embedded."""
    ctx = _context(record, sha256, verify_url, attachments)
    lang, kind = ctx["lang"], record.get("kind")
    errors = [e for e in record.get("errors") or [] if isinstance(e, dict)]
    ctx.update(sentence=drive_sentence(record, lang),
               title=L.text(f"title.{kind if kind in L.KINDS else 'non-erasure'}", lang),
               evidence=evidence_lines(record, lang), advice=advice_lines(record, lang))
    for layout in LAYOUTS:
        shown = layout.get("max_errors", MAX_ERRORS)
        doc = _document(render_html("drive.html", {
            **ctx, **layout, "errors": errors[:shown],
            "errors_more": max(0, len(errors) - shown)}))
        if len(doc.pages) == 1:
            break
    return _write(doc, attachments, _issued(record))


# -- donation documents -----------------------------------------------------------

CSV_COLUMNS = ("n", "certificate", "kind", "sha256", "manufacturer", "model", "serial",
               "capacity_bytes", "capacity", "media_type", "class", "technique", "method",
               "verification", "result", "destination", "date")


def _csv_row(n: int, drive: dict[str, Any], lang: str) -> list[str]:
    def raw(key: str) -> str:
        return "" if drive.get(key) is None else str(drive[key])

    def words(category: str, key: str) -> str:
        return "" if L.missing(drive.get(key)) else L.word(category, drive[key], lang)

    size = drive.get("capacity_bytes")
    return [str(n), raw("certificate"), words("kind", "kind"), raw("sha256"),
            raw("manufacturer"), raw("model"), raw("serial"), raw("capacity_bytes"),
            L.size(size, lang) if isinstance(size, int) else "", words("media_type", "media_type"),
            words("class", "method_type"), words("technique", "technique"), raw("method"),
            words("verification", "verification"), words("result", "result"),
            words("destination_short", "destination"), raw("date")]


def safe_cell(value: str) -> str:
    """Keep a spreadsheet from running a cell (a drive's model string, a donor's text)
    as a formula."""
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value


def donation_csv(record: dict[str, Any]) -> bytes:
    """The donation's drive table as CSV: UTF-8, ';' separated, header in the
    record's language, CRLF line ends, one row per drive in record order.
    Deterministic: the donation record's csv_sha256 is the sha256 of these bytes."""
    lang = L.lang_of(record.get("language"))
    out = io.StringIO()
    writer = csv.writer(out, delimiter=";", lineterminator="\r\n")
    writer.writerow([L.text(f"col.{c}", lang) for c in CSV_COLUMNS])
    for n, drive in enumerate(record.get("drives") or [], start=1):
        writer.writerow([safe_cell(v) for v in _csv_row(n, _obj(drive), lang)])
    return out.getvalue().encode("utf-8")


def donation_sentence(record: dict[str, Any], lang: str) -> str:
    drives = _obj(record.get("summary")).get("drives", len(record.get("drives") or []))
    return L.pick(L.SENTENCE["donation"], lang).format(
        donor=_value(_obj(record.get("donor")).get("name"), lang, 120), n=drives,
        issuer=_value(_obj(record.get("issuer")).get("organisation"), lang, 120))


def render_donation_pdf(record: dict[str, Any], *, sha256: str, verify_url: str,
                        attachments: Attachments) -> bytes:
    """A summary page (donor, totals, what the documents mean, QR) then the
    table of every drive, header repeated on each page."""
    ctx = _context(record, sha256, verify_url, attachments)
    ctx.update(sentence=donation_sentence(record, ctx["lang"]),
               title=L.text("title.donation", ctx["lang"]),
               drives=[_obj(d) for d in record.get("drives") or []])
    doc = _document(render_html("donation.html", ctx))
    return _write(doc, attachments, _issued(record))
