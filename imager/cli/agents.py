"""`imager agents list|approve|pair|rename|revoke|boot-token`: the agents the
station trusts, each enrolled one at a time by its own key."""

from __future__ import annotations

import argparse
import json

from sqlalchemy import select

from imager.cli.context import Context
from imager.cli.render import add_row, console, new_table
from imager.errors import UsageError
from imager.registry import agents
from imager.store.models import Agent

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
    rv.add_argument("--reason", required=True, metavar="TEXT")
    rv.add_argument("--by", required=True, metavar="NAME")
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
    with ctx.registry.session() as s:
        agent = agents.find_agent(s, args.agent)
        agents.revoke(agent, reason=args.reason, by=args.by)
        print(f"Agent {agent.id} ({agent.name}) révoqué / revoked: refused from its next "
              "request on")
    return 0


def cmd_boot_token(args: argparse.Namespace, ctx: Context) -> int:
    with ctx.registry.session() as s:
        token = agents.issue_boot_token(s, mac=args.mac, serial=args.serial, by=args.by,
                                        minutes=args.minutes)
    print(token)
    return 0
