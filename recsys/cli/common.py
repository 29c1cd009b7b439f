"""What every `recsys` command shares: the console, the flags several commands take, and the
one-line errors (a RecsysError, an OS error a person can act on, running out of memory: one
line on stderr, exit code 2, no traceback)."""

from __future__ import annotations

import json

import functools
import inspect
import re
import sys
from pathlib import Path
from typing import Callable, Optional

import typer

from recsys.errors import RecsysError, causes, os_error_message, out_of_memory_message
from recsys.config import TrainConfig



class _Console:
    """rich's Console, made on first print: a command that refuses its flags never needs it."""

    def __getattr__(self, name: str):
        if "real" not in self.__dict__:
            from rich.console import Console

            self.real = Console()
        return getattr(self.real, name)


console = _Console()


def positive(value: Optional[float]) -> Optional[float]:
    if value is not None and not value > 0:
        raise typer.BadParameter("Input should be greater than 0")
    return value


# A flag's range is declared with the flag (min=, _positive): click refuses a value outside it
# before a command imports torch and TorchRec (seconds); the library still checks the resolved
# values, which a --config file may also set.
REPO = typer.Option(Path("feature_repo"), "--repo", help="Feast feature repo folder.")
FORCE = typer.Option(False, "--force", help="Replace existing output.")
# None: not given, so a --config file's value (or the default) holds
EPOCHS = typer.Option(None, "--epochs", min=1, help=f"The most epochs (default "
                      f"{TrainConfig.epochs}): training stops when validation AUC has not "
                      f"improved for {TrainConfig.patience} (`patience:` in --config) and keeps "
                      f"the best epoch.")
BATCH_SIZE = typer.Option(None, "--batch-size", min=1,
                          help=f"Default {TrainConfig.batch_size}.")
CONFIG = typer.Option(None, "--config", help="YAML file of the run's hyper-parameters "
                      "(shaped like a run's config.json; flags win).")
# experiments
PRESET = typer.Option(None, "--preset", help="Uses datasets/<preset> (default: the preset of "
                      "the data in feature_repo/, else small).")
DATASET = typer.Option(None, "--dataset", help="Overrides --preset.")
SEEDS = typer.Option(1, "--seeds", min=1, help="Seeds 0..K-1.")
TEXT = typer.Option(False, "--text", help="Add the text vectors (`recsys encode-text`).")
IMAGE = typer.Option(False, "--image", help="Add the item image vectors.")


def friendly(fn: Callable) -> Callable:
    """Print a RecsysError, an OS error the user can act on (full disk, read-only folder,
    a file in a folder's place) or running out of memory as one line and exit 2, without a
    traceback."""

    flags = flags_of(fn)

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except RecsysError as e:
            message = as_flags(str(e), e.fields, flags)
        except OSError as e:
            message = os_error_message(e)
            if message is None:
                raise
        except Exception as e:
            if not out_of_memory(e):
                raise
            message = out_of_memory_message(e)
        print_error(message)
        raise typer.Exit(2) from None

    return wrapper


def flags_of(fn: Callable) -> dict[str, str]:
    """A command's parameters by their Python names -> their flags (batch_size -> --batch-size)."""
    return {name: max(p.default.param_decls, key=len)
            for name, p in inspect.signature(fn).parameters.items()
            if isinstance(p.default, typer.models.OptionInfo) and p.default.param_decls}


def as_flags(message: str, fields: tuple[str, ...], flags: dict[str, str]) -> str:
    """The library names parameters by their Python names (`batch_size`, a switch as
    `force=True`); a person at the command line reads them as this command's flags."""
    for name, flag in flags.items():
        message = re.sub(rf"(?<![\w-]){re.escape(name)}=True\b", flag, message)
        if name in fields:
            message = re.sub(rf"(?<![\w./-]){re.escape(name)}(?![\w./-])", flag, message)
    return message


class LineAwareStderr:
    """sys.stderr that knows whether its last write left a line open (a progress bar redraws
    its line without ending it), so that an error still starts a line of its own."""

    def __init__(self, stream):
        self._stream, self.line_open = stream, False

    def write(self, text: str) -> int:
        if text:
            self.line_open = not text.endswith("\n")
        return self._stream.write(text)

    def __getattr__(self, name: str):
        return getattr(self._stream, name)


def out_of_memory(e: Exception) -> bool:
    """A MemoryError, or DuckDB out of memory under its limit (duckdb only where loaded)."""
    duckdb = sys.modules.get("duckdb")
    return isinstance(e, MemoryError) or (duckdb is not None and
                                          isinstance(e, duckdb.OutOfMemoryException))


def print_error(message: str) -> None:
    """The one error line: after the bars a failure left open, on a line of its own, last."""
    tqdm = sys.modules.get("tqdm")  # bars only where tqdm is loaded
    for bar in list(getattr(getattr(tqdm, "tqdm", None), "_instances", ())):
        bar.close()
    start = "\n" if getattr(sys.stderr, "line_open", False) else ""
    sys.stderr.write(f"{start}error: {message}\n")
    sys.stderr.flush()


def print_feast_reset(meta: dict) -> None:
    if meta.get("feast_reset"):
        console.print(f"replaced old data; removed Feast state {', '.join(meta['feast_reset'])}: "
                      f"run `feast apply` and `feast materialize-incremental` again")


def run(app: typer.Typer) -> None:
    """Run `app` as a console script. Click's own usage errors (an unknown flag, a value of the
    wrong type) are one line too, like every other refusal."""
    sys.stderr = LineAwareStderr(sys.stderr)
    try:
        code = app(standalone_mode=False)
    except Exception as e:
        if any(isinstance(c, KeyboardInterrupt) for c in causes(e)):
            # DuckDB, say, reports Ctrl-C as "Query interrupted", raised from the interrupt
            code = 130
        elif not (hasattr(e, "format_message") and hasattr(e, "exit_code")):
            raise
        else:
            message, ctx = e.format_message(), getattr(e, "ctx", None)
            if message:  # none after the help printed for a bare `recsys`
                hint = f" (see `{ctx.command_path} --help`)" if ctx is not None else ""
                print_error(f"{message}{hint}")
            sys.exit(2)
    if code == 130:  # Ctrl-C, turned into this exit code by typer
        print_error("interrupted; outputs are written whole or not at all: rerun to resume "
                     "or start again")
    sys.exit(code if isinstance(code, int) else 0)


def workspace_preset(preset: str | None = None, repo: Path = Path("feature_repo")) -> str:
    """--preset, else the preset of the data in `repo` (whose dataset `build-dataset` wrote to
    datasets/<preset>), else small: build, train and the experiments agree on one workspace."""
    if preset:
        return preset
    from recsys.data.offline import REPO_META, offline_dir

    try:
        return json.loads((offline_dir(repo) / REPO_META).read_text())["preset"]
    except (OSError, ValueError, KeyError, TypeError):
        return "small"
