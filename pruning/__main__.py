"""Command line: ``python -m pruning <command>``.

    run CONFIG           train every (technique, reinit, seed) of CONFIG; finished runs are skipped
                         (--executor ray [--address HOST:PORT]: on Ray, embedded or a running cluster)
    fetch [DATASET...]   place and verify raw data under data/raw/
    table RESULTS        print the tidy results table (one row per training)
    notebooks RESULTS    execute every figure notebook with papermill for RESULTS
    report RESULTS       render the paper and the poster for RESULTS
    publish RESULTS      add RESULTS' finished seeds to docs/<name>/data (seeds there are kept) and render the set
                         from that data (paper, poster, table, experiment.json); `publish docs/<name>` re-renders it;
                         --replicate NAME: keep its table, experiment.json and data in docs/replicates/NAME/;
                         --sensitivity NAME: keep its table and experiment.json in docs/sensitivity/NAME/
    readme               write the README's table of every published LeNet set against the poster (from docs/)
    all [CONFIG]         run, notebooks, report (the README's main job)

Every error that a user can fix is printed as one line that says what to do; the exit code is 2.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from .core import numerics
from .core.paths import REPO_ROOT
DEFAULT_CONFIG = REPO_ROOT / "configs" / "smoke.yaml"


def results_folder(cfg_name: str, given: str | None) -> Path:
    """The results folder: ``--results`` if given, else results/<config name>; an existing file is an error."""
    from .core import paths

    folder = Path(given) if given else paths.named_folder(paths.RESULTS, cfg_name, "the config's name")
    if folder.exists() and not folder.is_dir():
        from .store import StoreError

        raise StoreError(f"results folder {folder} is a file; name a folder (new or a results folder) with --results")
    return folder


def _cmd_run(args) -> int:
    from .nets import config

    from .execution import runner
    cfg = config.load_experiment(args.config)
    runner.run_experiment(cfg, results_folder(cfg.name, args.results), source=str(args.config), quiet=args.quiet,
                          trainer=args.trainer, device=args.device, seeds=parse_seeds(args.seeds), **_executor(args))
    return 0


def parse_seeds(text: str | None) -> list[int] | None:
    """``--seeds``: "3", "3-5" or "0,2,7-9" as a list of seeds; None when not given."""
    if text is None:
        return None
    from .nets.config import ConfigError

    seeds = []
    for part in text.split(","):
        lo, sep, hi = part.strip().partition("-")
        if not lo.isdigit() or (sep and not hi.isdigit()) or (sep and int(hi) < int(lo)):
            raise ConfigError(f"--seeds {text[:40]!r} is not a list of seeds; write e.g. 3, 3-5 or 0,2,7-9")
        if sep and int(hi) - int(lo) >= MAX_SEEDS:
            raise ConfigError(f"--seeds {text[:40]!r} names more than {MAX_SEEDS:,} seeds; name the config's seeds, "
                              f"e.g. 0-4")
        seeds.extend(range(int(lo), int(hi) + 1) if sep else [int(lo)])
        if len(seeds) > MAX_SEEDS:
            raise ConfigError(f"--seeds names more than {MAX_SEEDS:,} seeds; name the config's seeds, e.g. 0-4")
    return seeds


MAX_SEEDS = 10_000  # --seeds is checked against the config's seeds: a longer list names seeds no config has


def _executor(args) -> dict:
    """--executor and --address (or RAY_ADDRESS) as run_experiment's arguments."""
    from .execution.executors import ExecutorError, ray_address

    if args.executor == "ray":
        return {"executor": "ray", "address": ray_address(args.address)}
    if args.address:
        raise ExecutorError("--address needs --executor ray")
    return {"executor": "local"}


def _cmd_fetch(args) -> int:
    from .nets import datasets

    for name in args.datasets or ["mnist"]:
        datasets.fetch(name, quiet=args.quiet)
    return 0


def _cmd_table(args) -> int:
    import pandas as pd

    from . import store

    table = store.load_results(args.results)
    with pd.option_context("display.max_rows", args.rows, "display.width", 200):
        print(table.drop(columns=["run_dir", "file"]).to_string(max_rows=args.rows))
    return 0


def _cmd_notebooks(args) -> int:
    from .reporting import notebooks

    notebooks.execute_all(args.results, force=args.force, quiet=args.quiet)
    return 0


def _cmd_report(args) -> int:
    from .reporting import report

    report.render(args.results, renderer=args.renderer, quiet=args.quiet)
    return 0


def _cmd_publish(args) -> int:
    from .nets import config

    from .reporting import publish
    target = Path(args.target)
    if target.suffix in (".yaml", ".yml"):
        target = results_folder(config.load_experiment(target).name, None)
    if args.replicate:
        folder = publish.replicate(target, args.replicate)
        if not args.quiet:
            print(f"replicate kept: {folder}")
        return 0
    if args.sensitivity:
        folder = publish.sensitivity(target, args.sensitivity)
        if not args.quiet:
            print(f"sensitivity variant kept: {folder}; the papers that compare it read it when next rendered "
                  f"(python -m pruning publish docs/<set>)")
        return 0
    publish.publish(target, renderer=args.renderer, quiet=args.quiet)
    return 0


def _cmd_readme(args) -> int:
    from .reporting import poster_sets, seed_times

    changed = poster_sets.write_readme()
    timed = seed_times.write()
    if not args.quiet:
        print("README.md: the poster comparison " + ("rewritten from docs/" if changed else "already matches docs/"))
        print("docs/benchmarks.md: the seeds' wall times " + ("rewritten" if timed else "already match docs/"))
    return 0


def _cmd_all(args) -> int:
    from .nets import config

    from .reporting import notebooks, report
    from .execution import runner
    cfg = config.load_experiment(args.config)
    results = results_folder(cfg.name, args.results)
    runner.run_experiment(cfg, results, source=str(args.config), quiet=args.quiet, trainer=args.trainer,
                          device=args.device, seeds=parse_seeds(args.seeds), **_executor(args))
    notebooks.execute_all(results, quiet=args.quiet)
    report.render(results, renderer=args.renderer, quiet=args.quiet)
    return 0


EXAMPLES = """examples:
  python -m pruning all configs/smoke.yaml                          train, execute the notebooks, render the report
  python -m pruning run configs/authors_lenet_mnist.yaml --seeds 0  one seed of a config
  python -m pruning publish results/authors_lenet_mnist             add its finished seeds to docs/
  python -m pruning table docs/paper_lenet_mnist_cpu                the tidy table of a published set
"""


def _version() -> str:
    """The package's version and the checkout's code version."""
    from importlib.metadata import PackageNotFoundError, version

    from .store.provenance import code_version

    try:
        v = version("pruning")
    except PackageNotFoundError:
        v = "unknown"
    return f"{v} (code {code_version()})"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m pruning", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EXAMPLES)
    p.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = p.add_subparsers(dest="command", required=True)

    def executor_options(sp):
        sp.add_argument("--executor", choices=["local", "ray"], default="local",
                        help="where runs train: 'local' (this process or local worker processes, the default) "
                             "or 'ray' (a Ray cluster: embedded on this machine, or the one at --address)")
        sp.add_argument("--address", help="with --executor ray: join the Ray cluster at HOST:PORT "
                                          "(default: $RAY_ADDRESS, else start Ray on this machine)")

    def common(sp, results_positional=False):
        sp.add_argument("--quiet", action="store_true", help="no progress bars and no log lines")
        if results_positional:
            sp.add_argument("results", help="a results folder, e.g. results/smoke")

    r = sub.add_parser("run", help="train the runs of a config")
    r.add_argument("config", type=Path)
    r.add_argument("--results", help="results folder (default: results/<config name>)")
    r.add_argument("--trainer", choices=["single", "population"], help="force a trainer (default: the faster one)")
    r.add_argument("--device", choices=["cpu", "cuda"], help="override the config's device")
    r.add_argument("--seeds", help="train only these of the config's seeds, e.g. 3-5 or 0,2 (default: all)")
    executor_options(r)
    common(r)
    r.set_defaults(func=_cmd_run)

    f = sub.add_parser("fetch", help="fetch and verify raw datasets")
    f.add_argument("datasets", nargs="*")
    common(f)
    f.set_defaults(func=_cmd_fetch)

    t = sub.add_parser("table", help="print the results table")
    t.add_argument("--rows", type=int, default=40)
    common(t, True)
    t.set_defaults(func=_cmd_table)

    n = sub.add_parser("notebooks", help="execute the figure notebooks for a results folder")
    n.add_argument("--force", action="store_true", help="re-execute even unchanged notebooks")
    common(n, True)
    n.set_defaults(func=_cmd_notebooks)

    rep = sub.add_parser("report", help="render the paper and poster for a results folder")
    rep.add_argument("--renderer", choices=["auto", "quarto", "pandoc"], default="auto")
    common(rep, True)
    rep.set_defaults(func=_cmd_report)

    pub = sub.add_parser("publish", help="add a run store's finished seeds to docs/<name>/ and render the set from its "
                                         "published data (its table, experiment.json and data/)")
    pub.add_argument("target", help="a results folder (results/NAME), the config that wrote it (configs/NAME.yaml), or "
                                    "a published set (docs/NAME) to render again from its data")
    pub.add_argument("--renderer", choices=["auto", "quarto", "pandoc"], default="auto")
    kept = pub.add_mutually_exclusive_group()
    kept.add_argument("--replicate", metavar="NAME", help="keep the table, experiment.json and data in "
                      "docs/replicates/NAME/ (a second training of a published config)")
    kept.add_argument("--sensitivity", metavar="NAME", help="keep the table and experiment.json in "
                      "docs/sensitivity/NAME/ (a variant of a published config, for the sensitivity study)")
    common(pub)
    pub.set_defaults(func=_cmd_publish)

    rd = sub.add_parser("readme", help="write the README's poster comparison from the published sets in docs/")
    common(rd)
    rd.set_defaults(func=_cmd_readme)

    a = sub.add_parser("all", help="run + notebooks + report")
    a.add_argument("config", type=Path, nargs="?", default=DEFAULT_CONFIG)
    a.add_argument("--results")
    a.add_argument("--trainer", choices=["single", "population"])
    a.add_argument("--device", choices=["cpu", "cuda"])
    a.add_argument("--seeds", help="train only these of the config's seeds, e.g. 3-5 or 0,2 (default: all)")
    a.add_argument("--renderer", choices=["auto", "quarto", "pandoc"], default="auto")
    executor_options(a)
    common(a)
    a.set_defaults(func=_cmd_all)
    return p


def main(argv=None) -> int:
    from .core.errors import UserError

    args = parser().parse_args(argv)
    try:
        numerics.pin()  # PRUNING_NUMERICS=pinned: the libraries' code paths, set before a command imports torch
        return args.func(args)
    except UserError as exc:  # ConfigError, DataError, StoreError, ExecutorError, ParameterError, ReportError, ...
        print(f"error: {exc}", file=sys.stderr)
        if argv is None and getattr(exc, "exit_now", False):  # a failed ray.init's threads can block the exit
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(2)
        return 2
    except OSError as exc:  # a read-only folder, a full disk, a file-size limit: atomic writes left no half file
        where = f" ({exc.filename})" if getattr(exc, "filename", None) else ""
        print(f"error: cannot write{where}: {exc.strerror or exc}; free disk space or fix the folder's permissions, "
              f"then run the same command again (finished trainings are kept)", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: finished trainings are kept; run the same command again to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
