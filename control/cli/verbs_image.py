"""`flotilla image import|ls|rm` on a node's own image store, and `flotilla images --node`
through the API.

Owns:
- ``image import FILE...``: ``docker save`` and OCI layout archives into the store of the
  agent on this machine (``--data-dir``, else the data dir of ``--node-name``, else of this
  host's name), for nodes that reach no registry; safe while the agent runs (the store
  locks its records);
- ``image ls``: the store's images (IMAGE TAG IMAGE ID SIZE, as ``crictl images``);
- ``image rm REF...``: removes an image and the layers only it used; refused while any
  container the agent's runtime knows was created from it;
- ``images --node NAME``: what the node reports in ``Node.status.images``.

The agent's store and runtime are imported only when these verbs run.
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path
from typing import TYPE_CHECKING, Any

from control.cli.errors import CliError

if TYPE_CHECKING:
    from control.cli.main import Context


def register(sub: Any) -> None:
    p = sub.add_parser("image", help="images on this machine's node (import, ls, rm)")
    verbs = p.add_subparsers(dest="image_verb", metavar="VERB", required=True)
    for name, helptext in (("import", "import docker save / OCI layout archives"),
                           ("ls", "list the node's images"),
                           ("rm", "remove images no container uses")):
        q = verbs.add_parser(name, help=helptext)
        q.add_argument("--data-dir", type=Path, default=None,
                       help="the agent's data dir (default: that of --node-name)")
        q.add_argument("--node-name", default=None,
                       help="the node whose agent runs here (default: this host's name)")
        if name == "import":
            q.add_argument("files", nargs="+", type=Path, metavar="FILE")
        elif name == "rm":
            q.add_argument("refs", nargs="+", metavar="IMAGE")
        else:
            q.add_argument("-q", "--quiet", action="store_true", help="only image ids")
        q.set_defaults(handler=run_image)

    p = sub.add_parser("images", help="the images a node reports (Node.status.images)")
    p.add_argument("--node", required=True, help="the node's name")
    p.set_defaults(handler=run_images)


def _data_dir(args: argparse.Namespace) -> Path:
    from agent import config as agent_config

    if args.data_dir is not None:
        return Path(args.data_dir)
    return agent_config.default_data_dir(args.node_name or agent_config.default_node_name())


def size_text(n: int) -> str:
    """crictl's sizes: 1.2MB, 350kB, 12B (powers of 1000)."""
    for unit, scale in (("GB", 10**9), ("MB", 10**6), ("kB", 10**3)):
        if n >= scale:
            return f"{n / scale:.3g}{unit}"
    return f"{n}B"


async def run_image(ctx: Context, args: argparse.Namespace) -> int:
    from agent.images.errors import ImageError
    from agent.images.store import Store

    data_dir = _data_dir(args)
    store = Store(data_dir / "images")
    try:
        if args.image_verb == "import":
            return await _import(ctx, store, args.files)
        if args.image_verb == "ls":
            return await _ls(ctx, store, args.quiet)
        return await _rm(ctx, store, data_dir, args.refs)
    except ImageError as e:
        raise CliError(str(e)) from None


async def _import(ctx: Context, store: Any, files: list[Path]) -> int:
    from agent.images.archive import import_archive

    for path in files:
        if not path.is_file():
            raise CliError(f"{path}: no such file")
    for path in files:
        for image in await asyncio.to_thread(import_archive, store, path):
            names = ", ".join(image.repo_tags) or "(untagged)"
            ctx.out(f"imported {names} ({image.id})")
    return 0


async def _ls(ctx: Context, store: Any, quiet: bool) -> int:
    from control.cli.verbs_misc import table

    images = await asyncio.to_thread(store.images)
    if quiet:
        for image in images:
            ctx.out(image.id)
        return 0
    rows = []
    for image in images:
        short = image.id.split(":", 1)[1][:13]
        tags = image.repo_tags or [n.split("@")[0] + ":<none>" for n in image.repo_digests]
        for tag in tags or ["<none>:<none>"]:
            repo, _, name = tag.rpartition(":")
            rows.append([repo, name, short, size_text(image.size)])
    ctx.stdout.write(table(["IMAGE", "TAG", "IMAGE ID", "SIZE"], rows))
    return 0


async def _rm(ctx: Context, store: Any, data_dir: Path, refs: list[str]) -> int:
    from agent.main import images_in_use
    from agent.runtime.process import ProcessRuntime

    runtime = ProcessRuntime(data_dir / "runtime")
    try:
        in_use = await images_in_use(runtime)
    finally:
        await runtime.close()
    failed = False
    for ref in refs:
        image = await asyncio.to_thread(store.find, ref)
        if image is None:
            ctx.error(f'no image "{ref}" on this node')
            failed = True
            continue
        if image.id in in_use:
            ctx.error(f'image "{ref}" ({image.id}) is used by a container; delete its '
                      "pods first")
            failed = True
            continue
        await asyncio.to_thread(store.remove, image.id)
        ctx.out(f"Deleted: {ref} ({image.id})")
    await asyncio.to_thread(store.prune)
    if failed:
        raise CliError("some images were not removed")
    return 0


async def run_images(ctx: Context, args: argparse.Namespace) -> int:
    from control.api import errors
    from control.api.pb import core_pb2
    from control.cli.verbs_misc import table

    client = await ctx.client()
    try:
        node = await client.get(core_pb2.Node, args.node)
    except errors.NotFound:
        raise CliError(f'nodes "{args.node}" not found') from None
    rows = []
    for image in node.status.images:
        names = list(image.names)
        tag = next((n for n in names if "@" not in n), "")
        digest = next((n for n in names if "@" in n), "")
        rows.append([tag or "<none>", digest.split("@", 1)[1][:19] if digest else "<none>",
                     size_text(image.size_bytes)])
    ctx.stdout.write(table(["IMAGE", "DIGEST", "SIZE"], rows))
    return 0
