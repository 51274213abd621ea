"""The systemd units: they verify, score <= 1.5 on exposure, and run under their sandbox.

Reproduce by hand:
    systemd-analyze security --offline=true systemd/syncd.service
    systemd-analyze verify systemd/syncd.service  # only complaint: the binary is absent
"""

from __future__ import annotations

import ctypes
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
UNITS = [REPO / "systemd" / "syncd.service", REPO / "systemd" / "syncd@.service"]
MAX_EXPOSURE = 1.5
INSTALLED_BINARY = "/usr/local/bin/syncd"

ANALYZE = shutil.which("systemd-analyze")
needs_analyze = pytest.mark.skipif(ANALYZE is None, reason="systemd-analyze is not installed")


def analyze(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    assert ANALYZE is not None
    return subprocess.run(
        [ANALYZE, *args], capture_output=True, text=True, timeout=120, cwd=cwd, check=False
    )


def service_lines(unit: Path) -> list[str]:
    """The [Service] section's lines, comments and blanks included."""
    text = unit.read_text()
    section = text.split("[Service]", 1)[1].split("\n[", 1)[0]
    return section.splitlines()


@needs_analyze
@pytest.mark.parametrize("unit", UNITS, ids=lambda p: p.name)
def test_exposure_score_is_at_most_1_5(unit: Path) -> None:
    """`systemd-analyze security --offline=true` rates the unit 1.5 or lower."""
    result = analyze("security", "--offline=true", "--threshold=15", str(unit))
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", result.stdout)
    assert match, result.stdout + result.stderr
    assert float(match.group(1)) <= MAX_EXPOSURE, result.stdout
    assert result.returncode == 0, result.stdout + result.stderr


HOME_FOLDER_DROP_IN = """
[Service]
ProtectHome=tmpfs
BindReadOnlyPaths=/home/alice/datasets
"""


@needs_analyze
def test_home_folder_drop_in_keeps_the_score(tmp_path: Path) -> None:
    """The drop-in docs/systemd.md gives for a folder in /home keeps exposure <= 1.5."""
    documented = {line.strip() for line in (REPO / "docs" / "systemd.md").read_text().splitlines()}
    assert set(HOME_FOLDER_DROP_IN.split()) <= documented
    unit = tmp_path / "syncd.service"
    unit.write_text(UNITS[0].read_text() + HOME_FOLDER_DROP_IN)
    result = analyze("security", "--offline=true", "--threshold=15", str(unit))
    assert result.returncode == 0, result.stdout + result.stderr


@needs_analyze
@pytest.mark.parametrize("unit", UNITS, ids=lambda p: p.name)
def test_unit_verifies_with_an_existing_binary(unit: Path, tmp_path: Path) -> None:
    """`systemd-analyze verify` is clean once ExecStart names a binary that exists."""
    true = shutil.which("true")
    assert true is not None
    copy = tmp_path / unit.name
    copy.write_text(unit.read_text().replace(INSTALLED_BINARY, true))
    result = analyze("verify", str(copy), cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == result.stderr.strip() == ""


@needs_analyze
@pytest.mark.parametrize("unit", UNITS, ids=lambda p: p.name)
def test_unit_as_shipped_only_misses_the_installed_binary(unit: Path) -> None:
    """Verifying the shipped file complains at most that syncd is not installed here."""
    result = analyze("verify", str(unit), cwd=unit.parent)
    complaints = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    for line in complaints:
        assert f"Command {INSTALLED_BINARY} is not executable" in line, line


@pytest.mark.parametrize("unit", UNITS, ids=lambda p: p.name)
def test_every_setting_says_why(unit: Path) -> None:
    """Each directive in [Service] sits in a block that starts with a comment."""
    block_has_comment = False
    for line in service_lines(unit):
        stripped = line.strip()
        if not stripped:
            block_has_comment = False
        elif stripped.startswith("#"):
            block_has_comment = True
        else:
            assert block_has_comment or stripped.startswith(("Type=", "ExecStart=")), stripped


@pytest.mark.parametrize("unit", UNITS, ids=lambda p: p.name)
def test_unit_has_the_daemon_contract(unit: Path) -> None:
    """Type=notify, a watchdog, reload by SIGHUP, a state dir, the key as a credential."""
    settings = {line.strip() for line in service_lines(unit) if "=" in line and "#" not in line}
    for required in (
        "Type=notify",
        "NotifyAccess=main",
        "WatchdogSec=60",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "Restart=on-failure",
        "TimeoutStopSec=20",
        "DynamicUser=yes",
        "LoadCredential=openai_api_key:/etc/syncd/openai_api_key",
        "EnvironmentFile=-/etc/syncd/syncd.env",
    ):
        assert required in settings, required


def test_template_reads_the_instance_config_and_state() -> None:
    """syncd@NAME reads /etc/syncd/NAME.toml, keeps its ledger in /var/lib/syncd-NAME."""
    plain, template = UNITS
    assert f"ExecStart={INSTALLED_BINARY} run --config /etc/syncd/syncd.toml" in plain.read_text()
    text = template.read_text()
    assert f"ExecStart={INSTALLED_BINARY} run --config /etc/syncd/%i.toml" in text
    assert "\nStateDirectory=syncd-%i\n" in text


def test_state_directories_do_not_nest() -> None:
    """Each unit has its own state directory and user: nested ones fail 238/STATE_DIRECTORY.

    systemd 252 refuses to start syncd.service once an instance made /var/lib/syncd/NAME
    (and the other way round); without User= all of them share the dynamic user "syncd".
    """
    plain, template = (set(service_lines(unit)) for unit in UNITS)
    assert {"StateDirectory=syncd", "User=syncd"} <= plain
    assert {"StateDirectory=syncd-%i", "User=syncd-%i"} <= template


@pytest.mark.parametrize("unit", UNITS, ids=lambda p: p.name)
def test_unit_bounds_memory_and_tasks(unit: Path) -> None:
    """MemoryMax= and TasksMax= are set, each under a comment saying how to size it."""
    lines = service_lines(unit)
    for setting in ("MemoryMax=512M", "TasksMax=512"):
        assert setting in lines, setting
        comment = lines[lines.index(setting) - 1]
        assert comment.startswith("#"), f"{setting} needs its sizing comment"
    text = unit.read_text()
    assert "0.4 KiB per file watched" in text  # the memory rule of thumb
    assert "64 x 6" in text  # the task count: workers x (itself, 4 parts, the md5)


def shell_blocks(doc: Path) -> str:
    """The text of every ```sh block in a Markdown file."""
    return "\n".join(re.findall(r"^```sh\n(.*?)^```", doc.read_text(), re.S | re.M))


def test_install_docs_match_the_units() -> None:
    """The documented install puts syncd where ExecStart= looks; no step says --prefix."""
    link = f"ln -sf /opt/syncd/bin/syncd {INSTALLED_BINARY}"
    for doc in (REPO / "README.md", REPO / "docs" / "systemd.md"):
        steps = shell_blocks(doc)
        assert link in steps, doc.name
        assert "umask 022 && /usr/bin/python3 -m venv /opt/syncd" in steps, doc.name
        assert "--prefix" not in steps, doc.name  # Debian: /usr/local/local/bin, 203/EXEC
    guide = (REPO / "docs" / "systemd.md").read_text()
    assert "-p DynamicUser=yes -p User=syncd -p StateDirectory=syncd" in guide


def test_template_has_the_same_sandbox_as_the_plain_unit() -> None:
    """Apart from the %i lines and the user's name, both units carry identical settings."""
    plain, template = UNITS

    def settings(unit: Path) -> list[str]:
        return [
            line
            for line in service_lines(unit)
            if line
            and not line.startswith("#")
            and "%i" not in line
            and "syncd.toml" not in line
            and not line.startswith(("StateDirectory=", "User="))
        ]

    assert settings(plain) == settings(template)


def test_watch_stack_runs_under_memory_deny_write_execute(tmp_path: Path) -> None:
    """With the kernel's MemoryDenyWriteExecute (PR_SET_MDWE) on, imports and watching work."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(66, 0, 0, 0, 0) < 0:  # PR_GET_MDWE: kernels before 6.3 lack it
        pytest.skip("this kernel has no PR_SET_MDWE")
    script = textwrap.dedent(
        """
        import ctypes, mmap, sys, threading
        from pathlib import Path
        libc = ctypes.CDLL(None, use_errno=True)
        assert libc.prctl(65, 1, 0, 0, 0) == 0  # PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN
        try:
            mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
            sys.exit("W+X memory was allowed: MDWE is not in force")
        except OSError:
            pass
        import httpx, sqlite3, structlog  # noqa: F401
        from syncd.daemon.notify import SystemdNotifier
        from syncd.local.watch.watcher import FolderWatcher
        folder = Path(sys.argv[1])
        seen = threading.Event()
        watcher = FolderWatcher(
            folder, lambda hint: hint == "probe.txt" and seen.set(),
            on_trouble=print, on_root_gone=lambda: None,
        )
        watcher.start()
        (folder / "probe.txt").write_text("x")
        ok = seen.wait(10)
        watcher.stop()
        SystemdNotifier({}).ready()
        sys.exit(0 if ok else "no hint arrived under MDWE")
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
