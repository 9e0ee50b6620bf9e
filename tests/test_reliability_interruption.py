"""Interrupting the real command line: SIGKILL and Ctrl-C (SIGINT) during evaluations and studies.

Guarantees checked here: a killed run leaves no record of the job it was computing, only
whole records of the jobs it had finished (and hidden ``.*.tmp`` files nothing reads);
``report`` still renders from them and rerunning the same command computes what is
missing. Ctrl-C ends with exit status 130 and one stderr line saying what is recorded,
without a traceback from the main process or its DataLoader workers.

Kills are timed by watching the process (its DataLoader workers appearing, its progress
lines), never by sleeping, so the tests hold on a loaded machine.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cutmix_eval.cli import main
from conftest import CLI, cli_env, tiny_checkpoint, whole_records
from test_study import write_study

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists() or sys.platform == "win32",
                                reason="watches processes through /proc and sends POSIX signals")

# Run the CLI, but SIGKILL the process when it is about to rename a file ending in argv[1] into
# place: the temp file is complete, the rename (the commit) never happens.
KILL_AT_RENAME = """
import os, signal, sys
from cutmix_eval.cli import main

rename = os.replace
def replace(src, dst):
    if str(dst).endswith(sys.argv[1]):
        os.kill(os.getpid(), signal.SIGKILL)
    rename(src, dst)
os.replace = replace
main(sys.argv[2:])
"""


def occlusion(ckpt: Path, results: Path, limit: int, *extra: str) -> list[str]:
    return ["occlusion", "--ckpt", str(ckpt), "--data", "synthetic", "--limit", str(limit), "--batch-size", "8",
            "--examples", "0", "--results", str(results), "--output-dir", str(results.parent / "occlusion"),
            *extra]


def one_record(tmp_path: Path) -> tuple[Path, Path, set[Path]]:
    """A checkpoint and a results folder holding one record (classification): ``(ckpt, folder,
    the record's two files)``."""
    ckpt = tiny_checkpoint(tmp_path / "m.pth")
    results = tmp_path / "results"
    assert main(["evaluate", "--ckpt", str(ckpt), "--data", "synthetic", "--limit", "16", "--results",
                 str(results)]) == 0
    (record,) = whole_records(results)
    return ckpt, results, {record.path, record.path.with_suffix(".npz")}


def analyses_recorded(results: Path) -> list[str]:
    return sorted(r.analysis for r in whole_records(results))


def start(log: Path, argv: list[str], program: tuple[str, ...] = tuple(CLI)) -> subprocess.Popen:
    """``program argv`` in its own process group with Ctrl-C at its default (as a shell runs a
    job, even when the tests themselves run as a background job, which ignores SIGINT and
    would pass that on), stdout to ``log``, stderr to ``log.err``."""
    with open(log, "w") as out, open(log.with_suffix(".err"), "w") as err:
        return subprocess.Popen([*program, *argv], env=cli_env(), stdout=out, stderr=err, start_new_session=True,
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def wait_for(proc: subprocess.Popen, condition, what: str, timeout: float = 300) -> None:
    """Poll ``condition()`` until it holds; fail if the process ends first or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert proc.poll() is None, f"the command ended (status {proc.returncode}) before {what}"
        assert time.monotonic() < deadline, f"no {what} within {timeout} s"
        time.sleep(0.01)


def forked_workers(pid: int) -> int:
    """How many children of ``pid`` run its own command line: DataLoader workers (forked), and
    for a moment the one child torch's import forks to run ``ldconfig`` (ctypes' library
    lookup) before it execs; waiting for two tells workers (``--workers 2``) from it."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return 0
    count = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parent = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            count += parent == pid and (stat.parent / "cmdline").read_bytes() == cmdline
        except (OSError, IndexError, ValueError):  # the process ended while we looked
            continue
    return count


def finish(proc: subprocess.Popen, log: Path, sig: signal.Signals) -> tuple[str, str]:
    """Send ``sig`` to the process group (Ctrl-C in a shell reaches every process of the job),
    wait for the end; ``(stdout, stderr)``."""
    os.killpg(proc.pid, sig)
    proc.wait(timeout=300)
    return log.read_text(), log.with_suffix(".err").read_text()


def assert_report_renders(results: Path, out: Path, *expected: str) -> None:
    assert main(["report", str(results), "--format", "md", "--out", str(out)]) == 0
    text = (out / "report.md").read_text()
    for part in expected:
        assert part in text, part


# --------------------------------------------------------------------------- SIGKILL, evaluation commands


@pytest.mark.parametrize("commit, left", [(".npz", []), (".json", [".npz"])], ids=["side-file", "json"])
def test_sigkill_while_a_record_is_committed_leaves_no_record(tmp_path, commit, left):
    """Killed as the side file, then as the JSON, is renamed into place (the worst moments):
    temp files and at most an unreferenced side file stay, no record; rerunning completes."""
    ckpt, results, before = one_record(tmp_path)
    argv = occlusion(ckpt, results, 16, "--fractions", "0,1")
    killed = subprocess.run([sys.executable, "-c", KILL_AT_RENAME, commit, *argv], env=cli_env(),
                            capture_output=True, text=True, timeout=300)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert analyses_recorded(results) == ["classification"]
    new = sorted(set(results.iterdir()) - before)
    assert [p.suffix for p in new if not p.name.startswith(".")] == left
    assert len([p for p in new if p.name.startswith(".")]) == 1  # the temp file the kill left
    assert_report_renders(results, tmp_path / "report", "top-1 error")
    assert main(argv) == 0
    assert analyses_recorded(results) == ["classification", "occlusion"]


def test_sigkill_during_an_evaluation_command(tmp_path):
    """Killed (with its DataLoader workers) while computing: nothing of the job is written;
    the report renders from the other record; the same command (without workers, which are
    not part of the job) then records it."""
    ckpt, results, before = one_record(tmp_path)
    argv = occlusion(ckpt, results, 200)
    proc = start(tmp_path / "killed.log", [*argv, "--workers", "2"])
    wait_for(proc, lambda: forked_workers(proc.pid) >= 2, "DataLoader workers")
    finish(proc, tmp_path / "killed.log", signal.SIGKILL)
    assert proc.returncode == -signal.SIGKILL
    assert analyses_recorded(results) == ["classification"] and set(results.iterdir()) == before
    assert_report_renders(results, tmp_path / "report", "top-1 error")
    assert main(argv) == 0
    assert analyses_recorded(results) == ["classification", "occlusion"]


# --------------------------------------------------------------------------- Ctrl-C


@pytest.mark.parametrize("delay", [0.0, 0.5], ids=["as-workers-fork", "while-workers-run"])
def test_ctrl_c_during_an_evaluation_command(tmp_path, delay):
    """Ctrl-C (SIGINT to the process group) even while the DataLoader forks its workers: exit
    status 130, one line naming what is not recorded and where, no traceback, no record."""
    ckpt = tiny_checkpoint(tmp_path / "m.pth")
    results = tmp_path / "results"
    proc = start(tmp_path / "run.log", occlusion(ckpt, results, 2000, "--workers", "2"))
    wait_for(proc, lambda: forked_workers(proc.pid) >= 2, "DataLoader workers")
    time.sleep(delay)
    out, err = finish(proc, tmp_path / "run.log", signal.SIGINT)
    assert proc.returncode == 130, err[-3000:]
    assert err.splitlines() == [f"cutmix-eval: interrupted; occlusion not recorded (nothing half-written was kept "
                                f"in {results}); rerun the same command to compute it"]
    assert not (results.exists() and any(results.iterdir())) and "recorded in" not in out


def test_ctrl_c_in_the_shared_pass_of_evaluate_all_names_what_is_missing(tmp_path, monkeypatch, capsys):
    """``evaluate --all`` reuses the recorded classification; Ctrl-C in the one pass computing
    the others names exactly those."""
    ckpt, results, before = one_record(tmp_path)
    capsys.readouterr()

    def pressed(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("cutmix_eval.evaluate.full.shared_pass", pressed)
    assert main(["evaluate", "--all", "--ckpt", str(ckpt), "--data", "synthetic", "--limit", "16", "--results",
                 str(results)]) == 130
    assert capsys.readouterr().err.splitlines() == [
        f"cutmix-eval: interrupted; localization, ood not recorded (nothing half-written was kept in {results}); "
        "rerun the same command to compute them"]
    assert set(results.iterdir()) == before


def test_ctrl_c_during_a_study_with_workers(tmp_path):
    """Ctrl-C in a study's second job: status 130 and one line counting the recorded jobs."""
    path = write_study(tmp_path, {"classification": {}, "occlusion": {}, "adversarial": {}}, methods=("cutmix",),
                       limit=600, workers=2)
    results = tmp_path / "out" / "results"
    proc = start(tmp_path / "study.log", ["study", str(path)])
    wait_for(proc, lambda: "[1/3]" in (tmp_path / "study.log").read_text(), "first job")
    out, err = finish(proc, tmp_path / "study.log", signal.SIGINT)
    assert proc.returncode == 130, err[-3000:]
    recorded = whole_records(results)
    assert err.splitlines() == [f"cutmix-eval: interrupted; {len(recorded)} of 3 jobs recorded in {results}; rerun "
                                "the same command to finish the rest"]
    assert 1 <= len(recorded) < 3 and "report (" not in out


# --------------------------------------------------------------------------- SIGKILL, studies


def test_sigkill_during_a_study_then_rerun_computes_only_the_rest(tmp_path, capsys):
    """Killed after its second job: the finished jobs are records, the report renders from them,
    rerunning reuses them and computes the rest, and the records equal an uninterrupted run's."""
    analyses = {"classification": {}, "occlusion": {"fractions": [0.0, 0.5, 1.0]}}
    path = write_study(tmp_path, analyses, limit=300)
    results = tmp_path / "out" / "results"
    log = tmp_path / "study.log"
    proc = start(log, ["study", str(path)])
    wait_for(proc, lambda: "[2/4]" in log.read_text(), "second job")
    out, _ = finish(proc, log, signal.SIGKILL)
    assert proc.returncode == -signal.SIGKILL and "[4/4]" not in out
    finished = out.count("\n[")  # progress lines: a job is recorded before its line is printed
    recorded = whole_records(results)
    assert finished <= len(recorded) <= finished + 1 and len(recorded) < 4
    assert_report_renders(results, tmp_path / "partial", "top-1 error")

    assert main(["study", str(path)]) == 0
    rerun = capsys.readouterr().out
    assert rerun.count(": reused (") == len(recorded) and "[4/4]" in rerun
    assert main(["study", str(write_study(tmp_path, analyses, limit=300, output="straight"))]) == 0
    straight = {r.path.name: r for r in whole_records(tmp_path / "straight" / "results")}
    resumed = {r.path.name: r for r in whole_records(results)}
    assert sorted(resumed) == sorted(straight) and len(straight) == 4
    for name, record in resumed.items():
        assert record.job == straight[name].job
        for a, b in zip(record.results, straight[name].results, strict=True):
            assert a.metrics == pytest.approx(b.metrics, abs=1e-6), name
