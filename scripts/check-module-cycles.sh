#!/usr/bin/env bash
# No import cycles between the modules of a crate: for each crate directory given (default
# host/plugin-runtime/src), every `crate::a::b` a file names is an edge from its module to
# module `a::b` (or its nearest parent module that is a file), and the graph must have
# no cycle. Names taken through the crate root (`crate::Item`) count as an edge to the
# root, which depends on every module, so modules must name the module that defines
# what they use.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 - "${@:-host/plugin-runtime/src}" <<'PY'
import pathlib, re, sys

failed = False
for src in sys.argv[1:]:
    root = pathlib.Path(src)
    modules = {}
    for f in root.rglob("*.rs"):
        rel = f.relative_to(root).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "mod":
            parts = parts[:-1]
        if parts == ["lib"] or parts == ["main"]:
            parts = []
        modules["::".join(parts)] = f

    def owner(path):
        # The longest prefix of `path` (a::b::Item) that is a module file.
        parts = path.split("::")
        for n in range(len(parts), -1, -1):
            name = "::".join(parts[:n])
            if name in modules:
                return name
        return ""

    edges = {m: set() for m in modules}
    for m, f in modules.items():
        text = f.read_text()
        # Tests may use anything; only the code counts.
        text = re.split(r"#\[cfg\(test\)\]\s*mod tests", text)[0]
        text = re.sub(r"//[^\n]*", "", text)
        for use in re.findall(r"\buse crate::\{([^;]*)\};", text, flags=re.S):
            for item in re.split(r",\s*", use):
                head = item.strip().split("::{")[0].split(" as ")[0].strip()
                if head:
                    edges[m].add(owner(head))
        for path in re.findall(r"\bcrate::((?:[A-Za-z_][A-Za-z0-9_]*::)*[A-Za-z_][A-Za-z0-9_]*)", text):
            edges[m].add(owner(path))
        if m == "":
            for sub in re.findall(r"^\s*(?:pub(?:\([a-z]+\))?\s+)?mod\s+([a-z_0-9]+)\s*;", text, flags=re.M):
                edges[m].add(sub)
        edges[m].discard(m)

    # Cycles, by depth-first search.
    WHITE, GREY, BLACK = 0, 1, 2
    color = {m: WHITE for m in modules}
    stack = []

    def visit(m):
        global failed
        color[m] = GREY
        stack.append(m)
        for n in sorted(edges[m]):
            if n not in color:
                continue
            if color[n] == GREY:
                cycle = stack[stack.index(n):] + [n]
                print(f"{src}: import cycle: " + " -> ".join(c or "crate" for c in cycle), file=sys.stderr)
                failed = True
            elif color[n] == WHITE:
                visit(n)
        stack.pop()
        color[m] = BLACK

    for m in sorted(modules):
        if color[m] == WHITE:
            visit(m)
    if not failed:
        print(f"{src}: {len(modules)} modules, no import cycle")
sys.exit(1 if failed else 0)
PY
