#!/usr/bin/env python3
"""Reports import cycles between the crate's top-level modules, and between the files of one
folder, from `use crate::…` / `super::…` paths and `crate::…` references in src/.

Usage: scripts/module-deps.py [--graph]   (exit status 1 when a cycle exists)
"""
import os
import re
import sys

SRC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src")


def module_of(path):
    """'src/server/inputs.rs' -> ['server', 'inputs']; mod.rs -> the folder."""
    rel = os.path.relpath(path, SRC)[:-3].split(os.sep)
    if rel[-1] == "mod":
        rel = rel[:-1]
    if rel in (["lib"], ["main"]):
        return []
    return rel


def references(text, here):
    """Module paths this file refers to, as lists of segments from the crate root."""
    text = re.sub(r"//.*", "", text)
    # Tests may use anything; they do not make a layering cycle.
    text = re.split(r"#\[cfg\(test\)\]", text)[0]
    out = []
    for m in re.finditer(r"\bcrate::((?:[a-z_][a-z0-9_]*::)*[a-z_][a-z0-9_]*)", text):
        out.append(m.group(1).split("::"))
    for m in re.finditer(r"\b((?:super::)+)((?:[a-z_][a-z0-9_]*::)*[a-z_][a-z0-9_]*)", text):
        ups = m.group(1).count("super::")
        base = here[: len(here) - ups] if len(here) >= ups else []
        out.append(base + m.group(2).split("::"))
    # `use super::{a, b}` and `use crate::x::{a, b}`
    for m in re.finditer(r"\b(crate|(?:super::)*super)::((?:[a-z_][a-z0-9_]*::)*)\{([^}]*)\}", text):
        prefix = m.group(2).rstrip(":").split("::") if m.group(2) else []
        if m.group(1) == "crate":
            base = []
        else:
            ups = m.group(1).count("super")
            base = here[: len(here) - ups]
        for item in m.group(3).split(","):
            item = item.strip().split("::")[0].split(" ")[0]
            if re.match(r"^[a-z_][a-z0-9_]*$", item) and item != "self":
                out.append(base + [p for p in prefix if p] + [item])
    return out


def main():
    files = {}
    for root, _, names in os.walk(SRC):
        for n in names:
            if n.endswith(".rs"):
                p = os.path.join(root, n)
                files[tuple(module_of(p))] = open(p, encoding="utf-8").read()
    modules = set(files)
    edges = {}

    def resolve(path):
        """The longest known module prefix of `path`."""
        for k in range(len(path), 0, -1):
            if tuple(path[:k]) in modules:
                return tuple(path[:k])
        return None

    for mod, text in files.items():
        here = list(mod)
        for ref in references(text, here if os.path.basename("x") else here):
            target = resolve(ref)
            if target is None or target == mod:
                continue
            edges.setdefault(mod, set()).add(target)

    problems = []
    # Top level: module -> module (first segment).
    top = {}
    for a, bs in edges.items():
        for b in bs:
            if a and b and a[0] != b[0]:
                top.setdefault(a[0], set()).add(b[0])
    problems += [("top-level modules", c) for c in cycles(top)]
    # Within one folder: sibling files.
    folders = {m[:-1] for m in modules if len(m) >= 2}
    for folder in sorted(folders):
        local = {}
        for a, bs in edges.items():
            if len(a) == len(folder) + 1 and a[: len(folder)] == folder:
                for b in bs:
                    if len(b) >= len(folder) + 1 and b[: len(folder)] == folder and b[len(folder)] != a[-1]:
                        local.setdefault(a[-1], set()).add(b[len(folder)])
        problems += [("/".join(folder), c) for c in cycles(local)]
    if "--graph" in sys.argv:
        for a in sorted(top):
            print(f"{a} -> {', '.join(sorted(top[a]))}")
    for where, c in problems:
        print(f"cycle in {where}: {' -> '.join(c + [c[0]])}")
    if not problems:
        print("no import cycles between top-level modules or between the files of a folder")
    return 1 if problems else 0


def cycles(graph):
    """Strongly connected components with more than one node (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

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
                out.append(sorted(comp))

    for v in list(graph):
        if v not in index:
            visit(v)
    return out


if __name__ == "__main__":
    sys.exit(main())
