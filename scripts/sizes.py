#!/usr/bin/env python3
"""Reports the crate's long functions and long files: functions whose body spans more than 50
lines and files over 600 lines, in src/ (bench/ and the generated field tables aside).

Usage: scripts/sizes.py [--all]   (--all also lists bench/)
"""
import os
import re
import sys

SRC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src")
FN = re.compile(r"^\s*(pub(\([a-z:]+\))?\s+)?(const\s+)?(async\s+)?(unsafe\s+)?fn\s+([a-z_0-9]+)")
MAX_FN, MAX_FILE = 50, 600


def functions(lines):
    """(name, first line, line count) of each fn whose body is a `{ … }` block."""
    out = []
    for i, line in enumerate(lines):
        m = FN.match(line)
        if not m:
            continue
        depth, opened = 0, False
        for j in range(i, len(lines)):
            code = re.sub(r'"(\\.|[^"\\])*"', '""', lines[j].split("//")[0])
            code = re.sub(r"'(\\.|[^'\\])'", "''", code)
            if not opened and ";" in code and "{" not in code:
                break
            for ch in code:
                if ch == "{":
                    depth += 1
                    opened = True
                elif ch == "}":
                    depth -= 1
            if opened and depth == 0:
                out.append((m.group(6), i + 1, j - i + 1))
                break
    return out


def main():
    everything = "--all" in sys.argv
    long_fns, long_files = [], []
    for root, _, files in os.walk(SRC):
        for f in sorted(files):
            if not f.endswith(".rs"):
                continue
            path = os.path.join(root, f)
            rel = os.path.relpath(path, SRC)
            if not everything and rel.startswith("bench" + os.sep):
                continue
            text = open(path).read()
            lines = text.split("\n")
            # Unit tests are not counted: they are lists of cases.
            body = re.split(r"\n#\[cfg\(test\)\]", text)[0].split("\n")
            if len(body) > MAX_FILE:
                long_files.append((len(body), rel))
            for name, at, n in functions(body):
                if n > MAX_FN:
                    long_fns.append((n, f"{rel}:{at}", name))
    for n, where, name in sorted(long_fns, reverse=True):
        print(f"fn   {n:5} {where} {name}")
    for n, rel in sorted(long_files, reverse=True):
        print(f"file {n:5} {rel}")
    print(f"{len(long_fns)} functions over {MAX_FN} lines, {len(long_files)} files over {MAX_FILE} lines")


main()
