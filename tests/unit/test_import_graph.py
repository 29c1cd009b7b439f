"""The package's rooms import one way: no circle between rooms or modules (lazy imports
count), as `../shared/tools/import_graph.py` draws them."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TOOL = ROOT.parent / "shared" / "tools" / "import_graph.py"


@pytest.mark.skipif(not TOOL.is_file(), reason=f"{TOOL} is not beside the repo")
def test_the_package_has_no_import_circle():
    done = subprocess.run([sys.executable, str(TOOL), "recsys"], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 circle(s) between rooms, 0 between modules" in done.stdout
