"""Turning untrusted remote filenames into safe relative paths. Pure: no I/O.

A Files API filename is whatever some client sent: ``../../etc/x``, ``/tmp/x``, ``..``,
an empty string, control characters, backslashes, 300-byte components. ``syncd pull
--all`` writes files under those names, so every name goes through ``clean_remote_name``
first. The rules (each change is described in ``CleanName.notes``, one short phrase per
kind of change, so the caller can print one line per file):

- ``\\`` is a separator, like ``/`` (a Windows-made ``a\\b`` lands at ``a/b``);
- leading ``/`` is dropped (the path is made relative); empty and ``.`` components are
  dropped; ``..`` components are dropped (never resolved: ``a/../../b`` becomes ``a/b``);
- control characters (NUL, newline, escape, DEL, C1) and the bidirectional overrides
  that make a name display differently from what it is become ``_``; lone surrogates
  (not encodable on disk) become U+FFFD;
- a component longer than ``MAX_NAME_BYTES`` (UTF-8) is shortened, keeping its extension
  and adding ``~`` and 8 hex digits of its hash so that two long names stay distinct;
- a name with nothing left is named by the file's id;
- a whole path longer than ``MAX_PATH_BYTES`` is refused (``RefusedName``).

The result never has an absolute path or a ``..``; ``is_inside`` checks that again
against the real destination before anything is written.

``place_remote_files`` then gives every remote file its own path: when names collide
(two remote files with one name, two names that clean to one, or a file named like
another file's directory), the newest file keeps the plain name and the others get
their id as a suffix, ``report (file-abc).pdf``. ``check_relative`` is the strict
counterpart for paths from syncd's own ledger: it refuses instead of repairing.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass

from syncd.api import RemoteFile
from syncd.errors import RefusedName

MAX_NAME_BYTES = 255  # NAME_MAX of every common Linux filesystem
MAX_PATH_BYTES = 3800  # below PATH_MAX (4096), leaving room for the destination itself
MAX_EXTENSION_BYTES = 32  # a longer "extension" is treated as part of the stem
_HASH_TAG_HEX = 8

# C0 and C1 controls, DEL, and the bidi embeddings/overrides/isolates (U+202A-U+202E,
# U+2066-U+2069) that can make a name print as something it is not.
_UNSAFE_CHARS = re.compile("[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
_SURROGATES = re.compile("[\ud800-\udfff]")


@dataclass(frozen=True)
class CleanName:
    """A safe relative path (``/``-separated, no ``.``/``..``/empty components)."""

    path: str
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Placement:
    """Where one remote file goes below the destination, and what was changed to get
    there (``notes``; empty when the remote name was used as it is)."""

    file: RemoteFile
    path: str
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Refusal:
    """A remote file that will not be written, and why."""

    file: RemoteFile
    reason: str


def utf8_len(text: str) -> int:
    return len(text.encode("utf-8", "surrogatepass"))


def _truncate_utf8(text: str, limit: int) -> str:
    """The longest prefix of ``text`` whose UTF-8 form fits in ``limit`` bytes."""
    return text.encode("utf-8")[:limit].decode("utf-8", "ignore")


def split_extension(name: str) -> tuple[str, str]:
    """``("report", ".pdf")``; dotfiles (``.bashrc``) and long tails have no extension."""
    dot = name.rfind(".")
    if dot <= 0 or utf8_len(name[dot:]) > MAX_EXTENSION_BYTES:
        return name, ""
    return name[:dot], name[dot:]


def fit_name(stem: str, tail: str, limit: int = MAX_NAME_BYTES) -> str:
    """``stem + tail`` with the stem shortened so the whole fits in ``limit`` bytes."""
    room = limit - utf8_len(tail)
    return _truncate_utf8(stem, max(room, 0)) + tail


def shorten_component(name: str, limit: int = MAX_NAME_BYTES) -> str:
    """A component of at most ``limit`` bytes that still says which long name it was."""
    if utf8_len(name) <= limit:
        return name
    tag = "~" + hashlib.sha256(name.encode("utf-8")).hexdigest()[:_HASH_TAG_HEX]
    stem, ext = split_extension(name)
    return fit_name(stem, tag + ext, limit)


def clean_remote_name(name: str, fallback: str) -> CleanName:
    """The safe relative path for remote filename ``name`` (rules in the module
    docstring); ``fallback`` (the file id) names a file whose name has nothing left.

    Raises ``RefusedName`` when even the cleaned path is too long for a filesystem.
    """
    notes: list[str] = []
    text = name
    if _SURROGATES.search(text):
        text = _SURROGATES.sub("\ufffd", text)
        notes.append("replaced characters that cannot be stored")
    if _UNSAFE_CHARS.search(text):
        text = _UNSAFE_CHARS.sub("_", text)
        notes.append("replaced control characters with '_'")
    if "\\" in text:
        text = text.replace("\\", "/")
        notes.append("read backslashes as folder separators")
    if text.startswith("/"):
        notes.append("made the absolute path relative")
    parts: list[str] = []
    dropped_dots = False
    for part in text.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            dropped_dots = True
            continue
        parts.append(part)
    if dropped_dots:
        notes.append("dropped '..' components")
    shortened = [shorten_component(p) for p in parts]
    if shortened != parts:
        notes.append(f"shortened names longer than {MAX_NAME_BYTES} bytes")
    if not shortened:
        notes.append("nothing usable was left of the name; named by the file id")
        shortened = [shorten_component(fallback.replace("/", "_") or "unnamed")]
    path = "/".join(shortened)
    if utf8_len(path) > MAX_PATH_BYTES:
        raise RefusedName(
            f"the path is {utf8_len(path)} bytes, longer than a filesystem allows "
            f"({MAX_PATH_BYTES})"
        )
    return CleanName(path, tuple(notes))


def check_relative(path: str) -> str:
    """``path`` if it is a safe relative path as syncd's ledger writes them, else
    ``RefusedName``. Nothing is repaired: a ledger path that needs repair is not ours."""
    if not path:
        raise RefusedName("the path is empty")
    if path.startswith("/"):
        raise RefusedName("the path is absolute")
    if "\x00" in path:
        raise RefusedName("the path holds a NUL character")
    for part in path.split("/"):
        if part in ("", ".", ".."):
            raise RefusedName(f"the path has a {part or 'empty'!r} component")
        if utf8_len(part) > MAX_NAME_BYTES:
            raise RefusedName(f"a name in the path is longer than {MAX_NAME_BYTES} bytes")
    return path


def with_id_suffix(path: str, file_id: str, attempt: int = 1) -> str:
    """``dir/report (file-abc).pdf`` for ``dir/report.pdf``; ``attempt`` > 1 adds a
    counter for the unlikely case that this name is taken as well."""
    head, _, name = path.rpartition("/")
    stem, ext = split_extension(name)
    marker = file_id.replace("/", "_") + (f" {attempt}" if attempt > 1 else "")
    renamed = fit_name(stem, f" ({marker}){ext}")
    return f"{head}/{renamed}" if head else renamed


def parent_dirs(path: str) -> list[str]:
    """``a``, ``a/b`` for ``a/b/c``."""
    parts = path.split("/")
    return ["/".join(parts[:n]) for n in range(1, len(parts))]


def is_inside(real_root: str, relative: str) -> bool:
    """True when ``relative`` joined to ``real_root`` stays strictly inside it, lexically
    (links are the writer's business: it never follows one)."""
    if relative.startswith("/"):
        return False
    root = os.path.normpath(real_root)
    target = os.path.normpath(f"{root}/{relative}")
    return target != root and target.startswith(root.rstrip("/") + "/")


def place_remote_files(
    files: Sequence[RemoteFile], reserved: Collection[str] = ()
) -> tuple[list[Placement], list[Refusal]]:
    """Give every remote file a distinct safe path (rules in the module docstring).

    The newest file (``created_at``; within one second, the earlier in ``files``, which
    is newer in the API's default listing order) keeps a contested name; a file whose
    name is another file's directory yields to the directory. ``reserved`` paths are
    treated as taken already. Deterministic: the same listing gives the same paths.
    """
    cleaned: list[tuple[RemoteFile, CleanName]] = []
    refused: list[Refusal] = []
    for remote in files:
        try:
            cleaned.append((remote, clean_remote_name(remote.filename, remote.id)))
        except RefusedName as exc:
            refused.append(Refusal(remote, str(exc)))
    directories = {d for _, c in cleaned for d in parent_dirs(c.path)}
    taken: set[str] = set(reserved)
    placements: list[Placement] = []
    # Stable: files created in the same second keep the listing's order, which the API
    # gives newest first (``order=desc``), so the last upload wins the plain name.
    newest_first = sorted(cleaned, key=lambda fc: -fc[0].created_at)
    for remote, clean in newest_first:
        path, notes = clean.path, list(clean.notes)
        if _clashes(path, taken, directories):
            attempt = 1
            while _clashes(
                candidate := with_id_suffix(path, remote.id, attempt), taken, directories
            ):
                attempt += 1
            notes.append("the name is taken by a newer remote file or by a folder")
            path = candidate
        taken.add(path)
        directories.update(parent_dirs(path))
        placements.append(Placement(remote, path, tuple(notes)))
    return placements, refused


def _clashes(path: str, taken: Collection[str], directories: Collection[str]) -> bool:
    return path in taken or path in directories or any(d in taken for d in parent_dirs(path))


def printable(text: str) -> str:
    """``text`` safe to print on a terminal: control characters shown as escapes."""
    return _UNSAFE_CHARS.sub(lambda m: ascii(m.group(0))[1:-1], _SURROGATES.sub("\ufffd", text))


def describe(notes: Iterable[str]) -> str:
    """The notes of one name as one phrase."""
    return "; ".join(notes)
