"""Checks the built sdist and wheel as the package index and pip would see
them: known classifiers, a Python range the dependencies can meet, and
every data file of the source tree shipped.

Usage: python .ci/check_dist.py DIST_DIR (where ``python -m build`` put
the sdist and the wheel it built from that sdist). Prints one line per
problem and exits with status 1 if there is any.
"""

from __future__ import annotations

import subprocess
import sys
import tarfile
import tempfile
import zipfile
from email.message import Message
from email.parser import BytesParser
from pathlib import Path

from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.version import Version
from trove_classifiers import classifiers, deprecated_classifiers

#: The source tree: every data file of its packages must reach the wheel.
ROOT = Path(__file__).resolve().parent.parent
#: Files a package ships beside its modules: the page's files, the
#: backends' scripts and the PEP 561 markers. A build that loses one still
#: succeeds, and fails only when it is read.
DATA_FILES = [
    "*/py.typed",
    "dramatiq_abort/web/static/*",
    "dramatiq_abort/backends/redis/scripts/*",
    "dramatiq_abort/backends/postgres/sql/*",
]
#: The license's texts: the LGPL, and the GPL it adds its permissions to.
LICENSE_FILES = ["COPYING", "COPYING.LESSER"]
#: Files a build from the sdist needs besides the packages.
SDIST_FILES = ["pyproject.toml", "README.md", "PKG-INFO", *LICENSE_FILES]
#: Extras for developers only: the others are what users install.
DEVELOPER_EXTRAS = {"dev"}


def main(dist_dir: Path) -> int:
    (wheel,) = dist_dir.glob("*.whl")
    (sdist,) = dist_dir.glob("*.tar.gz")
    with zipfile.ZipFile(wheel) as archive:
        wheel_files = set(archive.namelist())
        (metadata_name,) = [name for name in wheel_files if name.endswith(".dist-info/METADATA")]
        metadata = BytesParser().parsebytes(archive.read(metadata_name))
    with tarfile.open(sdist) as archive:
        # Each name under the top folder, "dramatiq_abort-2.0.0/".
        sdist_files = {name.partition("/")[2] for name in archive.getnames()}
    problems = [
        *classifier_problems(metadata),
        *shipped_problems(wheel_files, sdist_files),
        *python_range_problems(metadata, wheel),
    ]
    for problem in problems:
        print(f"{wheel.name}: {problem}")
    return 1 if problems else 0


def classifier_problems(metadata: Message) -> list[str]:
    """The index refuses an upload with an unknown or deprecated
    classifier, and a license classifier beside a License-Expression (PEP 639)."""
    problems = []
    for classifier in metadata.get_all("Classifier") or []:
        if classifier in deprecated_classifiers:
            problems.append(f"classifier {classifier!r} is deprecated: the index refuses it")
        elif classifier not in classifiers:
            problems.append(
                f"classifier {classifier!r} is not a trove classifier: the index refuses it"
            )
        elif classifier.startswith("License ::") and metadata["License-Expression"]:
            problems.append(
                f"classifier {classifier!r} beside License-Expression: the index refuses it"
            )
    return problems


def shipped_problems(wheel_files: set[str], sdist_files: set[str]) -> list[str]:
    """The data files of the source tree missing from the wheel, which was
    built from the sdist, and the files a build needs missing from the sdist."""
    expected = {
        path.relative_to(ROOT).as_posix() for pattern in DATA_FILES for path in ROOT.glob(pattern)
    }
    problems = [f"{name} is missing from the wheel" for name in sorted(expected - wheel_files)]
    problems += [
        f"{name} is missing from the sdist" for name in SDIST_FILES if name not in sdist_files
    ]
    licenses = {name.rpartition("/")[2] for name in wheel_files if ".dist-info/licenses/" in name}
    problems += [
        f"{name} is missing from the wheel's licenses"
        for name in LICENSE_FILES
        if name not in licenses
    ]
    return problems


def python_range_problems(metadata: Message, wheel: Path) -> list[str]:
    """Whether pip can install the wheel, with every user extra, on the
    oldest Python that Requires-Python admits: each dependency, at some
    version its requirement allows, must support that Python too.

    Asked of pip's resolver, on the index, rather than of the installed
    dependencies: their newest versions may need a later Python (redis-py
    8.2 needs 3.11) while older ones that the requirement allows still
    serve the oldest Python.
    """
    requires_python = metadata["Requires-Python"]
    if not requires_python:
        return ["no Requires-Python: pip would install it on any Python"]
    oldest = oldest_python(SpecifierSet(requires_python))
    if oldest is None:
        return [f"Requires-Python {requires_python!r} admits no Python 3 release"]
    extras = sorted(
        {
            extra
            for extra in metadata.get_all("Provides-Extra") or []
            if extra not in DEVELOPER_EXTRAS
        }
    )
    target = f"{wheel}[{','.join(extras)}]" if extras else str(wheel)
    with tempfile.TemporaryDirectory() as scratch:
        resolved = subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "install",
                "--dry-run",
                "--quiet",
                "--ignore-installed",
                "--only-binary=:all:",
                f"--python-version={oldest}",
                f"--target={scratch}",
                target,
            ],
            capture_output=True,
            text=True,
            check=False,
        )
    if resolved.returncode == 0:
        return []
    # pip's reasons, without the list of every version it found.
    errors = [
        line
        for line in resolved.stderr.splitlines()
        if line.startswith("ERROR") and "from versions:" not in line
    ]
    return [
        f"Requires-Python {requires_python!r} admits Python {oldest}, on which pip cannot"
        f" install it with {requirements(metadata)}: {' '.join(errors) or resolved.stderr}"
    ]


def oldest_python(specifiers: SpecifierSet) -> str | None:
    """The oldest Python 3 minor release that ``specifiers`` admit."""
    for minor in range(40):
        if Version(f"3.{minor}") in specifiers:
            return f"3.{minor}"
    return None


def requirements(metadata: Message) -> str:
    """The requirements of a plain install, as the metadata gives them."""
    plain = [
        Requirement(text)
        for text in metadata.get_all("Requires-Dist") or []
        if Requirement(text).marker is None
    ]
    return ", ".join(str(requirement) for requirement in plain)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    sys.exit(main(Path(sys.argv[1])))
