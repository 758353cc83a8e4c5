"""`imager agents list|approve|pair|rename|revoke|boot-token`: the agents the
station trusts, each enrolled one at a time by its own key."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from typing import TYPE_CHECKING

from rich.table import Table
from rich.text import Text
from sqlalchemy import select

from imager.certify.record import KIND_FR
from imager.certify.withdrawal import PREFIX as WITHDRAWAL_PREFIX
from imager.cli.context import Context
from imager.cli.render import add_row, console, new_table
from imager.errors import UsageError
from imager.registry import agents
from imager.store.models import Agent

if TYPE_CHECKING:
    from imager.registry.compromise import Revocation

STATE_FR = {"active": "actif", "pending": "en attente", "revoked": "révoqué",
            "retired": "retiré (avant les clés)"}


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("agents", description="Agents de la station / the station's agents")
    asub = p.add_subparsers(dest="agents_command", metavar="ACTION", required=True)
    ls = asub.add_parser("list", help="every agent: state, key fingerprint, how enrolled")
    ls.add_argument("--pending", action="store_true", help="only agents waiting for a person")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func=cmd_list)
    ap = asub.add_parser("approve", help="accept a pending agent (compare the fingerprint "
                                         "its screen shows first)")
    ap.add_argument("agent", help="number or fingerprint")
    ap.add_argument("--by", required=True, metavar="NAME", help="who approves")
    ap.set_defaults(func=cmd_approve)
    pa = asub.add_parser("pair", help="accept the pending agent whose screen shows CODE")
    pa.add_argument("code", metavar="CODE")
    pa.add_argument("--by", required=True, metavar="NAME")
    pa.set_defaults(func=cmd_pair)
    rn = asub.add_parser("rename", help="give an agent a name of the workshop's")
    rn.add_argument("agent")
    rn.add_argument("name")
    rn.set_defaults(func=cmd_rename)
    rv = asub.add_parser("revoke", help="refuse an agent from its next request on, for good")
    rv.add_argument("agent")
    rv.add_argument("--reason", metavar="TEXT", help="why (required; kept with the agent, and "
                    "with --compromised printed on every document withdrawn)")
    rv.add_argument("--by", required=True, metavar="NAME")
    rv.add_argument("--compromised", action="store_true",
                    help="its work can no longer be trusted: list the documents resting on it "
                         "(and offer to withdraw them, on a terminal)")
    rv.add_argument("--withdraw", action="store_true",
                    help="with --compromised: withdraw them without asking (for scripts)")
    rv.set_defaults(func=cmd_revoke)
    bt = asub.add_parser("boot-token", help="a single-use token for one laptop's boot "
                                            "(bound to its MAC address and serial)")
    bt.add_argument("--mac", required=True)
    bt.add_argument("--serial", required=True)
    bt.add_argument("--minutes", type=int, default=agents.BOOT_TOKEN_MINUTES)
    bt.add_argument("--by", required=True, metavar="NAME")
    bt.set_defaults(func=cmd_boot_token)


def cmd_list(args: argparse.Namespace, ctx: Context) -> int:
    query = select(Agent).order_by(Agent.id)
    if args.pending:
        query = query.where(Agent.state == "pending")
    with ctx.registry.session(readonly=True) as s:
        rows = [agents.summary(a) for a in s.scalars(query)]
    if args.json:
        print(json.dumps(rows, ensure_ascii=False))
        return 0
    table = new_table("Agents", ("N°", "Nom / Name", "Type", "État / State",
                                 "Empreinte / Fingerprint", "Inscrit par / Enrolled by"))
    for r in rows:
        add_row(table, str(r["id"]), r["name"], r["kind"],
                STATE_FR.get(r["state"], r["state"]), r["fingerprint"] or "-",
                r["revoked"] or r["enrolled_by"] or "-")
    console().print(table)
    return 0


def cmd_approve(args: argparse.Namespace, ctx: Context) -> int:
    with ctx.registry.session() as s:
        agent = agents.find_agent(s, args.agent)
        agents.approve(s, agent, by=args.by)
        print(f"Agent {agent.id} ({agent.name}) accepté / approved")
    return 0


def cmd_pair(args: argparse.Namespace, ctx: Context) -> int:
    with ctx.registry.session() as s:
        agent = agents.pair(s, args.code, by=args.by)
        paired = f"Agent {agent.id} ({agent.name}) appairé / paired" if agent else None
    if paired is None:                  # the wrong try is counted (committed) first
        raise UsageError(agents.WRONG_CODE)
    print(paired)
    return 0


def cmd_rename(args: argparse.Namespace, ctx: Context) -> int:
    with ctx.registry.session() as s:
        agent = agents.find_agent(s, args.agent)
        agents.rename(agent, args.name)
        print(f"Agent {agent.id}: {agent.name}")
    return 0


def cmd_revoke(args: argparse.Namespace, ctx: Context) -> int:
    from imager.registry import compromise
    if not (args.reason or "").strip():
        raise UsageError("--reason manque : dites pourquoi l'agent est révoqué / --reason is "
                         "missing: say why the agent is revoked (it is kept with the agent; "
                         "with --compromised it is printed on every document withdrawn): "
                         f"imager agents revoke {args.agent} --reason TEXT --by NAME")
    if args.withdraw and not args.compromised:
        raise UsageError("--withdraw retire les documents d'un agent compromis / --withdraw "
                         "withdraws the documents of a compromised agent: add --compromised")
    rev = compromise.revoke(ctx.registry, args.agent, reason=args.reason, by=args.by,
                            compromised=args.compromised,
                            documents_dir=ctx.settings.documents_dir)
    agent = rev.agent
    print(f"Agent {agent['id']} ({agent['name']}) révoqué / revoked: refused from its next "
          "request on" if rev.newly else f"Agent {agent['id']} ({agent['name']}) déjà révoqué "
          f"/ already revoked: {agent['revoked']}")
    if args.compromised:
        _compromised(args, ctx, rev)
    return 0


def _compromised(args: argparse.Namespace, ctx: Context, rev: Revocation) -> None:
    """List what rests on the agent's work; withdraw it when asked to."""
    if not rev.resting:
        print("Aucun document ne repose sur son travail / no document rests on its work.")
        return
    console().print(resting_table(rev))
    count = len(rev.to_withdraw)
    if count == 0:
        print("Tous déjà retirés / all already withdrawn.")
        return
    answer = True if args.withdraw else _confirmed(count)
    if answer:
        _withdraw(ctx, rev)
        return
    again = (f"imager agents revoke {rev.agent['id']} --compromised --withdraw --reason "
             f"{shlex.quote(args.reason)} --by {shlex.quote(args.by)}")
    print(("Sans terminal, rien n'est retiré / without a terminal, nothing is withdrawn"
           if answer is None else "Rien n'est retiré / nothing is withdrawn")
          + f" ({count}). Pour les retirer / to withdraw them: {again}")


def _confirmed(count: int) -> bool | None:
    """The technician's answer on a terminal; None without one."""
    if not sys.stdin.isatty():
        return None
    try:
        question = "Retirer ce document ? / Withdraw this document?" if count == 1 else \
            f"Retirer ces {count} documents ? / Withdraw these {count} documents?"
        answer = input(f"{question} [o/N] ")
    except EOFError:
        return False
    return answer.strip().lower() in ("o", "oui", "y", "yes")


def _withdraw(ctx: Context, rev: Revocation) -> None:
    from imager.registry.compromise import withdraw
    from imager.registry.issue import Issuer
    for doc in withdraw(Issuer(ctx.settings, ctx.registry), rev):
        print(f"{doc.id}: retrait de / withdrawal of {doc.id.removeprefix(WITHDRAWAL_PREFIX)} "
              f"(registre n° / ledger entry {doc.seq})")
    print(f"  motif / reason: « {rev.reason} »\n"
          "Désormais `imager cert verify` les dit RETIRÉS ; donnez aux vérificateurs un nouvel "
          "export du registre / from now on `imager cert verify` says they are WITHDRAWN; give "
          "verifiers a fresh ledger export: imager ledger export --output ledger.json\n"
          "Effacez ces disques à nouveau avec un agent de confiance, puis émettez de nouveaux "
          "documents / erase these drives again with a trusted agent, then issue new "
          "documents (imager cert issue JOB, imager cert donation REF)")


def resting_table(rev: Revocation) -> Table:
    """The documents resting on a revoked agent's work, withdrawn ones said so."""
    table = new_table(f"Documents reposant sur l'agent {rev.agent['id']} ({rev.agent['name']}) "
                      "/ documents resting on its work",
                      ("Document", "Type", "Disque / Drive", "Don / Donation",
                       "Émis le / Issued", "État / State"))
    for d in rev.resting:
        w = d.withdrawn
        state = Text("à retirer / to withdraw", style="red") if w is None else (
            f"déjà retiré / already withdrawn: {w['withdrawal']}, {w['at']}, {w['by']}: "
            f"« {w['reason']} »")
        add_row(table, d.id, f"{KIND_FR.get(d.kind, d.kind)} / {d.kind}", d.drive or "-",
                d.donation or "-", d.issued_at.astimezone().strftime("%Y-%m-%d %H:%M"), state)
    return table


def cmd_boot_token(args: argparse.Namespace, ctx: Context) -> int:
    with ctx.registry.session() as s:
        token = agents.issue_boot_token(s, mac=args.mac, serial=args.serial, by=args.by,
                                        minutes=args.minutes)
    print(token)
    return 0
