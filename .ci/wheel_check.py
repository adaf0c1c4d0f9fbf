"""CI: the wheel holds one top-level package, ``nmc`` (plus its dist-info), with the package
data it needs (grammar, target presets, report templates).

    python .ci/wheel_check.py dist/nmc-*.whl
"""
from __future__ import annotations

import sys
import zipfile

NEEDED = ("nmc/__init__.py", "nmc/isa/grammar.lark", "nmc/backends/targets/pcm.toml",
          "nmc/compiler/reports/templates/report.html.j2", "nmc/compiler/cli/__main__.py", "nmc/runtime/machine.py")


def main(wheel: str) -> int:
    names = zipfile.ZipFile(wheel).namelist()
    tops = sorted({n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")})
    missing = [n for n in NEEDED if n not in names]
    entry = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
    scripts = zipfile.ZipFile(wheel).read(entry[0]).decode() if entry else ""
    problems = ([f"top-level entries {tops}: only 'nmc' may be there"] if tops != ["nmc"] else []) + \
               [f"missing {n}" for n in missing] + \
               ([] if "nmc = nmc.compiler.cli:main" in scripts else ["no 'nmc' console script"])
    for p in problems:
        print(f"wheel check: {p}", file=sys.stderr)
    print(f"wheel check: {len(names)} files, top level {tops}" + (" ok" if not problems else ""))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
