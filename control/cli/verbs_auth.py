"""`auth whoami` and `auth can-i` (kubectl's): what the server thinks of the caller.

Owns:
- ``auth whoami [-o yaml|json]``: the user, uid and groups the server authenticated (after
  ``--as``/``--as-group`` impersonation) as kubectl's ATTRIBUTE/VALUE table, or as a
  SelfSubjectReview document;
- ``auth can-i VERB RESOURCE [NAME] [-n NS | -A] [--subresource S]`` (also
  ``VERB /non-resource-url``): ``yes`` with exit code 0 or ``no`` with exit code 1, as the
  server's authorizer chain would decide the real request;
- ``auth can-i --list [-n NS]``: the rules that apply in the namespace, one line per
  resource (kubectl's Resources, Non-Resource URLs, Resource Names, Verbs table).

The pure parts (:func:`access_target`, :func:`rule_rows`) take no client and are table
tested.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from control.api import kinds
from control.cli.errors import UsageError
from control.cli.verbs_misc import table

if TYPE_CHECKING:
    from control.cli.main import Context


def register(sub: Any) -> None:
    p = sub.add_parser("auth", help="inspect authorization (whoami, can-i)")
    asub = p.add_subparsers(dest="auth_verb", metavar="VERB")
    asub.required = True
    w = asub.add_parser("whoami", help="the user, groups and uid the server sees")
    w.add_argument("-o", "--output", default="", choices=["", "yaml", "json"],
                   help="yaml or json instead of the table")
    w.set_defaults(handler=run_whoami)
    c = asub.add_parser("can-i", help="whether an action is allowed (exit code 0: yes)")
    c.add_argument("verb", nargs="?", metavar="VERB")
    c.add_argument("resource", nargs="?", metavar="RESOURCE|/URL")
    c.add_argument("name", nargs="?", metavar="NAME")
    c.add_argument("-A", "--all-namespaces", action="store_true",
                   help="ask about every namespace")
    c.add_argument("--subresource", default="", help="the subresource (log, status, scale)")
    c.add_argument("--list", action="store_true", help="the rules that apply in the namespace")
    c.add_argument("-q", "--quiet", action="store_true", help="only the exit code")
    c.add_argument("--no-headers", action="store_true", help="--list without the header")
    c.set_defaults(handler=run_can_i)


# -- whoami --------------------------------------------------------------------------------


def whoami_rows(username: str, uid: str, groups: Sequence[str]) -> list[list[str]]:
    rows = [["Username", username]]
    if uid:
        rows.append(["UID", uid])
    if groups:
        rows.append(["Groups", "[" + " ".join(groups) + "]"])
    return rows


def whoami_document(username: str, uid: str, groups: Sequence[str]) -> dict[str, Any]:
    user: dict[str, Any] = {"username": username}
    if uid:
        user["uid"] = uid
    if groups:
        user["groups"] = list(groups)
    return {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview",
            "metadata": {}, "status": {"userInfo": user}}


async def run_whoami(ctx: Context, args: argparse.Namespace) -> int:
    from control.cli import printers

    client = await ctx.client()
    me = await client.whoami()
    if args.output:
        doc = whoami_document(me.username, me.uid, list(me.groups))
        dump = printers.dump_json if args.output == "json" else printers.dump_yaml
        ctx.stdout.write(dump(doc))
        return 0
    ctx.stdout.write(table(["ATTRIBUTE", "VALUE"], whoami_rows(me.username, me.uid,
                                                               list(me.groups))))
    return 0


# -- can-i ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class AccessTarget:
    resource: str = ""
    group: str = ""
    subresource: str = ""
    namespaced: bool = True
    path: str = ""
    known: bool = True


def access_target(resource: str, subresource: str = "") -> AccessTarget:
    """What ``can-i``'s RESOURCE argument asks about: a non-resource URL (``/logs``), every
    resource (``*``), a kind by any of its names (``pod``, ``deploy``,
    ``deployments.apps``, ``pods/log``), or a resource the CLI does not know (asked as
    given, ``plural.group`` split; ``known`` False for a warning)."""
    if resource.startswith("/"):
        if subresource:
            raise UsageError("--subresource can not be used with a non-resource URL")
        return AccessTarget(path=resource)
    base, slash, sub = resource.partition("/")
    if slash and subresource:
        raise UsageError(f"--subresource {subresource!r} and the subresource of {resource!r} "
                         "both given: use one")
    sub = sub or subresource
    if base == "*":
        return AccessTarget("*", "*", sub)
    try:
        info = kinds.resolve(base)
    except KeyError:
        plural, _, group = base.partition(".")
        return AccessTarget(plural, group, sub, known=False)
    return AccessTarget(info.plural, info.group, sub, info.namespaced)


async def run_can_i(ctx: Context, args: argparse.Namespace) -> int:
    if args.all_namespaces and ctx.explicit_namespace:
        raise UsageError("-A and -n cannot be used together")
    namespace = "" if args.all_namespaces else ctx.namespace
    if args.list:
        if args.verb or args.resource:
            raise UsageError("--list takes no VERB or RESOURCE")
        return await _list(ctx, namespace, args.no_headers)
    if not args.verb or not args.resource:
        raise UsageError("you must specify two arguments: verb resource or verb "
                         "resource/resourceName")
    target = access_target(args.resource, args.subresource)
    name = args.name or ""
    if target.path and name:
        raise UsageError("a non-resource URL takes no NAME")
    if not target.known:
        ctx.warn(f"the server doesn't have a resource type '{target.resource}'")
    if not target.namespaced:
        namespace = ""  # as kubectl: a cluster-scoped kind is asked about without one
    client = await ctx.client()
    allowed = await client.access_review(
        args.verb, target.resource, group=target.group, subresource=target.subresource,
        namespace="" if target.path else namespace, name=name, path=target.path)
    if not args.quiet:
        ctx.out("yes" if allowed else "no")
    return 0 if allowed else 1


def _combine(resource: str, group: str) -> str:
    """kubectl's Resources column: ``deployments.apps``, ``pods/log``, ``*.*``."""
    base, slash, sub = resource.partition("/")
    return base + (f".{group}" if group else "") + (f"/{sub}" if slash else "")


def _bracket(xs: Iterable[str]) -> str:
    return "[" + " ".join(xs) + "]"


def rule_rows(resource_rules: Iterable[Any], url_rules: Iterable[Any]) -> list[list[str]]:
    """kubectl's ``can-i --list`` lines: each rule broken down to one resource (and one
    resource name), lines for the same resource and names merged with their verbs
    united, sorted; then each non-resource URL."""
    verbs: dict[tuple[str, str], list[str]] = {}
    for r in resource_rules:
        names = list(r.resource_names) or [""]
        for g in r.api_groups:
            for res in r.resources:
                for n in names:
                    have = verbs.setdefault((_combine(res, g), n), [])
                    have += [v for v in r.verbs if v not in have]
    rows = [[res, "[]", _bracket([n] if n else []), _bracket(vs)]
            for (res, n), vs in sorted(verbs.items())]
    url_verbs: dict[str, list[str]] = {}
    for u in url_rules:
        for url in u.non_resource_urls:
            have = url_verbs.setdefault(url, [])
            have += [v for v in u.verbs if v not in have]
    rows += [["", _bracket([url]), "[]", _bracket(vs)] for url, vs in sorted(url_verbs.items())]
    return rows


async def _list(ctx: Context, namespace: str, no_headers: bool) -> int:
    client = await ctx.client()
    reply = await client.rules_review(namespace)
    ctx.stdout.write(table(["Resources", "Non-Resource URLs", "Resource Names", "Verbs"],
                           rule_rows(reply.resource_rules, reply.non_resource_rules),
                           no_headers))
    if reply.incomplete:
        ctx.warn("the list may be incomplete: an authorizer cannot list its rules "
                 "(ask about one action with can-i VERB RESOURCE)")
    return 0
