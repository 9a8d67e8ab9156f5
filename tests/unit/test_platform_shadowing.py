"""`platform/` must never shadow the stdlib `platform` module: a `platform/__init__.py` on
the import path breaks `import uuid`, Ray workers (Ray puts the working directory first on
PYTHONPATH) and pytest. So `platform/` holds no `__init__.py`; the package is `platform/tandem/`."""

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_no_package_marker_in_platform_dir():
    assert not (REPO / "platform" / "__init__.py").exists()


def test_stdlib_platform_imports_from_repo_root():
    result = subprocess.run(
        [sys.executable, "-c", "import platform, uuid; print(platform.system())"],
        cwd=REPO, env={"PYTHONPATH": str(REPO)}, capture_output=True, text=True, check=True,
    )
    assert result.stdout.strip() == "Linux"
