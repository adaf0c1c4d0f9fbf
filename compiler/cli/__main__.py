"""``python -m nmc.compiler.cli``: the ``nmc`` command."""
from __future__ import annotations

import sys

from nmc.compiler.cli.commands import main

sys.exit(main())
