"""``tumsyn``: the tools next to the BIDS-App (prompts, simulate, train, evaluate, weights).

Each subcommand lives in its own module under ``tumsyn_bids.cli`` and keeps heavy imports
(torch, ants, nipype) inside the command body so that ``tumsyn --help`` stays fast.
"""

from __future__ import annotations

import importlib

import typer

app = typer.Typer(
    name="tumsyn",
    help="Tools around the tumsyn BIDS-App: inspect prompts, simulate data, train, evaluate.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# (command name, module under tumsyn_bids.cli, function name). A module that does not exist yet
# is skipped, so the tool works while features land one by one.
_COMMANDS: tuple[tuple[str, str, str], ...] = (
    ("prompts", "prompts_cmd", "prompts"),
    ("simulate", "simulate_cmd", "simulate"),
    ("train", "train_cmd", "train"),
    ("evaluate", "evaluate_cmd", "evaluate"),
    ("weights", "weights_cmd", "weights"),
)


def _register() -> None:
    for name, module_name, func_name in _COMMANDS:
        try:
            module = importlib.import_module(f"tumsyn_bids.cli.{module_name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"tumsyn_bids.cli.{module_name}":
                continue
            raise
        app.command(name)(getattr(module, func_name))


# Options that take several space-separated values, fMRIPrep style (``--target T2w FLAIR``).
_TOOL_MULTI_VALUE = {"--contrasts": None}


def main() -> None:
    """Console-script entry point."""
    import sys

    from tumsyn_bids.cli.options import MULTI_VALUE_OPTIONS, expand_multi_value

    _register()
    argv = expand_multi_value(sys.argv[1:], {**MULTI_VALUE_OPTIONS, **_TOOL_MULTI_VALUE})
    app(args=argv, prog_name="tumsyn")


if __name__ == "__main__":
    main()
