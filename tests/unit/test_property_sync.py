"""Property: whatever the local changes, remote faults and crashes, once fault-free passes
have run the remote holds exactly the folder -- one file per path, the right bytes --
and nothing else syncd created; files syncd did not create are never touched.

The planner and executor run for real (``SyncEngine``, a real ``Ledger`` and real files in
a temporary folder) against ``FaultyRemote``, an in-process Files remote that fails on
purpose: retryable errors (nothing stored), lost answers (the file IS stored, the caller
gets ``AmbiguousError``), 5xx-like ambiguous errors that stored nothing, permanent errors,
a refused key, and crashes. A crash raises ``Crash`` (a BaseException, like the process
dying) at an engine step (``syncd.sync.steps.STEPS``) or inside a remote call, before
or after its effect; from then on every remote call and ledger write of that "process"
raises too, and the test restarts: a new Ledger on the same file, a new engine.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import os
import shutil
import tempfile
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from syncd.api import RemoteFile
from syncd.config import MirrorConfig
from syncd.errors import (
    AmbiguousError,
    FatalError,
    NotFoundError,
    PermanentError,
    RateLimitedError,
    RetryableError,
)
from syncd.state.ledger import Ledger
from syncd.sync.engine import SyncEngine
from syncd.sync.steps import STEPS

START = 1_800_000_000.0
PATHS = ("a.txt", "b.txt", "x.txt", "d/x.txt", "d/e/f.txt", "g h.txt")
REMOTE_POINTS = ("upload.before", "upload.stored", "delete.before", "delete.done", "list")
FAULT_KINDS = (
    "ok",
    "retryable",  # 503: nothing stored
    "rate_limited",  # 429: nothing stored
    "ambiguous",  # 500 after the body was sent: nothing stored, but the client cannot know
    "lost",  # stored, then the answer was lost (AmbiguousError)
    "replayed",  # a proxy sent the request twice: two copies stored, the answer lost
    "ghost",  # the answer is lost and the server stores the file only later, at a later
    #           listing (a request still being carried out when its client gave up;
    #           possibly newer than a later upload's copy)
    "permanent",  # 400
    "fatal",  # 401
)
RECOVERY_PASSES = 4
# One worker: the same example always runs the same way, so hypothesis can shrink it.
# (Concurrent workers are exercised end to end against `syncd serve`.)
CONCURRENCY = 1


# -- local changes ---------------------------------------------------------------------


@dataclass(frozen=True)
class Write:
    path: str
    content: bytes


@dataclass(frozen=True)
class Delete:
    path: str


@dataclass(frozen=True)
class Rename:
    source: str
    target: str


@dataclass(frozen=True)
class RenameDir:
    source: str
    target: str


class Folder:
    """The mirrored folder; every write gets a new, later mtime (as time passing would)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._mtime = itertools.count(1_700_000_000_000_000_000, 1_000_000_007)

    def _touch(self, path: Path) -> None:
        stamp = next(self._mtime)
        os.utime(path, ns=(stamp, stamp))

    def apply(self, change: Write | Delete | Rename | RenameDir) -> None:
        if isinstance(change, Write):
            target = self.root / change.path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(change.content)
            self._touch(target)
        elif isinstance(change, Delete):
            (self.root / change.path).unlink(missing_ok=True)
        elif isinstance(change, Rename):
            source, target = self.root / change.source, self.root / change.target
            if source.is_file() and source != target:
                target.parent.mkdir(parents=True, exist_ok=True)
                source.rename(target)
        else:
            source, target = self.root / change.source, self.root / change.target
            if source.is_dir() and not target.exists():
                target.parent.mkdir(parents=True, exist_ok=True)
                source.rename(target)

    def files(self) -> dict[str, bytes]:
        return {
            p.relative_to(self.root).as_posix(): p.read_bytes()
            for p in sorted(self.root.rglob("*"))
            if p.is_file()
        }


# Tiny contents, so that equal sizes (what reconciliation matches on) are the rule.

# -- faults ----------------------------------------------------------------------------


class Crash(BaseException):  # not an error: the process "dies"
    """The simulated process death: nothing after it may take effect."""


class Clock:
    """Unix time for the ledger and the remote's ``created_at``; moves on with every read."""

    def __init__(self) -> None:
        self._now = START
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            self._now += 0.25
            return self._now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._now += seconds


@dataclass
class World:
    """The faults of one process life: a fault mix and at most one crash point."""

    seed: int
    weights: dict[str, int]
    crash_at: tuple[str, int] | None = None  # (step or remote point, nth time reached)
    # A local write made while the upload of its path is in flight (after the server
    # stored the bytes): the engine must notice and send the new content later.
    write_during_upload: Write | None = None
    ghost_delay: int = 2  # a ghost is stored at this listing after its upload (1: the next)
    crashed: bool = False
    _reached: Counter[str] = field(default_factory=Counter)
    _calls: Counter[str] = field(default_factory=Counter)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def check(self) -> None:
        if self.crashed:
            raise Crash("already dead")

    def reach(self, point: str) -> None:
        """Called at every step and remote point: die here if this is the crash point."""
        with self._lock:
            if self.crashed:
                raise Crash("already dead")
            self._reached[point] += 1
            if self.crash_at == (point, self._reached[point]):
                self.crashed = True
                raise Crash(point)

    def fault(self, operation: str, key: str) -> str:
        """The fault for this call: a pure function of the seed, the call and its count,
        so that worker threads interleaving differently draw the same faults."""
        with self._lock:
            self._calls[f"{operation}:{key}"] += 1
            count = self._calls[f"{operation}:{key}"]
        digest = hashlib.sha256(f"{self.seed}:{operation}:{key}:{count}".encode()).digest()
        draw = int.from_bytes(digest[:8], "big")
        kinds = [k for k in FAULT_KINDS if self.weights.get(k)]
        total = sum(self.weights[k] for k in kinds)
        pick = draw % total if total else 0
        for kind in kinds:
            if pick < self.weights[kind]:
                return kind
            pick -= self.weights[kind]
        return "ok"


QUIET = World(seed=0, weights={})


class FaultyRemote:
    """An in-process Files API holding files in memory; fails as ``world`` says."""

    def __init__(self, clock: Clock, folder: Folder) -> None:
        self.clock = clock
        self.folder = folder
        self.writes_during_upload = 0
        self._ghosts: list[list[Any]] = []  # [filename, content, purpose, listings to go]
        self.files: dict[str, RemoteFile] = {}
        self.contents: dict[str, bytes] = {}
        self.world = QUIET
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

    def add_foreign(self, filename: str, content: bytes, created: float) -> str:
        """A file someone else put there: syncd must never delete it."""
        return self._store(filename, content, "user_data", created)

    def _store(self, filename: str, content: bytes, purpose: str, created: float) -> str:
        with self._lock:
            file_id = f"file-{next(self._ids):05d}"
            self.files[file_id] = RemoteFile(file_id, filename, len(content), int(created), purpose)
            self.contents[file_id] = content
            return file_id

    def _raise(self, kind: str, what: str) -> None:
        if kind == "retryable":
            raise RetryableError(f"{what}: injected 503", status=503)
        if kind == "rate_limited":
            raise RateLimitedError(f"{what}: injected 429", status=429, retry_after=0.01)
        if kind == "permanent":
            raise PermanentError(f"{what}: injected 400", status=400)
        if kind == "fatal":
            raise FatalError(f"{what}: injected 401", status=401)

    # -- the FilesRemote interface ------------------------------------------------------

    def upload(
        self,
        path: Path,
        filename: str,
        purpose: str,
        expires_after_seconds: int | None = None,
        *,
        size: int | None = None,
    ) -> RemoteFile:
        world = self.world
        world.reach("upload.before")
        kind = world.fault("upload", filename)
        if kind == "ambiguous":  # a 5xx after the body was sent; nothing was stored
            raise AmbiguousError(f"upload {filename}: injected 500", status=500)
        if kind == "ghost":
            self._ghosts.append([filename, path.read_bytes(), purpose, world.ghost_delay])
            raise AmbiguousError(f"upload {filename}: no answer yet", status=None)
        self._raise(kind, f"upload {filename}")
        content = path.read_bytes()
        if kind == "replayed":
            self._store(filename, content, purpose, self.clock())
        file_id = self._store(filename, content, purpose, self.clock())
        change = world.write_during_upload
        if change is not None and change.path == filename:
            world.write_during_upload = None
            self.folder.apply(change)
            self.writes_during_upload += 1
        world.reach("upload.stored")
        if kind in ("lost", "replayed"):
            raise AmbiguousError(f"upload {filename}: stored, answer lost", status=502)
        return self.files[file_id]

    def list_files(self, purpose: str | None = None, order: str = "desc") -> Iterator[RemoteFile]:
        world = self.world
        world.reach("list")
        self.land_ghosts(listing=True)
        self._raise(world.fault("list", purpose or ""), "list files")
        with self._lock:
            chosen = [f for f in self.files.values() if purpose in (None, f.purpose)]
        chosen.sort(key=lambda f: (f.created_at, f.id), reverse=order == "desc")
        yield from chosen

    def land_ghosts(self, *, listing: bool = False) -> None:
        """Store the uploads whose clients gave up: at the second listing after the upload
        (``listing``), or all of them now."""
        for ghost in list(self._ghosts):
            ghost[3] -= 1 if listing else ghost[3]
            if ghost[3] <= 0:
                self._ghosts.remove(ghost)
                self._store(ghost[0], ghost[1], ghost[2], self.clock())

    def retrieve(self, file_id: str) -> RemoteFile:
        self.world.check()
        with self._lock:
            if file_id not in self.files:
                raise NotFoundError(f"no file {file_id}", status=404)
            return self.files[file_id]

    def download(self, file_id: str, out: BinaryIO) -> int:
        self.retrieve(file_id)
        return out.write(self.contents[file_id])

    def delete(self, file_id: str) -> None:
        world = self.world
        world.reach("delete.before")
        kind = world.fault("delete", file_id)
        if kind == "ambiguous":
            kind = "retryable"
        if kind != "lost":
            self._raise(kind, f"delete {file_id}")
        with self._lock:
            self.files.pop(file_id, None)
            self.contents.pop(file_id, None)
        world.reach("delete.done")
        if kind == "lost":
            raise RetryableError(f"delete {file_id}: done, answer lost", status=502)

    def close(self) -> None:
        pass


class CrashableLedger(Ledger):
    """A Ledger whose writes stop once its process has "died"."""

    world: World = QUIET

    @contextlib.contextmanager
    def _write(self) -> Iterator[Any]:
        self.world.check()
        with super()._write() as conn:
            yield conn


contents = st.one_of(st.sampled_from((b"a", b"b", b"ab", b"ba", b"")), st.binary(max_size=4))
changes = st.one_of(
    st.builds(Write, st.sampled_from(PATHS), contents),
    st.builds(Write, st.sampled_from(PATHS), contents),
    st.builds(Delete, st.sampled_from(PATHS)),
    st.builds(Rename, st.sampled_from(PATHS), st.sampled_from(PATHS)),
    st.builds(RenameDir, st.just("d"), st.sampled_from(("z", "d2/d"))),
)
crash_points = st.one_of(
    st.none(),
    st.tuples(st.sampled_from(STEPS + REMOTE_POINTS), st.integers(1, 2)),
    st.tuples(st.sampled_from(STEPS + REMOTE_POINTS), st.just(1)),
)
weights = st.fixed_dictionaries({kind: st.integers(0, 4) for kind in FAULT_KINDS})


@dataclass(frozen=True)
class Round:
    """Local changes, then one pass (full, or over the changed paths as the daemon does)
    under a fault mix, maybe a crash, maybe a write while an upload is in flight."""

    changes: list[Write | Delete | Rename | RenameDir]
    partial: bool
    seed: int
    weights: dict[str, int]
    crash_at: tuple[str, int] | None
    write_during_upload: Write | None
    ghost_delay: int = 2

    def touched(self) -> set[str]:
        """The paths a watcher would hint: every path and directory changed."""
        paths: set[str] = set()
        for change in self.changes:
            if isinstance(change, Write | Delete):
                paths.add(change.path)
            else:
                paths |= {change.source, change.target}
        return paths


rounds = st.lists(
    st.builds(
        Round,
        st.lists(changes, max_size=6),
        st.booleans(),
        st.integers(0, 2**32),
        weights,
        crash_points,
        st.none() | st.builds(Write, st.sampled_from(PATHS), contents),
        st.integers(1, 4),
    ),
    min_size=1,
    max_size=6,
)


# -- the run ---------------------------------------------------------------------------


class Mirror:
    """One mirrored folder and its ledger file, restarted after every crash."""

    def __init__(self, folder: Folder, base: Path, remote: FaultyRemote, clock: Clock) -> None:
        self.folder = folder
        self.ledger_file = base / "state" / "ledger.db"
        self.remote = remote
        self.clock = clock
        self.ledger: CrashableLedger | None = None
        self.engine: SyncEngine | None = None
        self.crashes = 0

    def start(self, world: World) -> SyncEngine:
        if self.ledger is None:
            self.ledger = CrashableLedger.open(self.ledger_file)
            config = MirrorConfig(folder=self.folder.root, concurrency=CONCURRENCY)
            self.engine = SyncEngine(
                config, self.ledger, self.remote, clock=self.clock, step_hook=self._step
            )
        self.ledger.world = world
        self.remote.world = world
        assert self.engine is not None
        return self.engine

    def _step(self, step: str, path: str) -> None:
        self.remote.world.reach(step)

    def run_pass(
        self, world: World, only: set[str] | None = None, *, retry_waiting: bool = False
    ) -> Any:
        engine = self.start(world)
        try:
            return engine.run_pass(only, retry_waiting=retry_waiting)
        except Crash:
            self.crashes += 1
            self.stop()  # the OS closes the files of a dead process; the next start is fresh
            return None

    def stop(self) -> None:
        if self.ledger is not None:
            self.ledger.world = QUIET
            self.ledger.close()
        self.ledger = None
        self.engine = None


def failed_for_good(row: Any, content: bytes) -> bool:
    """Whether the ledger holds a permanent failure of exactly this content."""
    sha = hashlib.sha256(content).hexdigest()
    return (
        row is not None
        and row.error_kind == "permanent"
        and row.failed_size == len(content)
        and row.failed_sha256 in (None, sha)
    )


def check_exactly_mirrored(mirror: Mirror, foreign: dict[str, bytes]) -> None:
    """The property (module docstring), on the folder, the ledger and the remote."""
    local = mirror.folder.files()
    remote = mirror.remote
    assert mirror.ledger is not None
    rows = mirror.ledger.rows()
    assert mirror.ledger.open_intents() == []
    for file_id, content in foreign.items():
        assert remote.contents.get(file_id) == content, f"foreign file {file_id} touched"
    ours = {i: f for i, f in remote.files.items() if i not in foreign}
    by_name = Counter(f.filename for f in ours.values())
    assert all(n == 1 for n in by_name.values()), f"duplicates: {by_name}"
    tracked = {row.file_id: path for path, row in rows.items() if row.file_id is not None}
    orphans = {i: f.filename for i, f in ours.items() if i not in tracked}
    assert not orphans, f"remote files no ledger row maps to: {orphans}"
    assert set(tracked) <= set(ours), "the ledger names remote files that are gone"
    for path, content in local.items():
        row = rows.get(path)
        if not content or failed_for_good(row, content):
            # Refused for good (an empty file, or a permanent error injected): not retried
            # until it changes; the version mirrored before, if any, stays.
            assert row is not None and row.error_kind == "permanent", path
            assert row.file_id is None or remote.files[row.file_id].filename == path
            continue
        assert row is not None and row.file_id is not None, f"{path} not mirrored"
        assert remote.files[row.file_id].filename == path
        assert remote.contents[row.file_id] == content, f"{path}: wrong content remotely"
    for path, row in rows.items():
        if row.file_id is not None:
            assert path in local, f"{path} deleted locally but still mirrored"


@settings(
    max_examples=500,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(rounds=rounds, foreign_name=st.sampled_from(PATHS))
def test_any_changes_faults_and_crashes_end_exactly_mirrored(
    rounds: list[Round], foreign_name: str
) -> None:
    """After any changes, faults and crashes, fault-free passes leave remote == folder."""
    base = Path(tempfile.mkdtemp(dir="/dev/shm" if Path("/dev/shm").is_dir() else None))
    clock = Clock()
    folder = Folder(base / "data")
    folder.root.mkdir()
    remote = FaultyRemote(clock, folder)
    foreign = {
        remote.add_foreign(foreign_name, b"not syncd's", START - 1000): b"not syncd's",
        remote.add_foreign("elsewhere.bin", b"\x00", START + 5): b"\x00",
    }
    mirror = Mirror(folder, base, remote, clock)
    try:
        for turn in rounds:
            for change in turn.changes:
                folder.apply(change)
            world = World(
                turn.seed,
                turn.weights,
                turn.crash_at,
                turn.write_during_upload,
                ghost_delay=turn.ghost_delay,
            )
            mirror.run_pass(world, turn.touched() if turn.partial else None)
        remote.land_ghosts()  # the server has finished whatever it was still doing
        for _ in range(RECOVERY_PASSES):  # as `syncd sync` does: retry without waiting
            result = mirror.run_pass(QUIET, retry_waiting=True)
            if result is not None and result.in_sync:
                break
        mirror.start(QUIET)
        event(f"crashes: {mirror.crashes}")
        event(f"writes while an upload was in flight: {remote.writes_during_upload}")
        event(f"local files at the end: {len(mirror.folder.files())}")
        check_exactly_mirrored(mirror, foreign)
    finally:
        mirror.stop()
        shutil.rmtree(base, ignore_errors=True)
