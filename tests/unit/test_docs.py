"""The README's generated blocks match the code they are generated from."""

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_generated_readme_blocks_are_current():
    result = subprocess.run([sys.executable, "-m", "tools.docs_tables", "--check"], cwd=REPO,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


def test_readme_opens_with_the_two_commands():
    head = (REPO / "README.md").read_text().split("\n## ")[0]
    assert "tools/demo" in head and "tools/test" in head
