"""``mhc-bench lm-eval <lm-eval arguments>``: lm-eval's own command line, with this project's model.

lm-eval finds a model class only if something imported it (``@register_model``); its CLI never
imports this project, so ``lm-eval --model mhc-bench`` cannot work on its own. This command
imports the adapter (registering ``mhc-bench``) and hands every argument to lm-eval's CLI
unchanged, so any lm-eval task (local YAMLs through ``--include_path``, or hub tasks where the
network allows) runs on a trained cell::

    mhc-bench lm-eval --model mhc-bench --model_args cell=results/quick/cells/<id> \\
        --tasks <task> --include_path <dir> --batch_size auto

Two defaults differ from plain lm-eval: the device is the CPU unless ``--device`` (or a
``--config`` file) says otherwise (lm-eval's own default is ``cuda:0``), and the Hugging Face hub
stays reachable unless ``HF_HUB_OFFLINE`` / ``HF_DATASETS_OFFLINE`` are set (the project's other
commands default to offline). An unknown task, model or cell is one line on stderr, exit status 2.
"""

from __future__ import annotations

import sys

SUBCOMMANDS = ("run", "ls", "validate")


def lm_eval_argv(args: list[str]) -> list[str]:
    """lm-eval's arguments with this command's defaults added (``--device cpu`` for runs)."""
    args = list(args)
    runs = bool(args) and args[0] not in SUBCOMMANDS[1:] and not {"-h", "--help"} & set(args)
    chosen = any(a in ("--device", "--config", "-C") or a.startswith(("--device=", "--config="))
                 for a in args)
    if runs and not chosen:
        args += ["--device", "cpu"]
    return args


def main(args: list[str]) -> int:
    """Run lm-eval's CLI with ``args``; its exit status."""
    from mhc_bench.paths import configure_environment

    configure_environment(offline=False)
    from lm_eval.__main__ import cli_evaluate

    from mhc_bench.errors import UserError

    if not {"-h", "--help"} & set(args):  # help stays light: lm-eval's usage text needs no torch
        import mhc_bench.evaluation.adapter  # noqa: F401  (registers the "mhc-bench" model)

    saved = sys.argv
    sys.argv = ["mhc-bench lm-eval", *lm_eval_argv(args)]
    try:
        cli_evaluate()
    except SystemExit as stop:
        return stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
    except (UserError, ValueError) as err:  # lm-eval reports unknown tasks and models as ValueError
        message = err.one_line() if isinstance(err, UserError) else " ".join(str(err).split())
        print(f"mhc-bench lm-eval: error: {message}", file=sys.stderr)
        return 2
    finally:
        sys.argv = saved
    return 0
