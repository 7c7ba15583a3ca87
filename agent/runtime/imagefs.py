"""Reading an image's files from its unpacked layers, and resolving the image's ``User``
(blocking, small reads; pure parsing apart from :func:`find_file`).

Layers are given bottom first, each in overlayfs' format (a 0/0 character device hides a
lower file, ``trusted.overlay.opaque=y`` hides a lower directory's content), so a path
resolves as the container's overlay would show it.

``User`` as Docker and containerd read it: ``name``, ``uid``, ``name:group``, ``uid:gid``
(groups by name or number); a name must exist in the image's ``/etc/passwd`` (``/etc/group``
for a group name); a bare uid missing from ``/etc/passwd`` runs with gid 0. The user's
supplementary groups are those ``/etc/group`` lists it in.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Sequence
from dataclasses import dataclass

OPAQUE_XATTR = "trusted.overlay.opaque"


class UserError(ValueError):
    pass


def _whiteout(path: str) -> bool:
    try:
        st = os.lstat(path)
    except OSError:
        return False
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def _opaque(path: str) -> bool:
    try:
        return os.getxattr(path, OPAQUE_XATTR, follow_symlinks=False) == b"y"
    except OSError:
        return False


def find_file(layers: Sequence[str], path: str) -> str | None:
    """The host path of the regular file the merged root shows at ``path`` (no symlinks
    followed: enough for /etc/passwd and /etc/group), or None."""
    parts = [p for p in path.split("/") if p]
    for layer in reversed(layers):
        candidate = os.path.join(layer, *parts)
        if _whiteout(candidate):
            return None
        if os.path.isfile(candidate) and not os.path.islink(candidate):
            return candidate
        # a lower file is hidden when any directory above it is opaque or whited out here
        for depth in range(len(parts) - 1, 0, -1):
            above = os.path.join(layer, *parts[:depth])
            if _whiteout(above) or (os.path.isdir(above) and _opaque(above)):
                return None
    return None


@dataclass(frozen=True)
class PasswdEntry:
    name: str
    uid: int
    gid: int
    home: str


@dataclass(frozen=True)
class GroupEntry:
    name: str
    gid: int
    members: tuple[str, ...]


def parse_passwd(text: str) -> list[PasswdEntry]:
    out = []
    for line in text.splitlines():
        fields = line.split(":")
        if len(fields) < 7 or line.startswith("#"):
            continue
        with contextlib.suppress(ValueError):
            out.append(PasswdEntry(fields[0], int(fields[2]), int(fields[3]), fields[5]))
    return out


def parse_group(text: str) -> list[GroupEntry]:
    out = []
    for line in text.splitlines():
        fields = line.split(":")
        if len(fields) < 4 or line.startswith("#"):
            continue
        with contextlib.suppress(ValueError):
            members = tuple(m for m in fields[3].split(",") if m)
            out.append(GroupEntry(fields[0], int(fields[2]), members))
    return out


@dataclass(frozen=True)
class ResolvedUser:
    uid: int
    gid: int
    groups: tuple[int, ...] = ()
    home: str = ""


def resolve_user(
    spec: str,
    passwd: Sequence[PasswdEntry],
    groups: Sequence[GroupEntry],
    *,
    run_as_user: int | None = None,
    run_as_group: int | None = None,
) -> ResolvedUser:
    """The process identity: runAsUser/runAsGroup win over the image's ``User``."""
    user_part, _, group_part = spec.partition(":")
    entry: PasswdEntry | None = None
    if run_as_user is not None:
        uid = run_as_user
        entry = next((p for p in passwd if p.uid == uid), None)
    elif not user_part:
        uid = 0
        entry = next((p for p in passwd if p.uid == 0), None)
    elif user_part.isdigit():
        uid = int(user_part)
        entry = next((p for p in passwd if p.uid == uid), None)
    else:
        entry = next((p for p in passwd if p.name == user_part), None)
        if entry is None:
            raise UserError(f"user {user_part!r} is not in the image's /etc/passwd")
        uid = entry.uid
    if run_as_group is not None:
        gid = run_as_group
    elif group_part and run_as_user is None:
        if group_part.isdigit():
            gid = int(group_part)
        else:
            found = next((g for g in groups if g.name == group_part), None)
            if found is None:
                raise UserError(f"group {group_part!r} is not in the image's /etc/group")
            gid = found.gid
    else:
        gid = entry.gid if entry is not None else 0
    extra: tuple[int, ...] = ()
    if entry is not None:
        extra = tuple(sorted({g.gid for g in groups if entry.name in g.members} - {gid}))
    return ResolvedUser(uid, gid, extra, entry.home if entry is not None else "")


def image_user(
    layers: Sequence[str],
    spec: str,
    *,
    run_as_user: int | None = None,
    run_as_group: int | None = None,
) -> ResolvedUser:
    """:func:`resolve_user` against the image's own /etc/passwd and /etc/group."""

    def read(path: str) -> str:
        found = find_file(layers, path)
        if found is None:
            return ""
        with open(found, encoding="utf-8", errors="replace") as f:
            return f.read(1 << 20)

    return resolve_user(
        spec,
        parse_passwd(read("/etc/passwd")),
        parse_group(read("/etc/group")),
        run_as_user=run_as_user,
        run_as_group=run_as_group,
    )
