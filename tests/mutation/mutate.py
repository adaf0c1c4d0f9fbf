"""Mutation testing of the simulator, the passes and codegen with mutmut (docs/testing.md).

    python tests/mutation/mutate.py                      # every module in scope, 2 workers
    python tests/mutation/mutate.py "nmc.runtime.noise*" # mutants whose names match (fnmatch)
    python tests/mutation/mutate.py --summary            # tables of the last run, no new run
    python tests/mutation/mutate.py --survivors runtime/noise.py   # their diffs, for triage
    python tests/mutation/mutate.py --sample 600         # a uniform random sample (seeded), scored

mutmut names a module by its path, and the repository root *is* the package ``nmc``; so the
work directory holds the package under ``nmc/`` beside ``tests/`` and ``examples/`` (a layout
mutmut understands), copied from this checkout. Mutants run against the default test selection
(pyproject's ``addopts``: not slow, not zoo), so a killed mutant is one the README's test
command catches. Mutants listed in ``triage/*.toml`` as equivalent (no behaviour can tell them
apart) leave the denominator; every other survivor counts against the score.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import random
import shutil
import subprocess
import sys
import tomllib
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
SCOPE = ["runtime", "compiler/passes", "compiler/codegen"]
# the docs generators (isa/docs.py, frontend/docs.py) find docs/ beside the package
PACKAGE = ["__init__.py", "compiler", "isa", "backends", "runtime", "docs"]
BESIDE = ["tests", "examples", "docs", "README.md"]
# test_layout.py checks the repository's own layout, which the work directory rearranges
IGNORE = ["tests/test_layout.py"]
KILLED = {"killed", "timeout"}
RECHECK_TIMEOUT = 300  # seconds: the new test files take a few under load  # mutmut counts a mutant that hangs the tests as caught


def prepare(work: Path) -> None:
    """Copy this checkout into ``work`` as ``nmc/`` + tests; keep mutmut's state if present."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".hypothesis", "mutants")
    (work / "nmc").mkdir(parents=True, exist_ok=True)
    for name in PACKAGE:
        _copy(REPO / name, work / "nmc" / name, ignore)
    for name in BESIDE:
        _copy(REPO / name, work / name, ignore)
    config = (REPO / "pyproject.toml").read_text()
    sources = ", ".join(f'"nmc/{s}"' for s in SCOPE)
    selection = ", ".join(f'"{x}"' for x in ["tests"] + [f"--ignore={i}" for i in IGNORE])
    config += (
        "\n[tool.mutmut]\n"
        f"source_paths = [{sources}]\n"
        f"pytest_add_cli_args_test_selection = [{selection}]\n"
        'also_copy = ["nmc", "examples", "docs", "README.md"]\n'
    )
    (work / "pyproject.toml").write_text(config)


def _copy(src: Path, dst: Path, ignore) -> None:
    if src.is_dir():
        shutil.copytree(src, dst, ignore=ignore, dirs_exist_ok=True)
    else:
        shutil.copy2(src, dst)


def run(work: Path, patterns: list[str], workers: int) -> int:
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    return subprocess.call([sys.executable, "-m", "mutmut", "run", "--max-children", str(workers), *patterns],
                           cwd=work, env=env)


def statuses(work: Path) -> dict[str, str]:
    """Mutant name -> mutmut status (killed, survived, timeout, no tests, not checked, ...)."""
    out = subprocess.run([sys.executable, "-m", "mutmut", "results", "--all", "true"], cwd=work,
                         capture_output=True, text=True, check=True).stdout
    found = {}
    for line in out.splitlines():
        name, sep, status = line.strip().rpartition(": ")
        if sep and name.startswith("nmc."):
            found[name] = status
    return found


def diff(work: Path, name: str) -> list[str]:
    """The mutant's changed lines ('-' original, '+' mutant), without the file header."""
    os.chdir(work)  # mutmut reads its configuration and mutants from the working directory
    from mutmut.mutation.diff_apply import get_diff_for_mutant

    return [line for line in get_diff_for_mutant(name).splitlines()
            if line[:1] in "+-" and not line.startswith(("+++", "---"))]


def triaged() -> list[dict]:
    """The equivalent mutants of ``triage/*.toml``: ``[[equivalent]]`` tables with ``function``
    (mutmut's name without ``__mutmut_N``), ``diff`` (the changed lines) and ``why``."""
    entries = []
    for path in sorted((HERE / "triage").glob("*.toml")):
        entries += tomllib.loads(path.read_text()).get("equivalent", [])
    return entries


def _function(name: str) -> str:
    """``nmc.runtime.noise.x_rows_noise__mutmut_3`` -> ``nmc.runtime.noise.x_rows_noise``."""
    return name.rpartition("__mutmut_")[0]


def module_of(name: str) -> str:
    parts = _function(name).split(".")
    return "/".join(p for p in parts[1:-1]) + ".py"


def equivalent(work: Path, found: dict[str, str]) -> set[str]:
    """Survivors that a triage entry explains: same function, same changed lines."""
    entries = triaged()
    by_function = defaultdict(list)
    for e in entries:
        by_function[e["function"]].append(e)
    hits = set()
    for name, status in found.items():
        if status in KILLED | {"not checked", "skipped"} or _function(name) not in by_function:
            continue
        lines = diff(work, name)
        if any(lines == e["diff"] for e in by_function[_function(name)]):
            hits.add(name)
    return hits


def summary(work: Path) -> str:
    found = statuses(work)
    found.update(_rechecked(work))
    same = equivalent(work, found)
    rows = defaultdict(Counter)
    for name, status in found.items():
        rows[module_of(name)]["equivalent" if name in same else status] += 1
    head = ("| module | mutants | killed | survived | no tests | equivalent | not run | score |\n"
            "|---|---|---|---|---|---|---|---|")
    lines, total = [head], Counter()
    for module in sorted(rows):
        c = rows[module]
        total.update(c)
        lines.append(_row(module, c))
    lines.append(_row("**all**", total))
    return "\n".join(lines)


def _rechecked(work: Path) -> dict[str, str]:
    path = work / "recheck.json"
    return {k: v for k, v in json.loads(path.read_text()).items() if v in KILLED} if path.exists() else {}


def recheck(work: Path, plan: list[str], workers: int) -> None:
    """Run the survivors of each module against test files written after mutmut's run (``MODULE=
    TEST[,TEST]``, e.g. ``runtime/costs.py=tests/test_costs_formulas.py``), the way mutmut runs a
    mutant (``MUTANT_UNDER_TEST`` in the mutants directory). They are part of the default
    selection, so a mutant one of them fails is killed by the default run; ``recheck.json``
    keeps the verdicts and ``--summary`` counts them."""
    tests_of = {}
    for item in plan:
        module, _, files = item.partition("=")
        tests_of[module] = files.split(",")
    for files in tests_of.values():
        for f in files:
            shutil.copy2(REPO / f, work / "mutants" / f)
    found = statuses(work)
    found.update(_rechecked(work))
    same = equivalent(work, found)
    todo = [n for n, st in sorted(found.items()) if st not in KILLED | {"not checked"} and n not in same
            and module_of(n) in tests_of]

    def verdict(name: str) -> int:
        env = dict(os.environ, MUTANT_UNDER_TEST=name, PYTHONDONTWRITEBYTECODE="1")
        files = tests_of[module_of(name)] if name else sorted({f for fs in tests_of.values() for f in fs})
        try:
            return subprocess.call([sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *files],
                                   cwd=work / "mutants", env=env, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL, timeout=RECHECK_TIMEOUT)
        except subprocess.TimeoutExpired:
            return -1   # a mutant that hangs the tests is caught, as mutmut counts it

    if verdict("") != 0:
        raise SystemExit("the new tests fail without a mutant: fix them first")
    path = work / "recheck.json"
    done = json.loads(path.read_text()) if path.exists() else {}
    with ThreadPoolExecutor(workers) as pool:
        for name, code in zip(todo, pool.map(verdict, todo)):
            # pytest's 2: a test module fails to import (collection error), which fails the run too
            done[name] = {1: "killed", 2: "killed", -1: "timeout", 0: "survived"}.get(code, f"error {code}")
            path.write_text(json.dumps(done, indent=0, ensure_ascii=False))
    print(f"rechecked {len(todo)}: {sum(done[n] == 'killed' for n in todo)} killed by the new tests")


def sample(work: Path, n: int, seed: int) -> list[str]:
    """The first ``n`` mutants of a seeded shuffle of all of them (so a larger ``n`` extends the
    sample): a simple random sample, whose score estimates the whole population's."""
    names = sorted(statuses(work))
    random.Random(seed).shuffle(names)
    return names[:n]


def wilson(killed: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """The 95 % Wilson score interval of a proportion ``killed / n``."""
    if n == 0:
        return 0.0, 1.0
    p = killed / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


def sample_summary(work: Path, names: list[str]) -> str:
    """The sample's score with its 95 % interval (finite population ignored: conservative)."""
    found = statuses(work)
    found.update(_rechecked(work))
    chosen = {n: found[n] for n in names if n in found}
    same = equivalent(work, chosen)
    c = Counter("equivalent" if n in same else st for n, st in chosen.items())
    killed = sum(c[s] for s in KILLED)
    counted = sum(c.values()) - c["not checked"] - c["skipped"] - c["equivalent"]
    lo, hi = wilson(killed, counted)
    return (f"sample of {len(names)} (seed {SEED}): {killed} killed of {counted} non-equivalent run "
            f"({c['equivalent']} equivalent, {c['not checked']} not run): "
            f"{100 * killed / max(counted, 1):.1f} %, 95 % interval {100 * lo:.1f}–{100 * hi:.1f} %")


SEED = 20261202


def _row(label: str, c: Counter) -> str:
    killed = sum(c[s] for s in KILLED)
    run_ = sum(c.values()) - c["not checked"] - c["skipped"]
    counted = run_ - c["equivalent"]
    score = f"{100 * killed / counted:.1f} %" if counted else "–"
    return (f"| {label} | {sum(c.values())} | {killed} | {c['survived'] + c['suspicious']} | {c['no tests']} | "
            f"{c['equivalent']} | {c['not checked']} | {score} |")


def survivors(work: Path, module: str) -> None:
    found = statuses(work)
    found.update(_rechecked(work))
    same = equivalent(work, found)
    for name, status in sorted(found.items()):
        if module_of(name) == module and status not in KILLED | {"not checked"} and name not in same:
            print(f"# {name}: {status}")
            print("\n".join(diff(work, name)))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("patterns", nargs="*", help="mutant name globs (default: everything in scope)")
    ap.add_argument("--work", type=Path, default=Path.home() / ".cache" / "nmc-mutation")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--summary", action="store_true", help="print the tables of the last run only")
    ap.add_argument("--sample", type=int, metavar="N",
                    help="run (or, with --summary, score) a seeded uniform random sample of N mutants")
    ap.add_argument("--survivors", metavar="MODULE", help="print surviving mutants of e.g. runtime/noise.py")
    ap.add_argument("--recheck", nargs="+", metavar="MODULE=TESTS",
                    help="run survivors against tests written since the run (see recheck())")
    args = ap.parse_args(argv)
    if args.recheck:
        recheck(args.work, args.recheck, args.workers)
        print(summary(args.work))
        return 0
    if args.survivors:
        survivors(args.work, args.survivors)
        return 0
    if args.sample and not (args.work / "mutants").exists():
        prepare(args.work)   # generate the mutants (and mutmut's test statistics) to draw from
        run(args.work, ["nmc.no_mutant_has_this_name*"], args.workers)
    chosen = sample(args.work, args.sample, SEED) if args.sample else args.patterns
    if not args.summary:
        prepare(args.work)
        code = run(args.work, chosen, args.workers)
        if code not in (0, 1):   # mutmut exits 1 when there are survivors
            return code
    print(summary(args.work))
    if args.sample:
        print(sample_summary(args.work, chosen))
    return 0


if __name__ == "__main__":
    sys.exit(main())
