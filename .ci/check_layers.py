#!/usr/bin/env python3
"""The folders of src/ are the layers: checks how the top-level modules use each other.

Reads every `crate::<top>` path in src/**/*.rs (in `use` lines, grouped imports
`crate::{a, b::c}` and paths in code), maps each file to its top-level module, and
prints the dependency graph. Fails on any cycle among the top-level modules, on any use
of `cmd` from outside it, and on any use that runs upward (from a lower layer to a
higher one, order below) that KNOWN_UPWARD does not list with its reason. The list is
empty: a new upward use has to be argued for here. Comments are skipped.

The order, top to bottom: `cmd` (the commands) uses everything; `listener` accepts and
serves; `proxy` routes and forwards; `config` assembles the file from the sections each
layer below declares for itself ([route.policy] in mcp, [route.credential] in auth, [dns]
in upstream, [audit] in ops) and validates it in one pass, so it sits above them;
`mcp` is the MCP layer's two hooks; `exchange` is the vocabulary of one request that
both proxy and mcp speak (message model, bodies, the error type, the request context);
`auth` the credential sources; `upstream` DNS, connect, TLS; `ops` metrics, audit sink,
logging.
"""
import pathlib
import re
import sys

LAYERS = ["cmd", "listener", "proxy", "config", "mcp", "exchange", "auth", "upstream", "ops"]
MAX_UPWARD = 2
KNOWN_UPWARD = {}
SRC = pathlib.Path(__file__).resolve().parent.parent / "src"


def top_of(path):
    rel = path.relative_to(SRC)
    if len(rel.parts) == 1:
        return rel.stem  # lib.rs, main.rs
    return rel.parts[0]


def strip_comments(text):
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    return "\n".join(re.sub(r"//.*", "", line) for line in text.splitlines())


def tops_in_group(body):
    """Top-level names of a `crate::{...}` group: the first segment of each item."""
    names, depth, item = [], 0, ""
    for ch in body + ",":
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
        if ch == "," and depth == 0:
            first = re.match(r"\s*(\w+)", item)
            if first:
                names.append(first.group(1))
            item = ""
        else:
            item += ch
    return names


def uses(text):
    found = []
    for m in re.finditer(r"\bcrate::(\w+)", text):
        found.append(m.group(1))
    for m in re.finditer(r"\bcrate::\{", text):
        depth, i = 1, m.end()
        while depth and i < len(text):
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            i += 1
        found.extend(tops_in_group(text[m.end() : i - 1]))
    return found


def main():
    edges = {}  # (from, to) -> [file, ...]
    for path in sorted(SRC.rglob("*.rs")):
        src = top_of(path)
        for dst in uses(strip_comments(path.read_text())):
            if dst != src and dst in LAYERS:
                edges.setdefault((src, dst), set()).add(str(path.relative_to(SRC.parent)))

    graph = {}
    for (a, b) in edges:
        graph.setdefault(a, set()).add(b)
    # The graph the cycle check is strict on: without the known upward uses.
    strict = {}
    for (a, b) in edges:
        if (a, b) not in KNOWN_UPWARD:
            strict.setdefault(a, set()).add(b)
    print("top-level module graph (module -> what it uses):")
    for a in LAYERS + sorted(set(graph) - set(LAYERS)):
        if a in graph:
            print(f"  {a:9} -> {', '.join(sorted(graph[a], key=LAYERS.index))}")

    failed = False

    # Cycles: strongly connected components with more than one module.
    def cycles(graph):
        """Strongly connected components of more than one module (Tarjan)."""
        index, low, stack, on, sccs, counter = {}, {}, [], set(), [], [0]

        def visit(v):
            index[v] = low[v] = counter[0]
            counter[0] += 1
            stack.append(v)
            on.add(v)
            for w in graph.get(v, ()):
                if w not in index:
                    visit(w)
                    low[v] = min(low[v], low[w])
                elif w in on:
                    low[v] = min(low[v], index[w])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                if len(comp) > 1:
                    sccs.append(sorted(comp, key=lambda m: LAYERS.index(m) if m in LAYERS else -1))

        for v in sorted(graph):
            if v not in index:
                visit(v)
        return sccs

    def show(comp):
        for a in comp:
            for b in comp:
                if (a, b) in edges:
                    known = " (known)" if (a, b) in KNOWN_UPWARD else ""
                    print(f"    {a} -> {b}{known}: {', '.join(sorted(edges[(a, b)]))}")

    for comp in cycles(strict):
        failed = True
        print(f"CYCLE among top-level modules: {', '.join(comp)}")
        show(comp)
    for comp in cycles(graph):
        print(f"known cycle (through known upward uses): {', '.join(comp)}")

    for (a, b), files in sorted(edges.items()):
        if b == "cmd" and a not in ("cmd", "main"):
            failed = True
            print(f"USES cmd from outside cmd: {a} ({', '.join(sorted(files))})")

    upward = [
        (a, b) for (a, b) in edges if a in LAYERS and b in LAYERS and LAYERS.index(b) < LAYERS.index(a)
    ]
    upward.sort(key=lambda e: (LAYERS.index(e[0]), LAYERS.index(e[1])))
    print(f"upward uses (from a lower layer to a higher one): {len(upward)} (target: at most {MAX_UPWARD})")
    for a, b in upward:
        known = "known" if (a, b) in KNOWN_UPWARD else "NEW"
        print(f"    {a} -> {b} [{known}]: {', '.join(sorted(edges[(a, b)]))}")
        if (a, b) not in KNOWN_UPWARD:
            failed = True
    for a, b in sorted(set(KNOWN_UPWARD) - set(upward)):
        failed = True
        print(f"KNOWN_UPWARD lists {a} -> {b}, which is gone: remove it from the list")
    if any(e not in KNOWN_UPWARD for e in upward):
        print("NEW upward uses: a module may use only the layers below it")

    print("layers: FAIL" if failed else "layers: ok")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
