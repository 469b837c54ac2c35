"""The `jdps` command line: parses arguments and calls the library."""

from jdps.cli.main import build_parser, main

__all__ = ["build_parser", "main"]
