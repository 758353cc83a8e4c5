"""What the laptop's own screen says at each stage of the live system, in French.

For the person at the bench, who may not read easily (FALC): a title, a few
short sentences (what happens, what to do), a pairing code in large spaced
letters when a technician must type it, a progress bar during a job; then, at
the bottom, the technical details the workshop's manager asks for (station,
address, error code).

    panel(stage, fields) -> Panel            pure: the text of a stage
    render(panel, columns=64, rows=24) -> str   the ANSI text for the console (tty1)

`stage` is a serial stage (`imager.boot.stages`) or SEARCHING (the network is
being looked for); `fields` are that stage's values (reason=, code=, ip=...)."""

from __future__ import annotations

import textwrap
from collections.abc import Mapping
from dataclasses import dataclass

from imager.boot import stages

SEARCHING = "network-search"          # screen only: DHCP under way

CALL = "Si cela recommence, appelez le responsable de l'atelier."
RESTART = "Puis redémarrez l'ordinateur."
WAIT = "Attendez, s'il vous plaît."
SWITCH_OFF = ("Éteignez l'ordinateur.", "Pour cela, appuyez longtemps sur le bouton marche.")
BRING_BACK = "Rapportez l'ordinateur et la clé USB à l'atelier."

# Title bar colours (Linux console SGR): bold white on blue or red, black on yellow
# or green (bold black would be grey there).
TONES = {"info": "1;44;97", "wait": "43;30", "ok": "42;30", "error": "1;41;97"}


@dataclass(frozen=True)
class Panel:
    """One screen: `tone` is info, wait, ok or error."""

    tone: str
    title: str
    lines: tuple[str, ...]
    code: str | None = None            # shown large: a technician types it
    percent: float | None = None       # a progress bar (jobs)
    details: tuple[str, ...] = ()      # small print for the workshop's manager


def panel(stage: str, fields: Mapping[str, str] | None = None) -> Panel:
    """The screen for `stage` with its `fields` (see the module's docstring)."""
    f = dict(fields or {})
    build = _BUILDERS.get(stage)
    if build is None:
        return Panel("info", "Système de l'atelier", (WAIT,), details=_details(f))
    made = build(f)
    return Panel(made.tone, made.title, made.lines, made.code, made.percent,
                 _details(f))


def _start(f: dict[str, str]) -> Panel:
    return Panel("info", "Démarrage", (
        "L'ordinateur démarre le système de l'atelier.", WAIT))


def _searching(f: dict[str, str]) -> Panel:
    return Panel("info", "Recherche du réseau", (
        "L'ordinateur cherche le réseau de l'atelier.",
        "Le câble réseau doit rester branché.", WAIT))


def _network(f: dict[str, str]) -> Panel:
    return Panel("info", "Réseau trouvé", (
        "L'ordinateur est connecté au réseau.", "Il appelle la station.", WAIT))


def _agent_started(f: dict[str, str]) -> Panel:
    return Panel("info", "Appel de la station", (
        "L'ordinateur appelle la station de l'atelier.", WAIT))


_NETWORK_FAILED = {
    stages.NO_CARRIER: ("Pas de câble réseau", (
        "L'ordinateur ne trouve pas de réseau.", "Vérifiez le câble réseau.",
        "Il doit être branché des deux côtés.", "Ensuite, l'ordinateur continue tout seul.",
        "Si rien ne se passe, appelez le responsable de l'atelier.")),
    stages.NO_INTERFACE: ("Pas de prise réseau", (
        "L'ordinateur ne trouve pas sa prise réseau.",
        "Essayez un adaptateur réseau USB.", RESTART, CALL)),
    stages.NO_DHCP: ("Le réseau ne répond pas", (
        "Le réseau ne donne pas d'adresse à l'ordinateur.",
        "Vérifiez que le câble va au réseau de l'atelier.", RESTART, CALL)),
}


def _network_failed(f: dict[str, str]) -> Panel:
    title, lines = _NETWORK_FAILED.get(f.get("reason", ""), _NETWORK_FAILED[stages.NO_DHCP])
    return Panel("error", title, lines)


_FAILED = {
    stages.STATION_UNREACHABLE: ("La station ne répond pas", (
        "La station ne répond pas.", "Vérifiez le câble réseau.", RESTART, CALL,
        "L'ordinateur continue d'essayer en attendant.")),
    stages.STATION_NOT_TRUSTED: ("Station inconnue", (
        "La station n'est pas celle de l'atelier.",
        "Par sécurité, l'ordinateur ne lui envoie rien.",
        "Appelez le responsable de l'atelier.")),
    stages.STATION_REFUSED: ("La station refuse cet ordinateur", (
        "La station n'accepte pas cet ordinateur.",
        "Redémarrez l'ordinateur depuis le réseau de l'atelier.", CALL)),
    stages.NO_STATION: ("Station inconnue", (
        "L'ordinateur ne sait pas quelle station appeler.",
        "Redémarrez l'ordinateur depuis le réseau de l'atelier.", CALL)),
    stages.NO_STATION_CA: ("Clé de sécurité absente", (
        "L'ordinateur n'a pas reçu la clé de sécurité de la station.",
        "Redémarrez l'ordinateur depuis le réseau de l'atelier.", CALL)),
    # from a USB stick, offline: the stick is synced and unmounted before these show
    stages.NO_STICK: ("Clé USB illisible", (
        "L'ordinateur ne peut pas lire la clé USB.", *SWITCH_OFF,
        "Branchez la clé sur un autre port USB.", "Puis rallumez l'ordinateur.", CALL)),
    stages.ERASE_FAILED: ("Un disque n'est pas effacé", (
        "Un disque n'a pas pu être effacé.", "Ne donnez pas cet ordinateur.", *SWITCH_OFF,
        BRING_BACK, "Le responsable de l'atelier décidera.")),
    stages.IMAGE_FAILED: ("Système non installé", (
        "Les disques sont effacés et vérifiés.", "Le système n'a pas pu être installé.",
        *SWITCH_OFF, BRING_BACK, "Le responsable de l'atelier installera le système.")),
    stages.NO_DRIVE: ("Aucun disque trouvé", (
        "L'ordinateur ne trouve pas de disque à effacer.", "Rien n'a été effacé.",
        *SWITCH_OFF, BRING_BACK, "Le responsable de l'atelier regardera.")),
}
_STOPPED = ("Le programme s'est arrêté", (
    "Le programme de l'atelier s'est arrêté.", "Redémarrez l'ordinateur.", CALL))


def _failed(f: dict[str, str]) -> Panel:
    title, lines = _FAILED.get(f.get("reason", ""), _STOPPED)
    return Panel("error", title, lines)


def _pending(f: dict[str, str]) -> Panel:
    return Panel("wait", "Un technicien doit accepter cet ordinateur", (
        "Donnez ce code au technicien :", "Il le tape sur la station.",
        "Ensuite, l'ordinateur continue tout seul."), code=f.get("code") or "?")


def _enrolled(f: dict[str, str]) -> Panel:
    return Panel("ok", "Ordinateur accepté", (
        "La station a accepté cet ordinateur.", "Elle prépare le travail.",
        "N'éteignez pas l'ordinateur."))


_JOBS = {
    "erase": ("Effacement des disques", "L'ordinateur efface ses disques."),
    "image": ("Installation du système", "L'ordinateur reçoit son nouveau système."),
}
# The bar starts again at each step: the step is said above it.
_STEPS = {
    ("erase", "pass"): "Étape 1 : effacement.", ("erase", "verify"): "Étape 2 : vérification.",
    ("image", "write"): "Étape 1 : copie du système.",
    ("image", "verify"): "Étape 2 : vérification.",
}


def _job(f: dict[str, str]) -> Panel:
    kind = f.get("kind", "")
    title, what = _JOBS.get(kind, ("Travail en cours", "L'ordinateur travaille."))
    try:
        percent: float | None = max(0.0, min(100.0, float(f.get("percent", ""))))
    except ValueError:
        percent = None
    step = _STEPS.get((kind, f.get("phase", "")))
    return Panel("info", title, (what, "N'éteignez pas l'ordinateur.", "Ne débranchez rien.",
                                 *((step,) if step else ())), percent=percent)


def _stick(f: dict[str, str]) -> Panel:
    return Panel("info", "Clé USB trouvée", (
        "L'ordinateur a trouvé la clé USB de l'atelier.", "Laissez la clé branchée.", WAIT))


def _offline(f: dict[str, str]) -> Panel:
    return Panel("info", "Travail sans réseau", (
        "L'ordinateur travaille sans la station.", "Il va effacer ses disques.",
        "Laissez la clé USB branchée.", "N'éteignez pas l'ordinateur."))


def _offline_done(f: dict[str, str]) -> Panel:
    installed = ("Système installé.",) if f.get("installed", "0") != "0" else ()
    return Panel("ok", "Travail terminé", (
        "Effacement terminé et vérifié.", *installed, "Éteignez l'ordinateur.",
        "Retirez la clé et rapportez-la à la station.",
        "Si vous ne faites rien, l'ordinateur s'éteint tout seul dans une minute."))


def _poweroff(f: dict[str, str]) -> Panel:
    return Panel("ok", "Arrêt", (
        "L'ordinateur s'éteint.", "Retirez la clé et rapportez-la à la station."))


def _done(f: dict[str, str]) -> Panel:
    if f.get("boot") == "usb":          # restarted, it would boot the stick again
        return Panel("ok", "Travail terminé", (
            "L'atelier a fini son travail sur cet ordinateur.",
            "L'ordinateur s'éteint tout seul.", "Ensuite, retirez la clé USB.",
            "Rapportez la clé à la station."))
    return Panel("ok", "Travail terminé", (
        "L'atelier a fini son travail sur cet ordinateur.",
        "L'ordinateur redémarre tout seul.", "Ne touchez à rien."))


_BUILDERS = {
    stages.START: _start, SEARCHING: _searching, stages.NETWORK: _network,
    stages.NETWORK_FAILED: _network_failed, stages.AGENT_STARTED: _agent_started,
    stages.FAILED: _failed, stages.PENDING: _pending, stages.ENROLLED: _enrolled,
    stages.JOB: _job, stages.STICK: _stick, stages.OFFLINE: _offline,
    stages.OFFLINE_DONE: _offline_done, stages.POWEROFF: _poweroff, stages.DONE: _done,
}

_DETAIL_NAMES = (("station", "Station"), ("stick", "Clé USB"), ("ip", "Adresse"),
                 ("mac", "MAC"), ("agent", "Agent"), ("job", "Tâche"), ("reason", "Code"))


def _details(f: Mapping[str, str]) -> tuple[str, ...]:
    return tuple(f"{label} : {f[key]}" for key, label in _DETAIL_NAMES if f.get(key))


def spaced(code: str) -> str:
    """A pairing code letter by letter, easy to read aloud: `7 K 3 Q - 9 X 2 M`."""
    return " ".join(code.strip().upper())


def render(p: Panel, *, columns: int = 64, rows: int = 24) -> str:
    """The console text of `p`: cleared screen, cursor hidden, a coloured title
    bar, the sentences in bright letters wrapped to `columns` (a blank line
    between them when the screen has room), the details on the last rows."""
    width = max(20, columns - 4)
    head = ["\033[2J\033[H\033[?25l\033[0m", ""]
    for row in textwrap.wrap(f"  {p.title}", columns) or [""]:
        head.append(f"\033[{TONES.get(p.tone, TONES['info'])}m{row.ljust(columns)}\033[0m")
    small = ["  \033[2m" + row + "\033[0m" for d in p.details for row in textwrap.wrap(d, width)]
    for spaced_out in (True, False):
        body = _body(p, width, spaced_out)
        if len(head) + len(body) + len(small) + 2 <= rows:
            break
    gap = rows - len(head) - len(body) - len(small) - 1
    return "\n".join([*head, *body, *[""] * max(1, gap), *small])


def _body(p: Panel, width: int, spaced_out: bool) -> list[str]:
    out = [""]
    for sentence in p.lines:
        out += ["  \033[1m" + row + "\033[0m" for row in textwrap.wrap(sentence, width)]
        if sentence.endswith(":") and p.code:
            out += ["", f"    \033[1;44;97m   {spaced(p.code)}   \033[0m", ""]
        elif spaced_out:
            out.append("")
    if p.percent is not None:
        done = round((width - 8) * p.percent / 100)
        out += ["", f"  [{'#' * done}{'.' * (width - 8 - done)}] {p.percent:3.0f} %"]
    return out


def plain(p: Panel) -> str:
    """The panel's text without colours or layout (logs, tests)."""
    code = [spaced(p.code)] if p.code else []
    bar = [f"{p.percent:.0f} %"] if p.percent is not None else []
    return "\n".join((p.title, *p.lines, *code, *bar, *p.details))
