"""Targets: a chip described in a TOML file, read by compiler and runtime alike."""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from isa.errors import NmcError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

PRESET_DIR = Path(__file__).with_name("targets")
CORE_KINDS = ("vector",)


class TargetError(NmcError):
    """A target name is unknown or a target file has a bad field."""


@dataclass(frozen=True)
class CoreGroup:
    kind: str
    count: int
    precision: str


@dataclass(frozen=True)
class Target:
    name: str
    summary: str
    clock_ghz: float
    rtol: float
    min_top1_agreement: float
    cores: tuple[CoreGroup, ...]
    source: str  # the TOML text, embedded in every compiled program

    @property
    def core_count(self) -> int:
        return sum(g.count for g in self.cores)


_SCHEMA = {
    "chip": {"name": str, "summary": str, "clock_ghz": (int, float)},
    "verify": {"rtol": (int, float), "min_top1_agreement": (int, float)},
}
_CORE_SCHEMA = {"kind": str, "count": int, "precision": str}


def preset_names() -> list[str]:
    return sorted(p.stem for p in PRESET_DIR.glob("*.toml"))


def load_target(name_or_path: str) -> Target:
    """A preset by name (``ideal``) or a TOML file by path."""
    path = Path(name_or_path)
    if path.suffix == ".toml" or path.exists():
        if not path.is_file():
            raise TargetError(f"target file {path} does not exist")
        return parse_target(path.read_text(), str(path))
    preset = PRESET_DIR / f"{name_or_path}.toml"
    if not preset.is_file():
        raise TargetError(f"unknown target {name_or_path!r}; presets: {', '.join(preset_names())} "
                          "(or pass a .toml file)")
    return parse_target(preset.read_text(), name_or_path)


def parse_target(text: str, origin: str = "<target>") -> Target:
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise TargetError(f"{origin}: not valid TOML: {e}") from None
    for key in doc:
        if key not in _SCHEMA and key != "cores":
            raise TargetError(f"{origin}: unknown section [{key}]; known: {', '.join(list(_SCHEMA) + ['cores'])}")
    values = {}
    for section, fields in _SCHEMA.items():
        table = doc.get(section)
        if not isinstance(table, dict):
            raise TargetError(f"{origin}: missing section [{section}]")
        for key in table:
            if key not in fields:
                raise TargetError(f"{origin}: unknown field {section}.{key}; known: {', '.join(fields)}")
        for key, kind in fields.items():
            if key not in table:
                raise TargetError(f"{origin}: missing field {section}.{key}")
            if not isinstance(table[key], kind) or isinstance(table[key], bool):
                raise TargetError(f"{origin}: field {section}.{key} = {table[key]!r} has the wrong type")
            values[f"{section}.{key}"] = table[key]
    cores = []
    for i, group in enumerate(doc.get("cores", [])):
        for key in group:
            if key not in _CORE_SCHEMA:
                raise TargetError(f"{origin}: unknown field cores[{i}].{key}; known: {', '.join(_CORE_SCHEMA)}")
        for key, kind in _CORE_SCHEMA.items():
            if not isinstance(group.get(key), kind):
                raise TargetError(f"{origin}: field cores[{i}].{key} is missing or has the wrong type")
        if group["kind"] not in CORE_KINDS:
            raise TargetError(f"{origin}: cores[{i}].kind = {group['kind']!r}; known kinds: {', '.join(CORE_KINDS)}")
        if group["count"] < 1:
            raise TargetError(f"{origin}: cores[{i}].count must be at least 1")
        cores.append(CoreGroup(group["kind"], group["count"], group["precision"]))
    if not cores:
        raise TargetError(f"{origin}: a target needs at least one [[cores]] group")
    if values["chip.clock_ghz"] <= 0:
        raise TargetError(f"{origin}: chip.clock_ghz must be positive")
    return Target(values["chip.name"], values["chip.summary"], float(values["chip.clock_ghz"]),
                  float(values["verify.rtol"]), float(values["verify.min_top1_agreement"]),
                  tuple(cores), text)
