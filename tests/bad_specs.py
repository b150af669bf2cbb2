"""The header every bad-spec fixture carries: `# expect-path: ...`, `# expect-value: ...`, ..."""

from __future__ import annotations

import re
from pathlib import Path


def header(path: Path) -> dict[str, str]:
    fields = {}
    for line in path.read_text().splitlines():
        m = re.match(r"^# ([a-z-]+): ?(.*)$", line)
        if m:
            fields[m.group(1)] = m.group(2)
    return fields
