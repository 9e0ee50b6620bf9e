"""The layers of ``docs/design.md``, enforced on the source.

Every import of every module under ``cutmix_eval/`` (at module level or inside a function)
is read with :mod:`ast` and resolved to the package's module it names. A *unit* is a
subpackage (``evaluate``) or a top-level module (``results``; ``cutmix_eval`` is the
package's own ``__init__``); :data:`RULES` says which other units each one may import, so an
upward or forbidden edge fails with the module, the line, the edge and the rule. Modules
under ``metrics/`` must not import torch either, directly or through any package module they
import (importing a module also runs its packages' ``__init__``).
"""

from __future__ import annotations

import ast
from collections import deque
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "cutmix_eval"
#: torch itself and the libraries that import it
TORCH = frozenset({"torch", "torchvision", "timm", "pytorch_grad_cam"})

#: small shared modules at the bottom, importable by every layer above them
SHARED = frozenset({"cutmix_eval", "errors", "fileio", "progress", "runtime", "distributed", "versions", "catalog",
                    "registry", "settings"})
#: the foundations, which know nothing above the shared modules
FOUNDATIONS = frozenset({"metrics", "results", "models", "corruptions"})
#: what the evaluators and the training loop build on
BELOW_EVALUATE = SHARED | FOUNDATIONS | {"data", "cam", "passes"}
#: the whole library under the orchestration (analyses, study, quick start, CLI)
LIBRARY = BELOW_EVALUATE | {"report", "evaluate", "train"}

#: unit -> (the other units it may import, why); bottom up
RULES: dict[str, tuple[frozenset[str], str]] = {
    "cutmix_eval": (frozenset(), "the package's __init__ runs before any of its modules: it imports none of them"),
    "errors": (frozenset(), "a shared module at the bottom"),
    "progress": (frozenset(), "a shared module at the bottom"),
    "fileio": (frozenset({"errors"}), "a shared module at the bottom"),
    "runtime": (frozenset({"errors"}), "a shared module at the bottom"),
    "distributed": (frozenset({"errors", "runtime"}), "a shared module at the bottom"),
    "registry": (frozenset({"errors"}), "the one registry implementation, light enough for the parsers"),
    "catalog": (frozenset(), "the names parsers list, so building them imports nothing heavy"),
    "settings": (frozenset(), "how an evaluation runs (RunSettings): light, for the command line and the registry"),
    "versions": (frozenset({"cutmix_eval"}), "a shared module at the bottom (reads the package's __version__)"),
    "metrics": (frozenset(), "metrics are pure: arrays in, numbers out, no I/O"),
    "results": (frozenset({"errors", "versions"}), "the Result type lives below evaluate/ and report/"),
    "models": (SHARED, "a foundation knows nothing above the shared modules"),
    "corruptions": (SHARED | {"metrics"},
                    "a foundation knows nothing above the shared modules; corruption names come from metrics"),
    "data": (SHARED | FOUNDATIONS, "datasets build on the foundations"),
    "cam": (SHARED | FOUNDATIONS, "CAM methods build on the foundations"),
    "report": (SHARED | FOUNDATIONS, "reports render records: never evaluate/, train/ or a command"),
    "passes": (SHARED | FOUNDATIONS | {"data"}, "passes over a dataset, below evaluate/ and train/, which share them"),
    "evaluate": (BELOW_EVALUATE - {"fileio"},
                 "evaluators return Results and write no files: no fileio, no report/, no train/"),
    "train": (BELOW_EVALUATE, "training never imports an evaluator, a report or a command"),
    "analyses": (LIBRARY, "orchestration, below study.py, quickstart.py and cli/"),
    "study": (LIBRARY | {"analyses"}, "orchestration, below quickstart.py and cli/"),
    "quickstart": (LIBRARY | {"analyses", "study"}, "orchestration, below cli/"),
    "sensitivity": (LIBRARY, "orchestration of training runs across data settings, for examples/sensitivity.py"),
    "cli": (LIBRARY | {"analyses", "study", "quickstart"}, "the commands sit on everything"),
    "__main__": (frozenset({"cli"}), "python -m cutmix_eval runs the CLI; nothing else imports cli/"),
}


def module_name(path: Path) -> str:
    """``cutmix_eval/evaluate/ood.py`` -> ``cutmix_eval.evaluate.ood`` (a package by its ``__init__``)."""
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted((ROOT / PACKAGE).rglob("*.py"))}


def unit(module: str) -> str:
    """``cutmix_eval.evaluate.ood`` -> ``evaluate``; the package itself is ``cutmix_eval``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else PACKAGE


def ancestors(module: str) -> list[str]:
    """The packages whose ``__init__`` runs when ``module`` is imported."""
    parts = module.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


@cache
def imports(module: str) -> tuple[tuple[str, int], ...]:
    """``(name, line)`` for every import in ``module``, inside functions too: a package module
    as its full name (``from cutmix_eval.cam import native`` is ``cutmix_eval.cam.native``),
    anything else as written."""
    path = MODULES[module]
    here = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the importer's package, level - 1 packages up
                package = here.split(".")
                base = ".".join(package[:len(package) - node.level + 1] + ([node.module] if node.module else []))
            for alias in node.names:
                found.append((f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base, node.lineno))
    return tuple(dict.fromkeys(found))  # `from x import a, b` is one edge


def where(module: str, line: int) -> str:
    """``path:line`` of an import in ``module``."""
    return f"{MODULES[module].relative_to(ROOT)}:{line}"


def test_every_unit_has_a_rule():
    missing = sorted({unit(m) for m in MODULES} - set(RULES))
    assert not missing, f"units without a layering rule: {missing}; add each to RULES (and docs/design.md)"


def test_no_import_runs_upward_or_to_a_forbidden_layer():
    violations = []
    for module in MODULES:
        allowed, why = RULES[unit(module)]
        may = f"only {', '.join(sorted(allowed))}" if allowed else "nothing of the package"
        for name, line in imports(module):
            target = unit(name)
            if name.split(".")[0] == PACKAGE and target != unit(module) and target not in allowed:
                violations.append(f"{where(module, line)}: {module} imports {name}, but {unit(module)} may import "
                                  f"{may} ({why})")
    assert not violations, "\n".join(violations)


def torch_chain(module: str) -> list[str] | None:
    """The shortest chain of imports from ``module`` to torch (package modules, then the
    torch-family import with its place), or None when none exists."""
    previous: dict[str, str | None] = {module: None}
    queue = deque([module])
    while queue:
        current = queue.popleft()
        for name, line in imports(current):
            if name.split(".")[0] in TORCH:
                chain = [f"{name} ({where(current, line)})"]
                while current is not None:
                    chain.insert(0, current)
                    current = previous[current]
                return chain
        for name in [n for n, _ in imports(current) if n in MODULES] + ancestors(current):
            if name not in previous:
                previous[name] = current
                queue.append(name)
    return None


def test_metrics_never_import_torch():
    chains = [chain for module in MODULES if unit(module) == "metrics" if (chain := torch_chain(module))]
    assert not chains, "metrics/ must not import torch, directly or through another module:\n" + "\n".join(
        " -> ".join(chain) for chain in chains)
