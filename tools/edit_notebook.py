"""Replace text in the code cells of committed notebooks, keeping their outputs (for renames that
change no output): python -m tools.edit_notebook NOTEBOOK OLD NEW."""

from __future__ import annotations

import json
import sys
from pathlib import Path


def replace_in_code(path: Path, old: str, new: str) -> int:
    raw = path.read_text()
    nb = json.loads(raw)
    count = 0
    for cell in nb["cells"]:
        if cell["cell_type"] != "code":
            continue
        source = "".join(cell["source"])
        if old in source:
            count += source.count(old)
            cell["source"] = source.replace(old, new).splitlines(keepends=True)
    if count:
        path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")
    return count


if __name__ == "__main__":
    path, old, new = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
    print(f"{replace_in_code(path, old, new)} replaced in {path}")
