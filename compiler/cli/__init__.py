"""The ``nmc`` command line: ``compile``, ``run``, ``verify``, ``report``, ``targets``.

``files.py`` reads input arrays and checks and writes files, ``summary.py`` formats what the
commands print, ``commands.py`` holds the commands, their parser and ``main``. Every user error
is one line ``nmc: error: ...`` and exit code 2, a bug in nmc exit code 3, ``verify`` outside the
tolerance 1. Output files are written atomically; long work draws a progress bar on stderr when it
is a terminal (``--quiet`` turns it off).
"""
from __future__ import annotations

from nmc.compiler.cli.commands import (EXIT_INTERNAL_ERROR, EXIT_OK, EXIT_USER_ERROR, EXIT_VERIFY_FAILED,
                                       build_parser, cmd_compile, cmd_report, cmd_run, cmd_targets, cmd_verify,
                                       main, parse_duration)
from nmc.compiler.cli.files import CliError

__all__ = ["main", "build_parser", "cmd_compile", "cmd_run", "cmd_verify", "cmd_report", "cmd_targets",
           "CliError", "parse_duration", "EXIT_OK", "EXIT_VERIFY_FAILED", "EXIT_USER_ERROR", "EXIT_INTERNAL_ERROR"]
