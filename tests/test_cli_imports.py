"""The command line imports lazily: building its parsers and scoring saved files load no torch.

Each check runs a fresh interpreter (this one has long imported torch) and reads its
``sys.modules``; timings are measured in ``benchmarks/bench_cli_startup.py``, never here.
"""

import json
import subprocess
import sys

import numpy as np

from conftest import cli_env

HEAVY = ("torch", "torchvision", "timm", "matplotlib", "pandas", "cv2", "scipy", "sklearn", "pytorch_grad_cam")

#: prints, as its last line, the heavy modules imported by then (as JSON)
REPORT_HEAVY = f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"


def imported_heavy(code: str) -> list[str]:
    """The heavy modules a fresh interpreter has imported after running ``code``."""
    done = subprocess.run([sys.executable, "-c", f"import json, sys\n{code}\n{REPORT_HEAVY}"],
                          capture_output=True, text=True, env=cli_env())
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_every_parser_and_help_text_builds_without_heavy_imports():
    code = ("import argparse\n"
            "from cutmix_eval.cli import build_parser\n"
            "def helps(parser):\n"
            "    yield parser.format_help()\n"
            "    for action in parser._actions:\n"
            "        if isinstance(action, argparse._SubParsersAction):\n"
            "            for sub in action.choices.values():\n"
            "                yield from helps(sub)\n"
            "assert len(list(helps(build_parser()))) > 17")
    assert imported_heavy(code) == []


def test_metrics_on_saved_files_never_import_torch(tmp_path):
    rng = np.random.default_rng(0)
    np.save(tmp_path / "id.npy", rng.random(50) + 0.5)
    np.save(tmp_path / "ood.npy", rng.random(40))
    np.save(tmp_path / "maps.npy", rng.random((3, 16, 16)))
    (tmp_path / "boxes.json").write_text(json.dumps([[[2, 2, 9, 9]]] * 3))
    ood = ["metrics", "ood", "--id-scores", str(tmp_path / "id.npy"), "--ood-scores", str(tmp_path / "ood.npy")]
    wsol = ["metrics", "wsol", "--maps", str(tmp_path / "maps.npy"), "--boxes", str(tmp_path / "boxes.json")]
    for argv, allowed in ((ood, set()), (wsol, {"cv2"})):  # the WSOL metrics trace contours with OpenCV
        code = f"from cutmix_eval.cli import main\nassert main({argv!r}) == 0"
        assert set(imported_heavy(code)) <= allowed, argv


def test_catalog_names_are_what_the_registries_hold():
    """The parsers offer the catalog's names; the registries filled by classes hold exactly those."""
    from cutmix_eval import catalog
    from cutmix_eval.cam import list_cams
    from cutmix_eval.evaluate.localization import PROTOCOLS
    from cutmix_eval.evaluate.ood_scores import list_scores
    from cutmix_eval.report.build import FORMATS
    from cutmix_eval.train.methods import METHODS

    assert tuple(METHODS) == catalog.METHODS
    assert list_cams() == sorted(catalog.CAMS)
    assert tuple(list_scores()) == catalog.OOD_SCORES
    assert list(PROTOCOLS) == list(catalog.LOCALIZATION_PROTOCOLS)
    assert FORMATS == catalog.REPORT_FORMATS
