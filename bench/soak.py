"""Soak: `syncd run` through thousands of random changes while `syncd serve` misbehaves.

    python bench/soak.py                       # 10 minutes, 20 % faults
    python bench/soak.py --duration 120        # a shorter run
    python bench/soak.py --json soak.json      # also write the result as JSON

Starts `syncd serve` on loopback with faults on about ``--fault-rate`` of the uploads
(5xx answers, answers lost after the file was stored, and 429 + Retry-After from a rate
limit) and `syncd run FOLDER --debounce 0.3` against it, then for ``--duration``
seconds makes random changes in bursts: create, modify (in place or by an atomic save
through a ``.tmp`` file), delete, rename a file, rename or delete a directory. The
daemon's resident memory is sampled every ``--sample-every`` seconds throughout.

Then the changes stop, faults are turned off, and the script waits (at most
``--quiesce-timeout`` s; a file that failed lands in a per-file backoff of 1 min or
more) until the remote listing equals the folder by name and size, stops the daemon
with SIGTERM and reports:

- lost: a local file with no remote copy, or whose remote bytes differ (downloaded and
  compared, every file);
- duplicate: a path with more than one remote file;
- orphan: a remote file that neither a ledger row nor an open intent refers to (the
  server only holds syncd's files, apart from a few foreign ones planted at the start,
  which must be left untouched);
- kept: a remote file the ledger keeps as possibly syncd's (``syncd candidates``); with
  no other writer and no replayed request nothing is ambiguous, so it must be 0 too;
- extra: a remote file for a path deleted locally (a delete that never happened);
- the memory curve (time, RSS) and the request and fault counts.

Everything runs on loopback in a temporary directory, kept when something is off
(``--keep DIR`` works in DIR and keeps it); every wait has a deadline. Exit code 0
when lost, duplicate, orphan, kept and extra are all 0 and no foreign file was touched.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import shlex
import shutil
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "tests" / "e2e")]
from serverproc import ServerProcess  # noqa: E402
from test_run_support import DaemonProcess  # noqa: E402

from syncd.state.ledger import Ledger  # noqa: E402

DIRECTORIES = [f"d{i}" for i in range(12)] + [f"d{i}/sub{j}" for i in range(4) for j in range(3)]
FOREIGN = {"foreign-a.txt": b"someone else's file\n", "d0/foreign-b.txt": b"not syncd's\n"}
STATS_EVERY = 30.0  # fetch and reset the server's request records this often


@dataclass
class Sample:
    t: float
    rss_mb: float


@dataclass
class SoakResult:
    command: str
    duration: float
    fault_rate: float
    changes: Counter[str] = field(default_factory=Counter)
    bursts: int = 0
    requests: Counter[str] = field(default_factory=Counter)
    faults: Counter[str] = field(default_factory=Counter)
    quiesced_after: float | None = None
    local_files: int = 0
    remote_files: int = 0
    lost: list[str] = field(default_factory=list)
    duplicate: list[str] = field(default_factory=list)
    orphan: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)  # possibly syncd's, kept (candidates)
    extra: list[str] = field(default_factory=list)  # deleted locally, still remote
    open_intents: list[str] = field(default_factory=list)  # left for the next start
    foreign_touched: list[str] = field(default_factory=list)
    daemon_exit: int | None = None
    memory: list[Sample] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (
            self.lost
            or self.duplicate
            or self.orphan
            or self.kept
            or self.extra
            or self.foreign_touched
        )


# -- the changes -----------------------------------------------------------------------


class ChangeMaker:
    """Random changes to ``folder`` (the files it holds are tracked, not re-listed)."""

    def __init__(self, folder: Path, rng: random.Random, min_files: int, max_files: int) -> None:
        self.folder = folder
        self.rng = rng
        self.min_files = min_files
        self.max_files = max_files
        self.files: set[str] = set()
        self.counts: Counter[str] = Counter()
        self._serial = 0

    def _content(self) -> bytes:
        return self.rng.randbytes(self.rng.randint(1, 4000))

    def _new_name(self) -> str:
        self._serial += 1
        directory = self.rng.choice([*DIRECTORIES, ""])
        name = f"f{self._serial:06d}{self.rng.choice(['.txt', '.bin', ' copy.txt', '.json'])}"
        return f"{directory}/{name}" if directory else name

    def _write(self, rel: str, content: bytes) -> None:
        path = self.folder / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)

    def create(self) -> None:
        rel = self._new_name()
        self._write(rel, self._content())
        self.files.add(rel)

    def modify(self) -> None:
        rel = self.rng.choice(sorted(self.files))
        if self.rng.random() < 0.3:  # an editor's atomic save: temp file, rename over
            temp = self.folder / (rel + ".tmp")
            temp.write_bytes(self._content())
            temp.replace(self.folder / rel)
        else:
            self._write(rel, self._content())

    def delete(self) -> None:
        rel = self.rng.choice(sorted(self.files))
        (self.folder / rel).unlink(missing_ok=True)
        self.files.discard(rel)

    def rename(self) -> None:
        rel = self.rng.choice(sorted(self.files))
        target = self._new_name()
        (self.folder / target).parent.mkdir(parents=True, exist_ok=True)
        (self.folder / rel).rename(self.folder / target)
        self.files.discard(rel)
        self.files.add(target)

    def rename_directory(self) -> None:
        source = self.rng.choice(DIRECTORIES)
        target = f"moved{self.rng.randint(0, 10**6)}"
        if not (self.folder / source).is_dir():
            return
        (self.folder / source).rename(self.folder / target)
        prefix = source + "/"
        moved = {f for f in self.files if f.startswith(prefix)}
        self.files -= moved
        self.files |= {target + "/" + f[len(prefix) :] for f in moved}

    def delete_directory(self) -> None:
        """Delete every file of one moved directory, if it holds at most 40."""
        tops = Counter(f.split("/", 1)[0] for f in self.files if f.startswith("moved"))
        small = sorted(top for top, n in tops.items() if n <= 40)
        if not small:
            return
        top = self.rng.choice(small)
        for rel in sorted(f for f in self.files if f.startswith(top + "/")):
            (self.folder / rel).unlink(missing_ok=True)
            self.files.discard(rel)

    def step(self) -> None:
        """One random change. The population stays between the starting count and
        ``max_files``; directory moves are rare, so that no burst deletes (moves) more
        than half of the files, which the mass-delete guard would rightly refuse."""
        kinds = ["create", "modify", "delete", "rename", "rename_directory", "delete_directory"]
        weights = [30.0, 35.0, 15.0, 17.0, 1.0, 1.0]
        if len(self.files) < self.min_files:
            weights[0] = 60.0
        if len(self.files) >= self.max_files:
            weights[0] = 0.0
        kind = self.rng.choices(kinds, weights)[0]
        getattr(self, kind)()
        self.counts[kind] += 1


# -- measuring -------------------------------------------------------------------------


class MemorySampler(threading.Thread):
    """Samples a process's VmRSS every ``every`` seconds until stopped."""

    def __init__(self, pid: int, every: float, started: float) -> None:
        super().__init__(daemon=True)
        self.pid, self.every, self.started = pid, every, started
        self.samples: list[Sample] = []
        self.stop_event = threading.Event()

    def sample(self) -> None:
        try:
            status = Path(f"/proc/{self.pid}/status").read_text()
        except OSError:
            return
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                kib = int(line.split()[1])
                self.samples.append(Sample(round(time.monotonic() - self.started, 1), kib / 1024))

    def run(self) -> None:
        while not self.stop_event.is_set():
            self.sample()
            self.stop_event.wait(self.every)


def collect_stats(server: ServerProcess, result: SoakResult) -> None:
    """Add the server's request records to the totals and start afresh."""
    stats = server.stats()
    server.reset_stats()
    for record in stats["requests"]:
        result.requests[record["route"]] += 1
        if record["fault"]:
            result.faults[record["fault"]] += 1
            result.faults[f"{record['route']}:{record['fault']}"] += 1


def remote_listing(server: ServerProcess) -> list[dict[str, Any]]:
    with httpx.Client(base_url=server.base_url + "/", headers=server.headers(), timeout=60) as h:
        response = h.get("files", params={"limit": 10000})
        response.raise_for_status()
        files: list[dict[str, Any]] = response.json()["data"]
        if response.json().get("has_more"):
            raise SystemExit("soak: more than 10,000 remote files; raise the page handling")
        return files


def local_files(folder: Path) -> dict[str, Path]:
    return {
        p.relative_to(folder).as_posix(): p
        for p in folder.rglob("*")
        if p.is_file() and not p.name.endswith(".tmp")
    }


def matches_by_size(server: ServerProcess, folder: Path) -> bool:
    remote = Counter((f["filename"], f["bytes"]) for f in remote_listing(server))
    for name, content in FOREIGN.items():
        remote[(name, len(content))] -= 1
    local = Counter((rel, p.stat().st_size) for rel, p in local_files(folder).items())
    return +remote == local


def final_check(server: ServerProcess, folder: Path, ledger_file: Path, result: SoakResult) -> None:
    listing = remote_listing(server)
    foreign_ids = {f["id"]: f["filename"] for f in listing if f["filename"] in FOREIGN}
    with Ledger.open_readonly(ledger_file) as ledger:
        kept = {c.file_id for c in ledger.candidates()}
    result.kept = sorted(f"{f['filename']} ({f['id']})" for f in listing if f["id"] in kept)
    ours = [f for f in listing if f["id"] not in foreign_ids and f["id"] not in kept]
    result.foreign_touched = sorted(set(FOREIGN) - set(foreign_ids.values()))
    by_name: dict[str, list[dict[str, Any]]] = {}
    for item in ours:
        by_name.setdefault(item["filename"], []).append(item)
    result.duplicate = sorted(name for name, items in by_name.items() if len(items) > 1)
    local = local_files(folder)
    result.local_files, result.remote_files = len(local), len(ours)
    for rel, path in sorted(local.items()):
        items = by_name.get(rel, [])
        want = hashlib.sha256(path.read_bytes()).hexdigest()
        # From the store: the API (like the real one) refuses to download user_data.
        got = {hashlib.sha256(server.stored_content(item["id"])).hexdigest() for item in items}
        if want not in got:
            result.lost.append(rel)
    result.extra = sorted(set(by_name) - set(local))
    with Ledger.open_readonly(ledger_file) as ledger:
        tracked = {row.file_id for row in ledger.rows().values() if row.file_id}
        intents = ledger.open_intents()
    result.open_intents = [f"{i.kind} {i.path} {i.file_id or ''}".strip() for i in intents]
    pending = {i.file_id for i in intents if i.file_id}
    result.orphan = sorted(
        f"{f['filename']} ({f['id']})" for f in ours if f["id"] not in tracked | pending
    )


# -- the run ---------------------------------------------------------------------------


def plant_foreign(server: ServerProcess) -> None:
    with httpx.Client(base_url=server.base_url + "/", headers=server.headers(), timeout=30) as h:
        for name, content in FOREIGN.items():
            response = h.post(
                "files", data={"purpose": "user_data"}, files={"file": (name, content)}
            )
            response.raise_for_status()


def faults_for(rate: float, seed: int) -> dict[str, Any]:
    """About ``rate`` of the uploads fail: 60 % of it as 5xx, 40 % as lost answers (on
    POSTs, drawn only when no error was); plus 429 + Retry-After beyond 60 requests/s."""
    errors = 0.6 * rate
    return {
        "seed": seed,
        "error_rate": errors,
        "error_statuses": [500, 502, 503],
        "lost_answer_rate": min(1.0, 0.4 * rate / (1 - errors)) if errors < 1 else 0.0,
        "rate_limit": {"requests": 60, "per_seconds": 1, "retry_after": 0.5},
    }


def soak(args: argparse.Namespace, workdir: Path, command: str) -> SoakResult:
    rng = random.Random(args.seed)
    folder, ledger_file = workdir / "data", workdir / "state" / "ledger.db"
    folder.mkdir(parents=True)
    result = SoakResult(command=command, duration=args.duration, fault_rate=args.fault_rate)
    changes = ChangeMaker(folder, rng, args.files, args.max_files)
    for _ in range(args.files):
        changes.create()
    with ServerProcess(workdir / "store", log_path=workdir / "serve.log") as server:
        plant_foreign(server)
        server.reset_stats()
        server.set_faults(faults_for(args.fault_rate, args.seed))
        # The soak deletes more than half of its files within minutes, on purpose: the
        # daemon's mass-delete guard, which counts the deletes of its rescan interval,
        # would rightly hold them back. An explicit limit above anything it does.
        daemon = DaemonProcess(
            server,
            folder,
            ledger_file,
            "--max-delete",
            "1000000",
            debounce=args.debounce,
            log_path=workdir / "run.log",
            env={"XDG_STATE_HOME": str(workdir / "xdg")},  # its own registry of ledgers
        )
        with daemon:
            daemon.start()
            started = time.monotonic()
            sampler = MemorySampler(daemon.pid, args.sample_every, started)
            sampler.start()
            next_stats = started + STATS_EVERY
            end = started + args.duration
            while time.monotonic() < end:
                for _ in range(rng.randint(1, args.burst)):
                    changes.step()
                result.bursts += 1
                if daemon.proc is not None and daemon.proc.poll() is not None:
                    raise SystemExit(f"soak: syncd run exited with {daemon.proc.returncode}")
                if time.monotonic() >= next_stats:
                    collect_stats(server, result)
                    next_stats += STATS_EVERY
                time.sleep(min(rng.uniform(0.05, 1.5), max(0.0, end - time.monotonic())))
            collect_stats(server, result)
            server.set_faults(None)
            print(f"soak: changes stopped after {result.bursts} bursts; waiting for quiet")
            quiet_from = time.monotonic()
            deadline = quiet_from + args.quiesce_timeout
            while time.monotonic() < deadline:
                if matches_by_size(server, folder):
                    result.quiesced_after = round(time.monotonic() - quiet_from, 1)
                    break
                time.sleep(2.0)
            result.daemon_exit = daemon.stop()
            sampler.stop_event.set()
            sampler.join(timeout=10)
            result.memory = sampler.samples
            collect_stats(server, result)
        final_check(server, folder, ledger_file, result)
    result.changes = changes.counts
    return result


def memory_table(samples: list[Sample], rows: int = 24) -> list[str]:
    """A few evenly spread samples (the first, the last and the peak always among them)."""
    if not samples:
        return ["  (no samples)"]
    picks = {0, len(samples) - 1, max(range(len(samples)), key=lambda i: samples[i].rss_mb)}
    step = max(1, len(samples) // rows)
    picks |= set(range(0, len(samples), step))
    lines = ["  t (s)   RSS (MiB)"]
    lines += [f"  {samples[i].t:6.0f}  {samples[i].rss_mb:9.1f}" for i in sorted(picks)]
    return lines


def report(result: SoakResult) -> str:
    faulted = sum(v for k, v in result.faults.items() if ":" not in k)
    total = sum(result.requests.values())
    changes = ", ".join(f"{k} {v}" for k, v in sorted(result.changes.items()))
    routes = ", ".join(f"{k} {v}" for k, v in result.requests.most_common())
    kinds = ", ".join(f"{k} {v}" for k, v in result.faults.most_common() if ":" not in k)
    creates = result.requests["create"]
    faulted_creates = sum(v for k, v in result.faults.items() if k.startswith("create:"))
    share = faulted_creates / creates if creates else 0.0
    quiet = result.quiesced_after
    lines = [
        f"command: {result.command}",
        f"changes: {sum(result.changes.values())} in {result.bursts} bursts over "
        f"{result.duration:.0f} s ({changes})",
        f"requests: {total} ({routes})",
        f"faults injected: {faulted} ({kinds}); {share:.1%} of {creates} uploads faulted",
        "quiet after the changes stopped: "
        + ("never (timed out)" if quiet is None else f"{quiet} s"),
        f"files: {result.local_files} local, {result.remote_files} remote (syncd's)",
        f"lost: {len(result.lost)}   duplicate: {len(result.duplicate)}   "
        f"orphan: {len(result.orphan)}   kept as possibly ours: {len(result.kept)}   "
        f"extra (deleted locally, still remote): "
        f"{len(result.extra)}   foreign touched: {len(result.foreign_touched)}",
        f"daemon exit code on SIGTERM: {result.daemon_exit}; open intents left for the next "
        f"start: {len(result.open_intents)}",
    ]
    for label, items in (
        ("lost", result.lost),
        ("duplicate", result.duplicate),
        ("orphan", result.orphan),
        ("kept", result.kept),
        ("extra", result.extra),
        ("open intents", result.open_intents),
    ):
        if items:
            lines.append(f"  {label}: {', '.join(items[:10])}{' ...' if len(items) > 10 else ''}")
    peak = max((s.rss_mb for s in result.memory), default=0.0)
    lines += [f"memory of syncd run (peak {peak:.1f} MiB):", *memory_table(result.memory)]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=600.0, help="seconds of changes")
    parser.add_argument("--fault-rate", type=float, default=0.2, help="share of uploads failing")
    parser.add_argument("--files", type=int, default=1000, help="files before the daemon starts")
    parser.add_argument("--max-files", type=int, default=2500, help="stop creating beyond this")
    parser.add_argument("--burst", type=int, default=40, help="most changes in one burst")
    parser.add_argument("--debounce", type=float, default=0.3)
    parser.add_argument("--sample-every", type=float, default=5.0, help="RSS sample period (s)")
    parser.add_argument("--quiesce-timeout", type=float, default=420.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--keep", type=Path, metavar="DIR", help="work in DIR and keep it")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the result here")
    args = parser.parse_args()
    command = shlex.join(["python", "bench/soak.py", *sys.argv[1:]])
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=False)
        result = soak(args, args.keep, command)
    else:
        scratch = Path(tempfile.mkdtemp(prefix="syncd-soak-"))
        result = soak(args, scratch, command)
        if result.ok:
            shutil.rmtree(scratch, ignore_errors=True)
        else:
            print(f"soak: something is off; the run is kept in {scratch} (run.log, ledger)")
    print(report(result))
    if args.json:
        data = asdict(result)  # Counters come out mangled: write them as plain dicts
        for name in ("changes", "requests", "faults"):
            data[name] = dict(getattr(result, name))
        data["ok"] = result.ok
        args.json.write_text(json.dumps(data, indent=2) + "\n")
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
