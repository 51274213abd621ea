"""``.syncdignore``: gitignore rules kept in the folder itself, on top of the config's
include/exclude/ignore globs.

A ``.syncdignore`` may sit in the folder's root and in any subfolder, like
``.gitignore``; its patterns are relative to its own directory, in gitignore syntax
(the ``pathspec`` library compiles them: ``*.log``, ``build/``, ``/only-here``,
``**/cache``, ``!keep.log``, ``#`` comments). As in git: the last matching line of a
file decides, a deeper file's decision wins over a shallower one's, and a file below an
ignored directory cannot be brought back (the walk never enters that directory).

An ignored path is out of scope on both sides, like an exclude: never uploaded, and a
copy syncd uploaded before the rule was added is left alone remotely. A path no longer
ignored is mirrored at the next pass. The ``.syncdignore`` files themselves are never
uploaded.

Bad input: a line that is not a valid pattern (or not UTF-8) is reported once, naming
the file and the line, and skipped; the other lines apply. A ``.syncdignore`` that
cannot be read at all makes its directory *uncertain*: nothing below it is uploaded or
deleted until it can be read again.

Cost: ``IgnoreFiles`` keeps every file's compiled rules keyed by its stat, so a file is
read and compiled again only when it changed (and its warnings said again only then).
Matching a path is one regular expression per ``.syncdignore`` above it (its patterns
combined; only a path that one of them may match is decided line by line), nothing at
all while the folder has none.
"""

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path

import pathspec
from pathspec.patterns.gitignore.spec import GitIgnoreSpecPattern

IGNORE_FILE = ".syncdignore"
MAX_IGNORE_FILE_BYTES = 1 << 20
_UNANCHORED = "^(?:.+/)?"
_DIR_MARK_GROUP = "(?P<ps_d>"  # pathspec's named group; alternatives may not repeat it

StatKey = tuple[int, int, int, int]


@dataclass(frozen=True)
class CompiledIgnore:
    """One ``.syncdignore`` compiled: the spec, and a quick test that no line matches."""

    source: str  # the file's path relative to the folder
    spec: pathspec.GitIgnoreSpec
    by_name: re.Pattern[str] | None  # patterns without "/": tried on the last segment
    by_path: re.Pattern[str] | None  # the others: tried on the whole relative path
    warnings: tuple[str, ...] = ()

    def decide(self, rel: str, is_dir: bool) -> bool | None:
        """True: ignored; False: re-included by a ``!`` line; None: no line matches."""
        name = rel.rpartition("/")[2]
        suffix = "/" if is_dir else ""
        if not (
            (self.by_name is not None and self.by_name.match(name + suffix))
            or (self.by_path is not None and self.by_path.match(rel + suffix))
        ):
            return None
        include = self.spec.check_file(rel + suffix).include
        return None if include is None else bool(include)


def compile_ignore(source: str, data: bytes) -> CompiledIgnore:
    """Compile the bytes of a ``.syncdignore`` (``source`` names it in warnings)."""
    patterns: list[GitIgnoreSpecPattern] = []
    regexes: list[str] = []
    warnings: list[str] = []
    for number, raw in enumerate(data.split(b"\n"), start=1):
        try:
            line = raw.decode("utf-8").rstrip("\r")
        except UnicodeDecodeError:
            warnings.append(f"{source}: line {number} is not UTF-8; line skipped")
            continue
        try:
            pattern = GitIgnoreSpecPattern(line)
        except (ValueError, re.error) as exc:
            reason = str(exc).split(":")[0] if isinstance(exc, re.error) else "invalid pattern"
            warnings.append(f"{source}: line {number}: {reason}: {line!r}; line skipped")
            continue
        if pattern.include is not None and pattern.regex is not None:
            patterns.append(pattern)
            regexes.append(pattern.regex.pattern.replace(_DIR_MARK_GROUP, "(?:"))
    by_name: list[str] = []
    by_path: list[str] = []
    for text in regexes:
        if text.startswith(_UNANCHORED):
            by_name.append(text[len(_UNANCHORED) :])
        else:
            by_path.append(text)
    return CompiledIgnore(
        source,
        pathspec.GitIgnoreSpec(patterns),
        _combined(by_name),
        _combined(by_path),
        tuple(warnings),
    )


def _combined(regexes: list[str]) -> re.Pattern[str] | None:
    if not regexes:
        return None
    return re.compile("|".join(f"(?:{r})" for r in regexes))


@dataclass
class IgnoreRules:
    """The ``.syncdignore`` rules one pass found, by directory (``""``: the root)."""

    specs: dict[str, CompiledIgnore] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)  # new this pass (changed files)
    unreadable: dict[str, str] = field(default_factory=dict)  # directory -> why not read

    def ignores(self, rel: str, *, is_dir: bool = False) -> bool:
        """Whether ``rel`` is ignored by the rules of its own directory and those above.
        (Its ancestors are not looked at: the walk does not enter ignored directories.)"""
        if not is_dir and rel.rpartition("/")[2] == IGNORE_FILE:
            return True
        if not self.specs:
            return False
        directory = rel
        while True:
            directory = directory.rpartition("/")[0] if "/" in directory else ""
            spec = self.specs.get(directory)
            if spec is not None:
                decision = spec.decide(rel[len(directory) + 1 :] if directory else rel, is_dir)
                if decision is not None:
                    return decision
            if not directory:
                return False

    def ignores_path(self, rel: str) -> bool:
        """``ignores`` for a path and each of its ancestor directories (the planner's
        question about a tracked file no longer seen locally)."""
        if rel.rpartition("/")[2] == IGNORE_FILE:
            return True
        if not self.specs:
            return False
        parts = rel.split("/")
        for n in range(1, len(parts)):
            if self.ignores("/".join(parts[:n]), is_dir=True):
                return True
        return self.ignores(rel)


class IgnoreFiles:
    """The ``.syncdignore`` files of one folder, compiled once per change (module
    docstring). ``begin()`` starts a pass; ``load(directory)`` reads that directory's
    file into the pass's rules when it has one."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._cache: dict[str, tuple[StatKey, CompiledIgnore]] = {}
        self.rules = IgnoreRules()

    def begin(self) -> IgnoreRules:
        self.rules = IgnoreRules()
        return self.rules

    def load(self, directory: str, *, present: bool | None = None) -> None:
        """Read ``directory``'s ``.syncdignore`` into the current rules (``present``:
        whether the directory listing showed one; None: look)."""
        if directory in self.rules.specs or directory in self.rules.unreadable:
            return
        rel = f"{directory}/{IGNORE_FILE}" if directory else IGNORE_FILE
        if present is False:
            self._cache.pop(directory, None)
            return
        full = self.root / rel
        try:
            st = os.lstat(full)
        except FileNotFoundError:
            self._cache.pop(directory, None)
            return
        except OSError as exc:
            self.rules.unreadable[directory] = f"cannot read: {exc.strerror or exc}"
            return
        if not stat.S_ISREG(st.st_mode):
            return  # a link or a directory of that name: not an ignore file
        key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
        cached = self._cache.get(directory)
        if cached is not None and cached[0] == key:
            self.rules.specs[directory] = cached[1]
            return
        if st.st_size > MAX_IGNORE_FILE_BYTES:
            self.rules.unreadable[directory] = f"larger than {MAX_IGNORE_FILE_BYTES} bytes"
            return
        try:
            with open(full, "rb") as file:
                data = file.read(MAX_IGNORE_FILE_BYTES + 1)
        except OSError as exc:
            self.rules.unreadable[directory] = f"cannot read: {exc.strerror or exc}"
            return
        compiled = compile_ignore(rel, data)
        self._cache[directory] = (key, compiled)
        self.rules.specs[directory] = compiled
        self.rules.warnings.extend(compiled.warnings)

    def load_chain(self, rel: str) -> None:
        """Load the ``.syncdignore`` of every directory above ``rel`` (a partial pass)."""
        parts = rel.rstrip("/").split("/")
        self.load("")
        for n in range(1, len(parts)):
            self.load("/".join(parts[:n]))


def ignore_hint(hint: str) -> str | None:
    """For a watcher hint on a ``.syncdignore``: the hint that re-examines what its
    rules cover (its directory's subtree; ``""`` for the root: a full pass); else None."""
    directory, _, name = hint.rpartition("/")
    if name != IGNORE_FILE:
        return None
    return f"{directory}/" if directory else ""
