"""Which paths are mirrored (include/exclude globs) and with which purpose (rules).

Glob syntax, matched against the path relative to the folder with ``/`` separators:

- ``*`` any characters within one path segment, ``?`` one such character,
  ``[abc]`` / ``[!abc]`` a character class (never matching ``/``);
- ``**`` any number of whole segments: ``a/**/b.jsonl`` matches ``a/b.jsonl`` and
  ``a/x/y/b.jsonl``; ``logs/**`` matches everything below ``logs``;
- a pattern without ``/`` (``*.tmp``, ``node_modules``) matches a name at any depth;
  a pattern with ``/`` is anchored at the folder (a leading ``/`` is allowed).

An exclude that matches a directory excludes everything below it. When includes are
given, a file must match one of them. Filters scope both sides, as in rclone: a path
that is excluded is neither uploaded nor deleted remotely, even if syncd uploaded it
before the exclude was added.

Purpose rules are tried in order; the first whose glob matches decides the purpose
(and ``expires_after``); otherwise the mirror's default purpose applies.
"""

from __future__ import annotations

import fnmatch
import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass

DEFAULT_IGNORES: tuple[str, ...] = ("*.swp", "*~", ".#*", "*.tmp", ".~lock*")
"""Editor and office temp files, matched with fnmatch on a file's base name."""

# The temporary file ``syncd pull`` streams a download into, beside its target, before
# renaming it into place. Never mirrored, whatever ``ignore`` says: a half-written
# download must not be uploaded (a pull into a watched folder would do it otherwise).
PULL_TEMP_PREFIX = ".syncd-"
PULL_TEMP_SUFFIX = ".part"
ALWAYS_IGNORED: tuple[str, ...] = (f"{PULL_TEMP_PREFIX}*{PULL_TEMP_SUFFIX}",)


def is_ignored_name(name: str, globs: Sequence[str]) -> bool:
    """Whether a file's base name matches one of the ignore globs (case-sensitive)."""
    return any(fnmatch.fnmatchcase(name, glob) for glob in globs)


@functools.lru_cache(maxsize=1024)
def glob_to_regex(pattern: str) -> re.Pattern[str]:
    """Compile one glob (syntax in the module docstring) to a full-match regex."""
    body = pattern.strip().rstrip("/")
    anchored = "/" in body
    body = body.lstrip("/")
    out: list[str] = []
    i = 0
    while i < len(body):
        if body.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif body.startswith("/**", i) and i + 3 == len(body):
            out.append("(?:/.*)?")
            i += 3
        elif body.startswith("**", i):
            out.append(".*")
            i += 2
        elif body[i] == "*":
            out.append("[^/]*")
            i += 1
        elif body[i] == "?":
            out.append("[^/]")
            i += 1
        elif body[i] == "[" and "]" in body[i + 2 :]:
            end = body.index("]", i + 2)
            members = body[i + 1 : end]
            negate = members.startswith("!")
            members = re.escape(members[1:] if negate else members).replace(r"\-", "-")
            out.append(f"[^/{members}]" if negate else f"(?!/)[{members}]")
            i = end + 1
        else:
            out.append(re.escape(body[i]))
            i += 1
    prefix = "" if anchored else "(?:.*/)?"
    return re.compile(prefix + "".join(out))


def glob_matches(pattern: str, path: str) -> bool:
    """True when ``path`` (relative, ``/``-separated) matches ``pattern``."""
    return glob_to_regex(pattern).fullmatch(path) is not None


def _parents(path: str) -> list[str]:
    parts = path.split("/")
    return ["/".join(parts[:n]) for n in range(1, len(parts))]


@dataclass(frozen=True)
class PathFilter:
    """The include/exclude globs of one mirror."""

    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()

    def excludes_dir(self, rel_dir: str) -> bool:
        """True when nothing below ``rel_dir`` can be mirrored (the walk may prune it)."""
        return any(glob_matches(p, rel_dir) for p in self.exclude)

    def accepts(self, path: str) -> bool:
        """True when the file ``path`` is in scope of this mirror."""
        if self.exclude:
            for candidate in (*_parents(path), path):
                if any(glob_matches(p, candidate) for p in self.exclude):
                    return False
        return not self.include or any(glob_matches(p, path) for p in self.include)


@dataclass(frozen=True)
class PurposeRule:
    """Files matching ``glob`` are uploaded with ``purpose`` (and ``expires_after``)."""

    glob: str
    purpose: str
    expires_after: int | None = None


@dataclass(frozen=True)
class PurposeChoice:
    purpose: str
    expires_after: int | None


def choose_purpose(
    path: str,
    rules: tuple[PurposeRule, ...],
    default_purpose: str,
    default_expires_after: int | None = None,
) -> PurposeChoice:
    """The purpose for ``path``: the first matching rule's, else the default."""
    for rule in rules:
        if glob_matches(rule.glob, path):
            expires = rule.expires_after
            return PurposeChoice(
                rule.purpose, expires if expires is not None else default_expires_after
            )
    return PurposeChoice(default_purpose, default_expires_after)
