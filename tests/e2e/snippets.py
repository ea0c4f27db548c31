#!/usr/bin/env python3
"""The agent-side code blocks of README.md and docs/**/*.md, run as a user runs them.

    snippets.py list                 # one line per block: INDEX<TAB>INSTALL<TAB>FILE:LINE
    snippets.py run INDEX URL        # runs block INDEX against URL in this interpreter

Every ```python block must be marked by the line before it:

    <!-- agent-snippet: pip install mcp -->            (run in a venv of `pip install mcp`)
    <!-- agent-snippet: pip install strands-agents --> (... of `pip install strands-agents`)
    <!-- not-run: REASON -->                            (not an agent-side block)

`list` fails on an unmarked block, so a new snippet cannot skip CI. `run` replaces the
docs' URL http://127.0.0.1:8080/mcp with URL (the demo under test listens elsewhere),
executes the block as a script (`__name__ == "__main__"`), and passes when it ends
without an exception, printed something, and printed the demo tool's answer for any city
the block asks about. run.sh picks the venv that matches INSTALL.
"""

from __future__ import annotations

import contextlib
import io
import re
import sys
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCS_URL = "http://127.0.0.1:8080/mcp"
MARK = re.compile(r"^<!--\s*(agent-snippet|not-run):\s*(.+?)\s*-->\s*$")
INSTALLS = {"pip install mcp", "pip install strands-agents"}


def documents() -> list[Path]:
    return [ROOT / "README.md"] + sorted((ROOT / "docs").rglob("*.md"))


def blocks() -> list[tuple[str, str, str]]:
    """(install, "file:line", code) of every marked python block; exits on an unmarked one."""
    found, problems = [], []
    for doc in documents():
        lines = doc.read_text().splitlines()
        i = 0
        while i < len(lines):
            if lines[i].strip().startswith("```") and lines[i].strip() != "```":
                lang = lines[i].strip()[3:].split()[0]
                start = i
                i += 1
                body = []
                while i < len(lines) and not lines[i].strip().startswith("```"):
                    body.append(lines[i])
                    i += 1
                if lang in ("python", "py"):
                    where = f"{doc.relative_to(ROOT)}:{start + 1}"
                    prev = next((l for l in reversed(lines[:start]) if l.strip()), "")
                    mark = MARK.match(prev.strip())
                    if not mark:
                        problems.append(f"{where}: a python block without <!-- agent-snippet: pip install … --> or <!-- not-run: … -->")
                    elif mark.group(1) == "agent-snippet":
                        if mark.group(2) not in INSTALLS:
                            problems.append(f"{where}: unknown install {mark.group(2)!r} (one of {sorted(INSTALLS)})")
                        found.append((mark.group(2), where, "\n".join(body) + "\n"))
            i += 1
    if problems:
        print("\n".join(problems), file=sys.stderr)
        sys.exit(2)
    return found


def run(index: int, url: str) -> int:
    install, where, code = blocks()[index]
    source = code.replace(DOCS_URL, url)
    out = io.StringIO()
    try:
        compiled = compile(source, where, "exec")
        with contextlib.redirect_stdout(out):
            exec(compiled, {"__name__": "__main__"})
    except BaseException:  # noqa: BLE001 - the snippet's failure is the finding
        print(out.getvalue(), end="")
        print(f"FAIL {where} ({install}): raised\n{traceback.format_exc()}")
        return 1
    printed = out.getvalue()
    print(printed, end="")
    cities = re.findall(r'"city":\s*"([^"]+)"', code)
    missing = [c for c in cities if c not in printed]
    if not printed.strip():
        print(f"FAIL {where} ({install}): printed nothing")
        return 1
    if missing:
        print(f"FAIL {where} ({install}): the tool's answer for {missing} was not printed")
        return 1
    print(f"PASS {where} ({install})")
    return 0


def main() -> int:
    if sys.argv[1:2] == ["list"]:
        for index, (install, where, _) in enumerate(blocks()):
            print(f"{index}\t{install}\t{where}")
        return 0
    if sys.argv[1:2] == ["run"] and len(sys.argv) == 4:
        return run(int(sys.argv[2]), sys.argv[3])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
