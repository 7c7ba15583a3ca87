"""`token create|list|delete` (join tokens, kubeadm's and k3s' verbs), `certificate
approve|deny` (kubectl's, for CertificateSigningRequests) and `config view`.

Owns:
- ``token create [--ttl 24h] [--description TEXT]``: a bootstrap-token Secret in
  kube-system; prints the token once, in k3s' secure format (``K10<CA hash>::<id>.<secret>``,
  the hash of the CA the server publishes in ``kube-public/cluster-info``);
- ``token list``: id, time to live, expiry, description (never the secret);
- ``token delete ID|TOKEN...``: the Secret goes, and with it the token;
- ``certificate approve|deny NAME...``: an Approved or Denied condition on requests the
  controller manager does not approve by itself (the signer then signs approved ones);
- ``config view``: the client config in effect, without keys or tokens.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from control.api import errors as api_errors
from control.api import timeutil
from control.cli.errors import CliError, UsageError
from control.cli.verbs_misc import table
from control.cli.verbs_server import duration
from control.client import config as client_config
from control.client import tokens
from control.client.csr import set_condition

if TYPE_CHECKING:
    from control.cli.main import Context


def register(sub: Any) -> None:
    p = sub.add_parser("token", help="join tokens for agents (create, list, delete)")
    tsub = p.add_subparsers(dest="token_verb", metavar="VERB")
    tsub.required = True
    c = tsub.add_parser("create", help="a new join token, printed once")
    c.add_argument("--ttl", type=duration, default=24 * 3600.0, metavar="DURATION",
                   help="time until the token expires, 0 for never (default 24h)")
    c.add_argument("--description", default="", help="what the token is for")
    c.set_defaults(handler=run_create)
    ls = tsub.add_parser("list", help="the join tokens (without their secrets)")
    ls.set_defaults(handler=run_list)
    d = tsub.add_parser("delete", help="delete join tokens (by id or whole token)")
    d.add_argument("tokens", nargs="+", metavar="ID|TOKEN")
    d.set_defaults(handler=run_delete)

    p = sub.add_parser("certificate", help="approve or deny CertificateSigningRequests")
    csub = p.add_subparsers(dest="certificate_verb", metavar="VERB")
    csub.required = True
    for verb in ("approve", "deny"):
        a = csub.add_parser(verb, help=f"{verb} certificate signing requests")
        a.add_argument("names", nargs="+", metavar="NAME")
        a.add_argument("--force", action="store_true",
                       help="change a request that is already approved or denied")
        a.set_defaults(handler=run_certificate, condition="Approved" if verb == "approve"
                       else "Denied")

    p = sub.add_parser("config", help="the client configuration")
    csub = p.add_subparsers(dest="config_verb", metavar="VERB")
    csub.required = True
    v = csub.add_parser("view", help="the config file in effect, keys and tokens redacted")
    v.set_defaults(handler=run_view)


async def _ca_pem(ctx: Context) -> bytes:
    client = await ctx.client()
    try:
        info: Any = await client.get("configmaps", "cluster-info", "kube-public")
        pem = info.data.get("ca.crt", "")
        if pem:
            return str(pem).encode()
    except api_errors.NotFound:
        pass
    ca = ctx.client_config().credentials.ca_pem
    if not ca:
        raise CliError("cannot tell the cluster's CA (kube-public/cluster-info is missing "
                       "and the config has no certificate-authority)")
    return ca


async def run_create(ctx: Context, args: argparse.Namespace) -> int:
    if args.ttl < 0:
        raise UsageError("--ttl must not be negative")
    client = await ctx.client()
    ca = await _ca_pem(ctx)
    for _ in range(5):
        token_id, secret = tokens.generate()
        try:
            await client.create(tokens.token_secret(token_id, secret, ttl_seconds=args.ttl,
                                                    description=args.description))
        except api_errors.AlreadyExists:
            continue  # 36^6 ids: a collision is rare, another draw fixes it
        ctx.out(tokens.secure_format(ca, token_id, secret))
        return 0
    raise CliError("could not find a free token id")


async def run_list(ctx: Context, args: argparse.Namespace) -> int:
    client = await ctx.client()
    listed = await client.list_all("secrets", tokens.NAMESPACE)
    rows = []
    for s in sorted(listed.items, key=lambda s: s.metadata.name):
        if not tokens.is_token_secret(s):
            continue
        left = tokens.expires_in(s)
        ttl = "<forever>" if left is None else (
            "<invalid>" if left <= 0 else timeutil.human_age(left))
        expires = tokens.field(s, "expiration") or "<never>"
        rows.append([tokens.field(s, "token-id") or s.metadata.name[len(tokens.PREFIX):],
                     ttl, expires, tokens.field(s, "description") or "<none>"])
    if not rows:
        print("No join tokens found.", file=ctx.stderr)
        return 0
    ctx.out(table(["ID", "TTL", "EXPIRES", "DESCRIPTION"], rows).rstrip("\n"))
    return 0


async def run_delete(ctx: Context, args: argparse.Namespace) -> int:
    client = await ctx.client()
    failed = 0
    for text in args.tokens:
        token_id = text.rpartition("::")[2].partition(".")[0]
        if not tokens.ID_RE.match(token_id):
            ctx.error(f"{text!r} is not a token or token id ([a-z0-9]{{6}})")
            failed += 1
            continue
        try:
            await client.delete("secrets", tokens.PREFIX + token_id, tokens.NAMESPACE)
        except api_errors.NotFound:
            ctx.error(f'join token "{token_id}" not found')
            failed += 1
            continue
        ctx.out(f"bootstrap token \"{token_id}\" deleted")
    return 1 if failed else 0


async def run_view(ctx: Context, args: argparse.Namespace) -> int:
    path = client_config.config_path(ctx.opts.config)
    if path is None:
        raise CliError(f"no config file: none given, $FLOTILLA_CONFIG unset and "
                       f"{client_config.default_data_dir() / 'admin.conf'} does not exist")
    try:
        text = client_config.view(Path(path))
    except client_config.ConfigError as e:
        raise CliError(str(e)) from None
    ctx.stdout.write(text)
    return 0


async def run_certificate(ctx: Context, args: argparse.Namespace) -> int:
    """kubectl certificate approve|deny: one condition, written through the status."""
    client = await ctx.client()
    wanted: str = args.condition
    other = "Denied" if wanted == "Approved" else "Approved"
    failed = 0
    for name in args.names:
        try:
            csr: Any = await client.get("certificatesigningrequests", name)
        except api_errors.NotFound:
            ctx.error(f'certificatesigningrequests "{name}" not found')
            failed += 1
            continue
        types = {c.type for c in csr.status.conditions}
        if wanted in types:
            ctx.out(f"certificatesigningrequest.certificates.k8s.io/{name} {wanted.lower()}")
            continue
        if other in types and not args.force:
            ctx.error(f"certificatesigningrequest {name} is already {other.lower()} "
                      f"(--force to change it)")
            failed += 1
            continue
        verb = "approve" if wanted == "Approved" else "deny"
        set_condition(csr, wanted, f"Kubectl{verb.capitalize()}",
                      f"This CSR was {wanted.lower()} by flotilla certificate {verb}.",
                      drop=(other,))
        await client.update_status(csr)
        ctx.out(f"certificatesigningrequest.certificates.k8s.io/{name} {wanted.lower()}")
    return 1 if failed else 0

