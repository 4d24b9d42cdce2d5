"""The package's shape: no module does so much that it runs past 400 lines (issue 23)."""
from __future__ import annotations

from pathlib import Path

import activemint

MAX_LINES = 400


def test_no_module_is_over_400_lines():
    root = Path(activemint.__file__).parent
    sizes = {str(p.relative_to(root.parent)): len(p.read_text().splitlines()) for p in root.rglob("*.py")}
    assert len(sizes) > 50  # the walk found the package
    assert {p: n for p, n in sizes.items() if n > MAX_LINES} == {}
