"""Times since programming, as users write them: ``250``, ``10min``, ``3h``, ``1d``, ``1y``."""
from __future__ import annotations

import math
import re

from nmc.isa.errors import NmcError

_DURATION = re.compile(r"^\s*([-+]?[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*([A-Za-z]*)\s*$")
_UNITS = {"": 1.0, "s": 1.0, "sec": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, "d": 86400.0,
          "w": 7 * 86400.0, "y": 365.25 * 86400.0}  # a year is 365.25 days


def parse_duration(text: str | float, flag: str = "--time") -> float:
    """A duration → seconds: a number of seconds (``250``, ``1e5``, or a float) or a number with
    a unit (``250s``, ``10min``/``10m``, ``3h``, ``1d``, ``2w``, ``1y``). ``flag`` names the
    setting in the error message."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        seconds = float(text)
    else:
        match = _DURATION.match(str(text))
        unit = match.group(2).lower() if match else None
        if match is None or unit not in _UNITS:
            raise NmcError(f"{flag} {text!r}: not a duration; give seconds (250) or a number with a unit "
                           f"(250s, 10min, 3h, 1d, 2w, 1y)")
        seconds = float(match.group(1)) * _UNITS[unit]
    if not math.isfinite(seconds):
        raise NmcError(f"{flag} {text!r}: too large a duration")
    if seconds < 0:
        raise NmcError(f"{flag} {text}: the time since programming cannot be negative")
    return seconds
