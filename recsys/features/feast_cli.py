"""Feast's own command line (`python -m recsys.features.feast_cli apply` is `feast apply`) in a
process where this package's switch is set: the same commands, about 4 s sooner each (the
import of feast without typeguard's instrumentation). recsys runs Feast's CLI this way."""

import sys

import recsys.features  # noqa: F401  the switch, before feast is imported


def command(*args: str) -> list[str]:
    """The argv of `feast ARGS` run this way, for subprocess."""
    return [sys.executable, "-m", "recsys.features.feast_cli", *args]


if __name__ == "__main__":
    from feast.cli.cli import cli

    cli(prog_name="feast")
