"""Progress on stderr when it is not a terminal: periodic whole lines, nothing for short work."""

import subprocess
import time

from conftest import CLI, cli_env, tiny_checkpoint
from cutmix_eval.progress import SECONDS_ENV, progress_bar


def test_lines_not_carriage_returns_and_nothing_for_short_work(capsys, monkeypatch):
    monkeypatch.setenv(SECONDS_ENV, "0.01")
    for _ in progress_bar(range(4), desc="slow work", unit="batch"):
        time.sleep(0.03)
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert "\r" not in err and len(lines) >= 2 and all(line.startswith("slow work:") for line in lines)
    assert "4/4" in lines[-1]
    monkeypatch.setenv(SECONDS_ENV, "30")
    for _ in progress_bar(range(4), desc="quick work", unit="batch"):
        pass
    assert capsys.readouterr().err == ""
    for _ in progress_bar(range(4), desc="quiet work", enabled=False):
        time.sleep(0.001)
    assert capsys.readouterr().err == ""


def test_postfix_updates_wait_for_the_interval(capsys, monkeypatch):
    """Training sets a postfix every batch: that once wrote a line per batch, each saying 0/N."""
    monkeypatch.setenv(SECONDS_ENV, "30")
    bar = progress_bar(range(50), desc="train", unit="batch")
    for i in bar:
        bar.set_postfix(loss=f"{1 / (i + 1):.3f}")
    assert capsys.readouterr().err == ""
    monkeypatch.setenv(SECONDS_ENV, "0.02")
    bar = progress_bar(range(10), desc="train", unit="batch")
    for i in bar:
        time.sleep(0.005)
        bar.set_postfix(loss=f"{1 / (i + 1):.3f}")
    lines = capsys.readouterr().err.splitlines()
    assert 1 <= len(lines) <= 5 and "10/10" in lines[-1] and "loss=0.100" in lines[-1]
    assert not any(line.startswith("train:   0%") for line in lines)


def test_a_command_in_a_log_file_says_how_far_it_is(tmp_path):
    """adversarial used to print nothing for 5 minutes when stdout/stderr were files."""
    ckpt = tiny_checkpoint(tmp_path / "m.pth")
    log = tmp_path / "log.txt"
    with open(log, "w") as stderr:
        done = subprocess.run([*CLI, "adversarial", "--ckpt", str(ckpt), "--data", "synthetic", "--limit", "8",
                               "--batch-size", "2", "--eps", "8/255"], cwd=tmp_path,
                              env=cli_env() | {SECONDS_ENV: "0.000001"}, stdout=subprocess.PIPE, stderr=stderr,
                              text=True, timeout=300)
    assert done.returncode == 0
    lines = log.read_text().splitlines()
    attack = [line for line in lines if line.startswith("attack synthetic:")]
    assert len(attack) >= 2 and "4/4" in attack[-1] and "\r" not in log.read_text()
