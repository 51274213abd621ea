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


_UNANCHORED = "(?:.*/)?"  # a glob without "/" matches a name at any depth


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
    prefix = "" if anchored else _UNANCHORED
    # DOTALL: ``**`` and the any-depth prefix cross names that hold a newline too
    return re.compile(prefix + "".join(out), re.DOTALL)


def glob_matches(pattern: str, path: str) -> bool:
    """True when ``path`` (relative, ``/``-separated) matches ``pattern``."""
    return glob_to_regex(pattern).fullmatch(path) is not None


_GLOB_SPECIAL = "*?[]"


def _literal_ends(body: str) -> tuple[str, str]:
    """The literal text every name matching glob ``body`` starts and ends with."""
    first = min((body.index(c) for c in _GLOB_SPECIAL if c in body), default=len(body))
    last = max((body.rindex(c) for c in _GLOB_SPECIAL if c in body), default=-1)
    if first == len(body):
        return body, body  # no wildcard: the name itself
    return body[:first], body[last + 1 :]


@dataclass(frozen=True)
class GlobSet:
    """Several globs compiled once into a test of "one of them matches".

    A pass tests every path against every glob, so the globs are not tried one at a
    time: the anchored ones (with a ``/``) become one regex over the whole path; the
    others match one name, and most of those are ``*.ext`` or ``prefix*``, so a name is
    only given to their combined regex when it starts or ends with one of their literal
    ends (a name that matches a glob always does).
    """

    path_regex: re.Pattern[str] | None  # globs with "/" or "**": full match of the path
    below_regex: re.Pattern[str] | None  # the same, or any path below a match
    name_regex: re.Pattern[str] | None  # globs without "/", full match of one name
    name_starts: tuple[str, ...]  # a name may match only if it starts with one of these
    name_ends: tuple[str, ...]  # ... or ends with one of these
    name_any: bool  # a glob without a literal start or end (``*``): always try the regex

    def matches(self, path: str) -> bool:
        """Whether one of the globs matches ``path`` itself."""
        if self.path_regex is not None and self.path_regex.fullmatch(path) is not None:
            return True
        return self.name_regex is not None and self._name_matches(path.rpartition("/")[2])

    def matches_or_below(self, path: str) -> bool:
        """Whether one of the globs matches ``path`` or a directory above it."""
        if self.below_regex is not None and self.below_regex.fullmatch(path) is not None:
            return True
        if self.name_regex is None:
            return False
        return any(self._name_matches(name) for name in path.split("/"))

    def _name_matches(self, name: str) -> bool:
        if not (
            self.name_any or name.startswith(self.name_starts) or name.endswith(self.name_ends)
        ):
            return False
        return self.name_regex is not None and self.name_regex.fullmatch(name) is not None


@functools.lru_cache(maxsize=256)
def compile_globs(patterns: tuple[str, ...]) -> GlobSet:
    """The ``GlobSet`` of ``patterns`` (cached: a config's globs are compiled once)."""
    whole: list[str] = []
    names: list[str] = []
    starts: list[str] = []
    ends: list[str] = []
    name_any = False
    for pattern in patterns:
        regex = glob_to_regex(pattern).pattern
        body = pattern.strip().rstrip("/")
        if "/" in body or "**" in body:  # anchored, or may span several names
            whole.append(regex)
            continue
        names.append(regex.removeprefix(_UNANCHORED))
        start, end = _literal_ends(body)
        if start:
            starts.append(start)
        elif end:
            ends.append(end)
        else:
            name_any = True
    path_body = "|".join(f"(?:{r})" for r in whole)
    return GlobSet(
        re.compile(path_body, re.DOTALL) if whole else None,
        re.compile(f"(?:{path_body})(?:/.*)?", re.DOTALL) if whole else None,
        re.compile("|".join(f"(?:{r})" for r in names), re.DOTALL) if names else None,
        tuple(starts),
        tuple(ends),
        name_any,
    )


@dataclass(frozen=True)
class PathFilter:
    """The include/exclude globs of one mirror."""

    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()

    def excludes_dir(self, rel_dir: str) -> bool:
        """True when nothing below ``rel_dir`` can be mirrored (the walk may prune it)."""
        return bool(self.exclude) and compile_globs(self.exclude).matches(rel_dir)

    def accepts(self, path: str) -> bool:
        """True when the file ``path`` is in scope of this mirror: no exclude matches it
        or a directory above it, and an include (if there are any) matches it."""
        if self.exclude and compile_globs(self.exclude).matches_or_below(path):
            return False
        return not self.include or compile_globs(self.include).matches(path)

    def accepts_in_walk(self, path: str) -> bool:
        """``accepts`` for a file whose every directory ``excludes_dir`` let through (the
        walk prunes the others): no exclude can match a directory above it, so only
        the path itself is tested."""
        if self.exclude and compile_globs(self.exclude).matches(path):
            return False
        return not self.include or compile_globs(self.include).matches(path)


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
