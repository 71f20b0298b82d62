"""Which wheels were compiled against NumPy 1.x: under NumPy 2 they fail at import
(`numpy.dtype size changed, may indicate binary incompatibility. Expected 96 from C header,
got 88`), where conda, which knows each build's NumPy, would have kept NumPy below 2.

The wheels say it themselves. NumPy's C API (`import_array()`, what every extension using it
calls) compiled from NumPy 1.x headers imports `numpy.core._multiarray_umath`; from NumPy 2
headers, which also build extensions that run on 1.x, it imports
`numpy._core._multiarray_umath` first. An extension module that names only the old module
was built for NumPy 1.x (scikit-learn 1.2.2, pandas 1.5.3, scipy 1.10.1); one that names both
runs on either (scikit-learn 1.5.2).
"""

from __future__ import annotations

import zipfile
from pathlib import Path

OLD_API = b"numpy.core._multiarray_umath"
NEW_API = b"numpy._core._multiarray_umath"


def _extension_modules(archive: zipfile.ZipFile) -> list[zipfile.ZipInfo]:
    return [i for i in archive.infolist() if ".so" in i.filename.rpartition("/")[2] or i.filename.endswith(".pyd")]


def built_for_numpy_1(wheel: Path) -> bool:
    """Whether an extension module in the wheel uses NumPy's C API from NumPy 1.x headers."""
    try:
        with zipfile.ZipFile(wheel) as archive:
            for info in _extension_modules(archive):
                data = archive.read(info)
                if OLD_API in data and NEW_API not in data:
                    return True
    except (OSError, zipfile.BadZipFile):
        return False  # pip checked the wheel; one unreadable here is not ours to judge
    return False


def numpy_1_builds(wheels: list[tuple[str, str, Path]]) -> list[str]:
    """`name version` of each wheel (but numpy itself) built for NumPy 1.x."""
    return [f"{name} {version}" for name, version, path in wheels if name != "numpy" and built_for_numpy_1(path)]
