"""Command-line start-up: `cutmix-eval` from process start to exit, against bare Python and `import torch`.

Seconds from starting a process to its exit (the wall time of ``subprocess.run``:
interpreter start, imports, parsing, the command's work, exit; output discarded),
medians of alternating rounds (every command once per round, the first one rotating):

floor
    ``python -c pass``: the interpreter alone.
torch
    ``python -c "import torch"``: what any process that imports torch pays at least.
``--help``
    ``cutmix-eval --help``. Building the parser builds every command's subparser, so any
    ``COMMAND --help`` costs about the same; the ones timed are those whose choices or help
    name a registry: ``quickstart`` (training methods), ``train`` (methods, recipes and
    their fields), ``localize`` (CAM methods, protocols), ``ood`` (OOD scores) and
    ``report`` (report formats).
``metrics ood``
    on two ``.npy`` files of 10,000 scores each.
``metrics wsol``
    on 100 maps of 56 x 56 px (``.npy``, one Gaussian blob each) and their boxes (JSON).

``cutmix-eval`` runs as ``python -m cutmix_eval`` in the checkout (the console script
imports the same module), so the checkout's code is what is timed. Each command also runs
once with ``-X importtime`` to tell whether it imports torch. Full mode: 5 rounds;
``--quick``: 3. Target: ``cutmix-eval --help`` and every ``COMMAND --help`` timed under
1 s; the other rows are for information (``metrics ood`` and ``metrics wsol`` should not
import torch: the import column).

    .venv/bin/python benchmarks/bench_cli_startup.py [--quick]
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from _common import alternating_seconds, comparison, markdown_table, parse_rounds, print_summary

ROOT = Path(__file__).resolve().parents[1]
TARGET = 1.0  # seconds, for every --help
CLI = [sys.executable, "-m", "cutmix_eval"]
HELPS = ("quickstart", "train", "localize", "ood", "report")


def write_inputs(folder: Path) -> dict[str, list[str]]:
    """The metrics commands with their input files, written into ``folder``."""
    rng = np.random.default_rng(0)
    np.save(folder / "id.npy", rng.beta(8.0, 2.0, 10_000))
    np.save(folder / "ood.npy", rng.beta(3.0, 2.0, 10_000))
    yy, xx = np.mgrid[:56, :56]
    centres = rng.uniform(16, 40, (100, 2, 1, 1))  # one smooth blob per map, as a CAM looks
    np.save(folder / "maps.npy", np.exp(-((yy - centres[:, 0]) ** 2 + (xx - centres[:, 1]) ** 2) / 128.0))
    (folder / "boxes.json").write_text(json.dumps([[[8, 8, 40, 40]]] * 100))
    return {"metrics ood": ["metrics", "ood", "--id-scores", str(folder / "id.npy"),
                            "--ood-scores", str(folder / "ood.npy")],
            "metrics wsol": ["metrics", "wsol", "--maps", str(folder / "maps.npy"),
                             "--boxes", str(folder / "boxes.json")]}


def commands(folder: Path) -> dict[str, list[str]]:
    """What is timed: label -> argv."""
    metrics = write_inputs(folder)
    return {"python -c pass": [sys.executable, "-c", "pass"],
            'python -c "import torch"': [sys.executable, "-c", "import torch"],
            "cutmix-eval --help": CLI + ["--help"],
            **{f"cutmix-eval {name} --help": CLI + [name, "--help"] for name in HELPS},
            **{f"cutmix-eval {label}": CLI + argv for label, argv in metrics.items()}}


def run(argv: list[str]) -> None:
    subprocess.run(argv, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)


def imports_torch(argv: list[str]) -> bool:
    """Whether the process imports torch (one run under ``python -X importtime``)."""
    traced = [argv[0], "-X", "importtime", *argv[1:]]
    done = subprocess.run(traced, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, check=True)
    return any(line.rsplit("|", 1)[-1].strip() == "torch" for line in done.stderr.splitlines())


def main() -> None:
    (rounds,) = parse_rounds(__doc__, quick=(3,), full=(5,))
    with tempfile.TemporaryDirectory() as tmp:
        argvs = commands(Path(tmp))
        seconds = alternating_seconds({label: (lambda a=argv: run(a)) for label, argv in argvs.items()}, rounds)
        torch_imported = {label: imports_torch(argv) for label, argv in argvs.items()}
    floor, torch = seconds["python -c pass"], seconds['python -c "import torch"']
    helps = [label for label in argvs if label.endswith("--help")]
    rows = [{"command": f"`{label}`", "seconds": s, "x floor": s / floor, "x import torch": s / torch,
             "imports torch": "yes" if torch_imported[label] else "no",
             "target": f"< {TARGET:g} s" if label in helps else ""} for label, s in seconds.items()]
    print(f"# CLI start-up: process start to exit (seconds, medians of {rounds} alternating rounds)\n")
    print(markdown_table(rows, {"command": "", "seconds": ".3f", "x floor": ".1f", "x import torch": ".2f",
                                "imports torch": "", "target": ""}))
    print("\nx floor: the command's time / `python -c pass`'s; x import torch: / `python -c \"import torch\"`'s. "
          "`cutmix-eval` is `python -m cutmix_eval` run in the checkout.")
    slowest = max(helps, key=seconds.get)
    met = seconds[slowest] < TARGET
    print(f"Target: `cutmix-eval --help` and every `COMMAND --help` timed under {TARGET:g} s: "
          f"{'met' if met else 'NOT met'} (slowest: `{slowest}`, {seconds[slowest]:.2f} s).")
    print_summary([comparison(f"`{label}`, start to exit, vs `python -c pass`", s, floor, "s", s / floor,
                              f"< {TARGET:g} s" if label in helps else "", s < TARGET if label in helps else None,
                              "python -c pass")
                   for label, s in seconds.items() if label != "python -c pass"])


if __name__ == "__main__":
    main()
