"""The versions a record or a checkpoint names: this package's and those of the libraries
that can change an evaluation's numbers."""

from __future__ import annotations

import platform
from functools import lru_cache
from importlib import metadata

from cutmix_eval import __version__

#: the installed distributions whose versions are recorded, when present
LIBRARIES = ("torch", "torchvision", "timm", "grad-cam", "pyautoattack", "numpy", "scipy", "scikit-learn", "opencv-python",
             "opencv-python-headless")


@lru_cache(maxsize=1)
def package_versions() -> dict[str, str]:
    """The versions that can change an evaluation's numbers: this package, Python and the numeric
    libraries (read from their installed metadata, so nothing heavy is imported)."""
    found = {"cutmix_eval": __version__, "python": platform.python_version()}
    for package in LIBRARIES:
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            continue
    return found
