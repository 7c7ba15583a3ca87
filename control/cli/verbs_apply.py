"""`flotilla apply`, `create` and `diff`: writing manifests, kubectl's client-side apply.

Owns the apply algorithm (as kubectl's client-side apply):
- the manifest, normalized, is stored in the ``kubectl.kubernetes.io/last-applied-configuration``
  annotation of the object;
- a new object is created with that annotation;
- an existing one gets ``create_three_way_merge_patch(last_applied, manifest, live)`` sent as
  a strategic merge patch: a field dropped from the manifest (present in last-applied) is
  removed, a field set by the cluster (a Service's nodePort, never in last-applied) survives;
- an empty patch is "unchanged".
``--dry-run=client`` computes without sending, ``--dry-run=server`` sends with dry_run.
``diff`` shows the live object against the server's dry-run result of that same apply.

Every manifest is read and checked (:mod:`control.cli.manifest`) before the first request;
a refusal by the server is reported per object and the verb goes on, exiting 1 at the end.
"""

from __future__ import annotations

import argparse
import copy
import difflib
import json
from typing import TYPE_CHECKING, Any, NoReturn

from google.protobuf.message import Message

from control.api import convert, kinds
from control.api import errors as api_errors
from control.cli import manifest, printers
from control.cli.errors import UsageError, describe_exception
from control.cli.main import ref_name

if TYPE_CHECKING:
    from control.cli.main import Context
    from control.client.client import ApiClient

LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
DRY_RUN_CHOICES = ("none", "client", "server")


def add_file_flags(p: argparse.ArgumentParser, *, required: bool) -> None:
    p.add_argument(
        "-f",
        "--filename",
        action="append",
        default=[],
        required=required,
        metavar="FILE",
        help="manifest file, directory, or - for stdin (repeatable)",
    )
    p.add_argument(
        "-R", "--recursive", action="store_true", help="read directories given with -f recursively"
    )


def _dry_run(value: str) -> str:
    # kubectl: bare --dry-run means "client"; true/false are the old spellings.
    value = {"": "client", "true": "client", "false": "none"}.get(value, value)
    if value not in DRY_RUN_CHOICES:
        raise argparse.ArgumentTypeError(
            f"invalid --dry-run {value!r}: must be one of none, client, server"
        )
    return value


def register(sub: Any) -> None:
    p = sub.add_parser("apply", help="create or update objects from manifests (-f)")
    add_file_flags(p, required=True)
    p.add_argument("--dry-run", type=_dry_run, nargs="?", const="client", default="none")
    p.add_argument("-o", "--output", default="", help="name|json|yaml")
    p.set_defaults(handler=run_apply)

    p = sub.add_parser("create", help="create objects from manifests, or `create namespace NAME`"
                       " / `create job NAME (--from=cronjob/X | --image=IMG [-- CMD...])`"
                       " / `create token SERVICE_ACCOUNT`")
    add_file_flags(p, required=False)
    # everything after the first word: flags may still follow, and `create job NAME
    # --image=IMG -- CMD...` ends with a command (see _split_what)
    p.add_argument(
        "what",
        nargs=argparse.REMAINDER,
        metavar="namespace NAME",
        help="`namespace NAME` creates a namespace without a file; `job NAME` a Job",
    )
    p.add_argument("--from", dest="from_", default="", metavar="cronjob/NAME",
                   help="create job: the CronJob whose jobTemplate the Job takes")
    p.add_argument("--image", default="", help="create job: the image of its one container")
    p.add_argument("--audience", action="append", default=[],
                   help="create token: an audience of the token (repeatable; default: the "
                        "API's)")
    p.add_argument("--duration", default="0",
                   help="create token: its lifetime (e.g. 1h; 0: the server's default)")
    p.add_argument("--bound-object-kind", default="",
                   help="create token: bind it to an object of this kind (Pod)")
    p.add_argument("--bound-object-name", default="",
                   help="create token: the name of the object it is bound to")
    p.add_argument("--bound-object-uid", default="",
                   help="create token: the uid of the object it is bound to")
    p.add_argument("--dry-run", type=_dry_run, nargs="?", const="client", default="none")
    p.add_argument("-o", "--output", default="", help="name|json|yaml")
    p.set_defaults(handler=run_create)

    p = sub.add_parser("diff", help="show what apply -f would change (exit 1 when different)")
    add_file_flags(p, required=True)
    p.set_defaults(handler=run_diff)


# -- the apply computation ------------------------------------------------------------------


def last_applied_text(data: dict[str, Any]) -> str:
    """The annotation's value: the manifest as compact JSON, without the annotation itself."""
    clean = copy.deepcopy(data)
    annotations = clean.get("metadata", {}).get("annotations")
    if isinstance(annotations, dict):
        annotations.pop(LAST_APPLIED, None)
        if not annotations:
            del clean["metadata"]["annotations"]
    return json.dumps(clean, separators=(",", ":"), sort_keys=True)


def with_last_applied(data: dict[str, Any]) -> dict[str, Any]:
    """The manifest with its own last-applied annotation, as apply writes it."""
    out = copy.deepcopy(data)
    out.setdefault("metadata", {}).setdefault("annotations", {})[LAST_APPLIED] = last_applied_text(
        data
    )
    return out


def apply_patch(live: Message, modified: dict[str, Any]) -> dict[str, Any]:
    """The strategic patch turning ``live`` into what ``modified`` (with its annotation)
    asks for, given the last-applied configuration recorded on ``live``."""
    from control.api import merge

    current = convert.to_dict(live)
    recorded = live.metadata.annotations.get(LAST_APPLIED)  # type: ignore[attr-defined]
    original: dict[str, Any] = {}
    if recorded:
        try:
            loaded = json.loads(recorded)
            if isinstance(loaded, dict):
                original = loaded
        except ValueError:
            pass  # a damaged annotation: behave as if absent (nothing is pruned)
    patch = merge.create_three_way_merge_patch(original, modified, current)
    return dict(patch or {})


def _server_message(e: api_errors.ApiError, info: kinds.KindInfo, name: str) -> str:
    text = describe_exception(e)
    if f'"{name}"' in text or f"/{name}" in text:
        return text
    return f"{ref_name(info, name)}: {text}"


def _suffix(dry_run: str) -> str:
    return {"client": " (dry run)", "server": " (server dry run)"}.get(dry_run, "")


def _print_result(
    ctx: Context,
    output: str,
    obj: Message | None,
    info: kinds.KindInfo,
    name: str,
    verb: str,
    dry_run: str,
) -> None:
    if output in ("", None):
        ctx.out(f"{ref_name(info, name)} {verb}{_suffix(dry_run)}")
    elif output == "name":
        ctx.out(ref_name(info, name))
    elif obj is not None:
        printers.print_objects(
            [obj], info, output, ctx.stdout, list_kind=False, show_namespace=False
        )
    ctx.stdout.flush()


def _check_output(output: str) -> None:
    if output not in ("", "name", "json", "yaml"):
        raise UsageError(
            f"unable to match a printer suitable for the output format {output!r}, "
            "allowed formats are: json,name,yaml"
        )


async def _apply_one(
    ctx: Context, client: ApiClient, m: manifest.Manifest, dry_run: str, output: str
) -> None:
    info, name, ns = m.info, m.name, m.namespace
    modified = with_last_applied(m.data)
    try:
        live = await client.get(info, name, ns)
    except api_errors.NotFound:
        live = None
    if live is None:
        obj = convert.from_dict(modified, info.message())
        if dry_run == "client":
            _print_result(ctx, output, obj, info, name, "created", dry_run)
            return
        created = await client.create(obj, dry_run=dry_run == "server")
        _print_result(ctx, output, created, info, name, "created", dry_run)
        return
    if not live.metadata.annotations.get(LAST_APPLIED):
        ctx.warn(
            f"resource {info.plural}/{name} is missing the {LAST_APPLIED} annotation which is "
            "required by apply. It will be patched automatically."
        )
    patch = apply_patch(live, modified)
    if not patch:
        _print_result(ctx, output, live, info, name, "unchanged", dry_run)
        return
    if dry_run == "client":
        _print_result(ctx, output, live, info, name, "configured", dry_run)
        return
    patched = await client.patch(
        info, name, patch, ns, patch_type="strategic", dry_run=dry_run == "server"
    )
    same = patched.metadata.resource_version == live.metadata.resource_version
    _print_result(
        ctx,
        output,
        patched,
        info,
        name,
        "unchanged" if same and dry_run == "none" else "configured",
        dry_run,
    )


async def run_apply(ctx: Context, args: argparse.Namespace) -> int:
    _check_output(args.output)
    manifests = manifest.load(
        args.filename,
        ctx.namespace,
        ctx.explicit_namespace,
        recursive=args.recursive,
        stdin=ctx.stdin,
    )
    client = await ctx.client()
    failed = 0
    for m in manifests:
        try:
            await _apply_one(ctx, client, m, args.dry_run, args.output)
        except api_errors.ServiceUnavailable:
            raise
        except api_errors.ApiError as e:
            failed += 1
            ctx.error(_server_message(e, m.info, m.name))
    return 1 if failed else 0


# -- create ------------------------------------------------------------------------------


class _WhatParser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message}\nSee 'flotilla create --help' for usage.")


def _split_what(args: argparse.Namespace) -> None:
    """Flags given after `create namespace NAME` / `create job NAME` land in ``what``
    (it takes the rest of the line, for the command after ``--``): parse them here."""
    words = list(args.what)
    command: list[str] = []
    if "--" in words:
        cut = words.index("--")
        words, command = words[:cut], words[cut + 1:]
    p = _WhatParser(prog="flotilla create", add_help=False)
    p.add_argument("words", nargs="*")
    p.add_argument("-f", "--filename", action="append", default=[])
    p.add_argument("-R", "--recursive", action="store_true")
    p.add_argument("--dry-run", type=_dry_run, nargs="?", const="client", default=None)
    p.add_argument("-o", "--output", default=None)
    p.add_argument("--from", dest="from_", default=None)
    p.add_argument("--image", default=None)
    p.add_argument("--audience", action="append", default=[])
    for flag in ("--duration", "--bound-object-kind", "--bound-object-name",
                 "--bound-object-uid"):
        p.add_argument(flag, default=None)
    extra = p.parse_intermixed_args(words)
    args.what = extra.words + command
    args.filename = list(args.filename) + extra.filename
    args.recursive = args.recursive or extra.recursive
    args.audience = list(getattr(args, "audience", [])) + extra.audience
    for name in ("dry_run", "output", "from_", "image", "duration", "bound_object_kind",
                 "bound_object_name", "bound_object_uid"):
        if getattr(extra, name) is not None:
            setattr(args, name, getattr(extra, name))


async def run_create(ctx: Context, args: argparse.Namespace) -> int:
    _split_what(args)
    if args.what and args.what[0] == "token":
        from control.cli import create_token

        if args.filename:
            raise UsageError("give either -f FILE or `token SERVICE_ACCOUNT`, not both")
        return await create_token.run(ctx, args)
    _check_output(args.output)
    if args.what and args.what[0] == "job":
        if args.filename:
            raise UsageError("give either -f FILE or `job NAME`, not both")
        manifests = [await _job_manifest(ctx, args)]
    elif args.what:
        if args.filename:
            raise UsageError("give either -f FILE or `namespace NAME`, not both")
        if len(args.what) != 2 or args.what[0] not in ("namespace", "ns"):
            raise UsageError("usage: flotilla create namespace NAME | create -f FILE")
        data = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": args.what[1]}}
        doc = manifest.Document("command line", 1, data)
        manifests = manifest.check_documents([doc], ctx.namespace, ctx.explicit_namespace)
    elif args.filename:
        manifests = manifest.load(
            args.filename,
            ctx.namespace,
            ctx.explicit_namespace,
            recursive=args.recursive,
            stdin=ctx.stdin,
        )
    else:
        raise UsageError("must specify -f FILE or `namespace NAME`")
    client = await ctx.client() if args.dry_run != "client" else None
    failed = 0
    for m in manifests:
        name = m.name or m.obj.metadata.generate_name  # type: ignore[attr-defined]
        if client is None:
            _print_result(ctx, args.output, m.obj, m.info, name, "created", args.dry_run)
            continue
        try:
            created = await client.create(m.obj, dry_run=args.dry_run == "server")
        except api_errors.ServiceUnavailable:
            raise
        except api_errors.ApiError as e:
            failed += 1
            ctx.error(_server_message(e, m.info, name))
            continue
        _print_result(
            ctx,
            args.output,
            created,
            m.info,
            created.metadata.name or name,  # type: ignore[attr-defined]
            "created",
            args.dry_run,
        )
    return 1 if failed else 0


async def _job_manifest(ctx: Context, args: argparse.Namespace) -> manifest.Manifest:
    """`create job NAME --from=cronjob/X` or `--image=IMG [-- CMD...]` as a manifest."""
    from control.api.pb import batch_pb2
    from control.cli import create_job

    if len(args.what) < 2:
        raise UsageError("usage: flotilla create job NAME (--from=cronjob/NAME | --image=IMAGE "
                         "[-- COMMAND...])")
    name, command = args.what[1], args.what[2:]
    if bool(args.from_) == bool(args.image):
        raise UsageError("create job: give exactly one of --from=cronjob/NAME and --image")
    if args.from_:
        kind, _, source = args.from_.partition("/")
        try:
            source_kind = kinds.resolve(kind).kind
        except KeyError:
            source_kind = ""
        if not source or source_kind != "CronJob":
            raise UsageError(f"create job: --from={args.from_}: only cronjob/NAME is supported")
        if command:
            raise UsageError("create job: a command goes with --image, not --from")
        client = await ctx.client()
        cj = await client.get(batch_pb2.CronJob, source, ctx.namespace)
        job = create_job.job_from_cronjob(cj, name)
    else:
        job = create_job.job_from_image(name, ctx.namespace, args.image, command)
    doc = manifest.Document("command line", 1, convert.to_dict(job))
    (m,) = manifest.check_documents([doc], ctx.namespace, ctx.explicit_namespace)
    return m


# -- diff --------------------------------------------------------------------------------

# Fields that change on every write and say nothing about the user's intent.
_DIFF_IGNORED_META = ("resourceVersion", "managedFields")


def _for_diff(data: dict[str, Any] | None) -> str:
    if not data:
        return ""
    clean = copy.deepcopy(data)
    meta = clean.get("metadata")
    if isinstance(meta, dict):
        for key in _DIFF_IGNORED_META:
            meta.pop(key, None)
    return printers.dump_yaml(clean)


def _diff_path(info: kinds.KindInfo, ns: str, name: str) -> str:
    # kubectl's temp file names: group.version.Kind.namespace.name
    group = f"{info.group}." if info.group else ""
    return f"{group}{info.version}.{info.kind}.{ns + '.' if ns else ''}{name}"


async def run_diff(ctx: Context, args: argparse.Namespace) -> int:
    manifests = manifest.load(
        args.filename,
        ctx.namespace,
        ctx.explicit_namespace,
        recursive=args.recursive,
        stdin=ctx.stdin,
    )
    client = await ctx.client()
    different = False
    failed = 0
    for m in manifests:
        info, name, ns = m.info, m.name, m.namespace
        modified = with_last_applied(m.data)
        try:
            try:
                live = await client.get(info, name, ns)
            except api_errors.NotFound:
                live = None
            if live is None:
                merged = await client.create(
                    convert.from_dict(modified, info.message()), dry_run=True
                )
                before, after = None, convert.to_dict(merged)
            else:
                before = convert.to_dict(live)
                patch = apply_patch(live, modified)
                if not patch:
                    continue
                merged = await client.patch(
                    info, name, patch, ns, patch_type="strategic", dry_run=True
                )
                after = convert.to_dict(merged)
        except api_errors.ServiceUnavailable:
            raise
        except api_errors.ApiError as e:
            failed += 1
            ctx.error(_server_message(e, info, name))
            continue
        a, b = _for_diff(before), _for_diff(after)
        if a == b:
            continue
        different = True
        path = _diff_path(info, ns, name)
        lines = difflib.unified_diff(
            a.splitlines(keepends=True),
            b.splitlines(keepends=True),
            fromfile=f"LIVE/{path}",
            tofile=f"MERGED/{path}",
        )
        for line in lines:
            ctx.stdout.write(line if line.endswith("\n") else line + "\n")
    ctx.stdout.flush()
    return 1 if (different or failed) else 0
