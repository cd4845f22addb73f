#!/usr/bin/env python3
"""Regenerates src/engine/fields/<plugin>.txt from the Go plugins' Fields() tables.

Usage: scripts/plugin-fields.py PLUGINS_CHECKOUT [COMMIT]
(PLUGINS_CHECKOUT is a git checkout of falcosecurity/plugins; the commit goes into each header.)
The C++ plugins (k8smeta, container) are read from their get_fields() arrays.
"""
import re
import subprocess
import sys
from pathlib import Path

GO_TABLES = {
    "cloudtrail": "plugins/cloudtrail/pkg/cloudtrail/extract.go",
    "okta": "plugins/okta/pkg/okta/okta.go",
    "github": "plugins/github/pkg/github/extract.go",
    "gcpaudit": "plugins/gcpaudit/pkg/gcpaudit/extract.go",
}
CPP_TABLES = {
    "container": "plugins/container/src/caps/extract/extract.cpp",
    "k8smeta": "plugins/k8smeta/src/plugin.cpp",
}
CPP_TYPES = {"STRING": "string", "UINT64": "number", "BOOL": "bool", "ABSTIME": "number",
             "RELTIME": "number", "IPADDR": "ip", "IPNET": "ipnet"}
ARG = re.compile(r"(req_both_arg|req_key_arg|falcosecurity::field_arg\(\)|\{\}|\{\.[^}]*\})"
                 r"(\s*,\s*(true|false))?")
ENTRY = re.compile(r'\{Type: "(\w+)", Name: "([^"]+)"(.*?)\},?\s*$')
TYPES = {"string": "string", "uint64": "number", "bool": "bool", "reltime": "number",
         "abstime": "number", "ipaddr": "ip", "ipnet": "ipnet"}


def version(root: Path, plugin: str) -> str:
    changelog = (root / "plugins" / plugin / "CHANGELOG.md").read_text()
    return re.search(r"^## v(\S+)", changelog, re.M).group(1)


def arg_tag(rest: str) -> str:
    m = re.search(r"Arg: sdk.FieldEntryArg\{([^}]*)\}", rest)
    if not m:
        return "-"
    spec = m.group(1)
    required = "IsRequired: true" in spec
    if "IsIndex: true" in spec:
        return "N" if required else "N?"
    return "key" if required else "key?"


def cpp_fields(text: str) -> list[str]:
    body = text[text.index("get_fields()"):]
    body = body[:body.index("};")]
    out = []
    for block in body.split("{ft::FTYPE_")[1:]:
        ty = block.split(",", 1)[0]
        name = re.search(r'"([a-z0-9_.]+)"', block).group(1)
        # Skip the display and description strings, then read the argument and list flag.
        rest = re.sub(r'"(?:[^"\\]|\\.)*"', '""', block)
        m = ARG.search(rest)
        arg, is_list = "-", False
        if m:
            spec = m.group(1)
            if spec == "req_both_arg" or spec == "req_key_arg" or ".key = true" in spec:
                arg = "key" if ("required" in spec or spec.startswith("req_")) else "key?"
            is_list = m.group(3) == "true"
        out.append(f"{name} {CPP_TYPES[ty]} {'true' if is_list else 'false'} {arg}")
    return out


def main() -> None:
    root = Path(sys.argv[1])
    commit = sys.argv[2] if len(sys.argv) > 2 else subprocess.check_output(
        ["git", "-C", str(root), "rev-parse", "HEAD"], text=True).strip()
    out_dir = Path(__file__).resolve().parent.parent / "src/engine/fields"
    for plugin, path in GO_TABLES.items():
        lines = [
            f"# The {plugin} plugin's fields, v{version(root, plugin)}: its Fields() table in",
            f"# falcosecurity/plugins {path} at {commit[:12]}.",
            "# name type list arg (see ../syscall_fields.txt for the columns)",
        ]
        for line in (root / path).read_text().splitlines():
            m = ENTRY.search(line.strip())
            if not m:
                continue
            ty, name, rest = m.groups()
            is_list = "IsList: true" in rest
            lines.append(f"{name} {TYPES[ty]} {'true' if is_list else 'false'} {arg_tag(rest)}")
        (out_dir / f"{plugin}.txt").write_text("\n".join(lines) + "\n")
        print(f"{plugin}: {len(lines) - 3} fields")
    for plugin, path in CPP_TABLES.items():
        lines = [
            f"# The {plugin} plugin's fields, v{version(root, plugin)}: its get_fields() array in",
            f"# falcosecurity/plugins {path} at {commit[:12]}.",
            "# name type list arg (see ../syscall_fields.txt for the columns)",
        ] + cpp_fields((root / path).read_text())
        (out_dir / f"{plugin}.txt").write_text("\n".join(lines) + "\n")
        print(f"{plugin}: {len(lines) - 3} fields")


if __name__ == "__main__":
    main()
