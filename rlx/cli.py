"""`rlx train | sweep | reproduce | list` — the command line, generated from the config dataclasses.

    rlx train ppo --env gymnax/CartPole-v1 --seeds 8 --out runs/cartpole
    rlx train ppo --env gymnax/CartPole-v1 --lr 3e-4 --set clip_eps=0.1
    rlx sweep ppo --env gymnax/CartPole-v1 --seeds 4 --grid lr=1e-4,3e-4,1e-3
    rlx train --resume runs/cartpole
    rlx train cmorl --env rlx/deep-sea-treasure --out runs/cmorl     # a family with its own driver
    rlx sweep ppo --env gymnax/CartPole-v1 --seeds 8 --coordinator 10.0.0.1:1234 --num-processes 2 --process-id 0

On CPU the command exposes one XLA device per core (set before jax is imported)
and spreads the population over them, so members run in parallel. With
`--coordinator/--num-processes/--process-id` (or RLX_* variables, or under SLURM /
a TPU pod) the same command spans processes: see `rlx.distributed`.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import sys
import time
from typing import Any

from rlx.launchers import LAUNCHERS, LauncherError


def _set_platform_flags() -> None:
    """Before jax starts: one CPU device per usable core and the async-dispatch guard
    (`rlx.use_every_cpu_core`). `--devices` picks among them; it never adds virtual
    devices (set XLA_FLAGS=--xla_force_host_platform_device_count=N for those)."""
    import rlx

    rlx.use_every_cpu_core()


def _devices_arg(text: str) -> str:
    if text == "auto" or (text.isdigit() and int(text) >= 1):
        return text
    raise argparse.ArgumentTypeError(f"{text!r} is invalid: it must be auto or a positive integer")


def _nonnegative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is invalid: it must be an integer >= 0") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is invalid: it must be an integer >= 0")
    return value


def _positive_int(text: str) -> int:
    value = _nonnegative_int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is invalid: it must be an integer >= 1")
    return value


class CLIError(Exception):
    """A bad command line: one line, printed without a traceback."""


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (raised, so that `main` prints them and returns 2)."""

    def error(self, message: str):
        raise CLIError(f"{message} (see `{self.prog} --help`)")


def _algorithm(name: str):
    """`(module, config class, registry entry)` of an algorithm `rlx train` can run."""
    from rlx import registry

    try:
        entry = registry.get(name)
    except KeyError as e:
        raise CLIError(e.args[0]) from None
    if entry.kind != "agent":
        raise CLIError(f"{name} has a driver of its own, without sweeps: run it with `{entry.command}`.")
    module, config_cls, _ = entry.load()
    return module, config_cls, entry


def _trainer(argv: list[str]):
    """The `main(argv)` of a trainer-kind algorithm named by `rlx train NAME ...`, else None."""
    if len(argv) < 2 or argv[0] != "train" or argv[1].startswith("-"):
        return None
    from rlx import registry

    entry = registry.entries().get(argv[1])
    if entry is None or entry.kind != "trainer":
        return None
    return entry.load()[2]


_LOG_HELP = "also log to these trackers, comma-separated: tensorboard, wandb, mlflow (pip install 'rlx[tracking]')"


def add_run_flags(parser: argparse.ArgumentParser, default_out: str) -> None:
    """The flags every trainer-kind driver shares: --seed, --set, --out, --resume, --no-progress, --log."""
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--set", nargs="*", default=[], help="learner field overrides, key=value")
    parser.add_argument("--out", help=f"run directory (default {default_out})")
    parser.add_argument("--resume", metavar="DIR", help="continue the run in DIR with the same settings")
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("--log", metavar="TRACKERS", default="", help=_LOG_HELP)


def _flag_given(flag: str) -> bool:
    return any(a == flag or a.startswith(flag + "=") for a in _RUN.get("argv", []))


def _agent_names() -> str:
    from rlx import registry

    return ", ".join(registry.names("agent"))


def _field_flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _parser(config_cls: Any | None = None) -> argparse.ArgumentParser:
    p = _Parser(prog="rlx", description="Train and sweep rlx agents.")
    p.add_argument("--debug", action="store_true", help="show the traceback of an error (or set RLX_DEBUG=1)")
    sub = p.add_subparsers(dest="command", required=True)
    p.commands = {}
    for command in ("train", "sweep"):
        s = p.commands[command] = sub.add_parser(command, help=f"{command} an agent (a population of seeds{' x a grid' * (command == 'sweep')})")
        s.add_argument("algo", nargs="?", help=f"one of: {_agent_names()} (see `rlx list`)")
        s.add_argument("--env", help="environment name, e.g. gymnax/CartPole-v1 (see `rlx list`)")
        s.add_argument("--env-kwargs", nargs="*", default=[], metavar="KEY=VALUE", help="arguments for envs.make, e.g. backend=spring")
        s.add_argument("--seeds", type=_positive_int, default=8 if command == "train" else 4, help="seeds 0..N-1 (default: %(default)s)")
        s.add_argument("--preset", default="default", help="a named starting config of the algorithm (ppo: default, brax)")
        s.add_argument("--set", nargs="*", action="extend", default=[], metavar="KEY=VALUE", help="config overrides")
        if command == "sweep":
            s.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2",
                           help="a field and its values (separate values with ';' when they hold commas, "
                                "e.g. hidden=64,64;256,256); repeat for a product. Traced fields vary inside one "
                                "program; static fields (and several algorithms, `rlx sweep ppo,dqn`) make one "
                                "program per group, each run as its own process")  # fmt: skip
            s.add_argument("--launcher", default="local", choices=LAUNCHERS,
                           help="how groups of a static sweep run: local (one after another), slurm (submitit) or ray")
            s.add_argument("--launcher-kwargs", nargs="*", default=[], metavar="KEY=VALUE",
                           help="for slurm: submitit executor parameters (timeout_min=60 slurm_partition=gpu "
                                "gpus_per_node=1); for ray: task options (num_gpus=1 num_cpus=4)")  # fmt: skip
        s.add_argument("--out", help="output directory (default: runs/<algo>-<env>-<time>)")
        s.add_argument("--resume", metavar="DIR", help="continue the run in DIR from its last checkpoint")
        s.add_argument("--devices", default="auto", type=_devices_arg,
                       help="devices to spread the population over (default: the most that divide it); may differ on --resume")
        s.add_argument("--debug", action="store_true", help="show the traceback of an error (or set RLX_DEBUG=1)")
        s.add_argument("--chunks", type=_positive_int, default=20, help="jitted chunks between which metrics, checkpoints and progress happen")
        s.add_argument("--population-mode", default="auto", choices=("auto", "vmap", "map"), help="how members share a device")
        s.add_argument("--map-batch-size", type=_positive_int, help="with map: vmap this many members at a time (memory grows with it; see docs/runbook.md)")
        s.add_argument("--eval-episodes", type=_nonnegative_int, default=16, help="deterministic evaluation episodes per member at the end (0: skip)")
        s.add_argument("--eval-every", type=_nonnegative_int, default=0, help="evaluate every N chunks into the eval_return column (0: only at the end); use it for long episodes, where few training episodes finish")
        s.add_argument("--no-progress", action="store_true", help="no progress bar")
        s.add_argument("--log", metavar="TRACKERS", default="", help=_LOG_HELP)
        s.add_argument("--compile-cache", nargs="?", const="", metavar="DIR",
                       help="keep compiled programs in DIR (default $RLX_COMPILE_CACHE or ~/.cache/rlx/xla), "
                            "so a rerun of the same config skips most of the compile (rlx.use_compile_cache)")  # fmt: skip
        _distributed_flags(s)
        if config_cls is not None:
            from rlx.config import describe

            group = s.add_argument_group(f"{config_cls.__name__} fields (static: shape the program; traced: can vary in a population)")
            for name, default, kind, doc in describe(config_cls):
                group.add_argument(_field_flag(name), dest=f"cfg__{name}", metavar=type(default).__name__.upper(),
                                   help=f"[{kind}] {doc} (default: {default})")  # fmt: skip
    sub.add_parser("list", help="list algorithms and environments")
    r = sub.add_parser("reproduce", help="reproduce a paper's figure (`rlx reproduce --list` shows them all)")
    r.add_argument("name", nargs="?", help="the experiment's name (see --list)")
    r.add_argument("--list", action="store_true", help="every experiment: paper, figure, expected number, budget per scale")
    r.add_argument("--scale", default="cpu", help="smoke (seconds, CI), cpu (minutes on a laptop), mid where an experiment "
                   "has it (a claim test within about an hour on 2 cores) or paper (the published budget)")  # fmt: skip
    r.add_argument("--out", help="output directory (default: results/<name>)")
    r.add_argument("--gallery", nargs="?", const="docs/gallery.md", metavar="PATH",
                   help="write the gallery section (figures, the paper's numbers, ours, gaps) from results/ to PATH")  # fmt: skip
    e = sub.add_parser("eval", help="evaluate a run's members at its newest checkpoint (rlx.runs)")
    e.add_argument("run_dir", metavar="RUN_DIR", help="a run directory (rlx train --out)")
    e.add_argument("--episodes", type=_positive_int, default=16, help="deterministic episodes per member (default: %(default)s)")
    e.add_argument("--member", type=_nonnegative_int, help="only this member (default: all)")
    e.add_argument("--seed", type=_nonnegative_int, default=0, help="0: the episodes of the run's final evaluation")
    v = sub.add_parser("record", help="record episodes of a run's member as a GIF or MP4 (rlx.runs)")
    v.add_argument("run_dir", metavar="RUN_DIR", help="a run directory (rlx train --out)")
    v.add_argument("--out", required=True, metavar="PATH", help="the file to write: .gif, or .mp4 with ffmpeg")
    v.add_argument("--member", type=_nonnegative_int, default=0, help="the member to record (default: %(default)s)")
    v.add_argument("--episodes", type=_positive_int, default=1, help="episodes, one after another (default: %(default)s)")
    v.add_argument("--seed", type=_nonnegative_int, default=0)
    c = sub.add_parser("compare", help="compare runs: members grouped by swept values, IQM and bootstrap CIs, plots (rlx.compare)")
    c.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="run directories (rlx train --out)")
    c.add_argument("--by", metavar="KEY[,KEY]", help="group members by these fields (default: every swept field but seed)")
    c.add_argument("--out", metavar="DIR", help="where compare.csv/.json and the plots go (default: runs/compare-<time>)")
    return p


def _distributed_flags(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("multi-process runs (default: single process, or detected from SLURM / a TPU pod)")
    g.add_argument("--coordinator", metavar="HOST:PORT", help="address of process 0 (env RLX_COORDINATOR)")
    g.add_argument("--num-processes", type=_positive_int, help="number of processes (env RLX_NUM_PROCESSES)")
    g.add_argument("--process-id", type=_nonnegative_int, help="this process's index, 0..N-1 (env RLX_PROCESS_ID)")
    g.add_argument("--init-timeout", type=float, help="seconds to wait for every process to join (env RLX_INIT_TIMEOUT, default 120)")


def _initialize_distributed(argv: list[str]) -> None:
    """Join a multi-process run when asked to, before anything starts jax's devices."""
    pre = _Parser(add_help=False)
    _distributed_flags(pre)
    known, _ = pre.parse_known_args(argv)
    from rlx import distributed

    try:
        distributed.initialize(known.coordinator, known.num_processes, known.process_id, timeout_s=known.init_timeout)
    except distributed.DistributedSetupError as e:
        raise CLIError(str(e)) from None


def _kv(items: list[str], what: str) -> dict[str, str]:
    out = {}
    for item in items:
        if "=" not in item:
            raise CLIError(f"{what} {item!r} must look like KEY=VALUE")
        k, v = item.split("=", 1)
        out[k.strip()] = v.strip()
    return out


def _env_kwargs(raw: dict[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in raw.items():
        for cast in (int, float):
            try:
                out[k] = cast(v)
                break
            except ValueError:
                continue
        else:
            out[k] = {"true": True, "false": False}.get(v.lower(), v)
    return out


def _per_member(values, limit: int = 16) -> str:
    """Every member's value for small populations; a summary for large ones (the full list
    is in summary.json)."""
    import numpy as np

    v = np.asarray(values, float)
    if v.size <= limit:
        return str(np.round(v, 1).tolist())
    with np.errstate(all="ignore"):
        return (f"mean {np.nanmean(v):.1f} ± {np.nanstd(v):.1f}, min {np.nanmin(v):.1f}, median {np.nanmedian(v):.1f}, "
                f"max {np.nanmax(v):.1f} over {v.size} members (all in summary.json)")


def main(argv: list[str] | None = None) -> int:
    """Run a command; every expected failure is one line on stderr and a non-zero code
    (2 for a bad command line, 130 for Ctrl-C). `--debug` or RLX_DEBUG=1 shows tracebacks."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv or os.environ.get("RLX_DEBUG", "") not in ("", "0")
    _RUN.update(dir=None, argv=argv)
    if not debug:  # libraries' own error logs (orbax's background threads) would repeat our one line
        import logging

        logging.getLogger("absl").setLevel(logging.CRITICAL)
    try:
        return _main(argv)
    except BrokenPipeError:  # `rlx list | head`: the reader left; say nothing
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except KeyboardInterrupt:
        if debug:
            raise
        return _fail(f"interrupted{_resume_hint('everything up to its last checkpoint is kept')}", 130)
    except Exception as e:
        if debug:
            raise
        return _fail(*_describe(e))


_RUN: dict[str, Any] = {"dir": None}  # the run directory in flight, for resume hints


def _resume_hint(kept: str) -> str:
    d = _RUN["dir"]
    return f"; {kept} in {d}: resume with `rlx train --resume {d}`" if d else ""


def _fail(message: str, code: int = 1) -> int:
    import threading

    print(f"error: {' '.join(str(message).split())}", file=sys.stderr)
    # A failed save leaves library threads (orbax's) that fail again as the process exits;
    # their tracebacks would bury the one line above.
    threading.excepthook = lambda args: None
    sys.unraisablehook = lambda unraisable: None
    return code


def _describe(e: BaseException) -> tuple[str, int]:
    """(one line, exit code) for an exception that reached the command line."""
    import errno

    from rlx.errors import Interrupted, RunError

    text = str(e).strip() or e.__class__.__name__
    if isinstance(e, (CLIError, LauncherError)):
        return text, 2
    if isinstance(e, Interrupted):
        d = _RUN["dir"]
        return (f"interrupted at update {e.updates}; resume with `rlx train --resume {d}`" if d else text), 130
    if isinstance(e, OSError) and e.errno == errno.ENOSPC or "No space left on device" in text:
        where = f" writing {e.filename}" if getattr(e, "filename", None) else ""
        return f"disk full{where}: free some space{_resume_hint('nothing before the last checkpoint is lost')}", 1
    if isinstance(e, (RunError, ValueError, TypeError, OSError)):
        return text.splitlines()[0], 1
    if "RESOURCE_EXHAUSTED" in text or isinstance(e, MemoryError):
        return ("out of memory: lower num_envs, the buffer or batch sizes, or the number of members "
                f"(--seeds, --map-batch-size){_resume_hint('the last checkpoint is kept')}"), 1  # fmt: skip
    first = text.splitlines()[0][:300]
    return f"{e.__class__.__name__}: {first} (unexpected: rerun with --debug for the traceback)", 1


def _main(argv: list[str]) -> int:
    _set_platform_flags()
    pre = _Parser(add_help=False)
    pre.add_argument("--compile-cache", nargs="?", const="")
    known, _ = pre.parse_known_args(argv)
    if known.compile_cache is not None:  # before anything compiles
        import rlx

        rlx.use_compile_cache(known.compile_cache or None)

    trainer = _trainer(argv)
    if trainer is not None:  # a family with a driver of its own parses the rest itself
        return trainer(argv[2:]) or 0

    # Pick the algorithm (from the args or a resumed run) so its config fields become flags.
    config_cls = None
    resume_spec = None
    several = False
    if argv and argv[0] in ("train", "sweep"):
        algo = next((a for a in argv[1:2] if not a.startswith("-")), None)
        if "--resume" in argv:
            from rlx.runfiles import read_json

            rdir = argv[argv.index("--resume") + 1] if argv.index("--resume") + 1 < len(argv) else ""
            path = os.path.join(rdir, "config.json")
            if not os.path.exists(path):
                raise CLIError(f"--resume {rdir!r}: no config.json there, so it holds no rlx run.")
            resume_spec = read_json(path, "config.json")
            if not isinstance(resume_spec, dict) or "algo" not in resume_spec:
                raise CLIError(f"{path} is corrupt (no 'algo' entry); it cannot be resumed.")
            if algo not in (None, resume_spec["algo"]):
                raise CLIError(f"--resume {rdir}: these flags change the stored run: algorithm {algo} "
                               f"(stored: {resume_spec['algo']}). Resume without it, or start a new run.")  # fmt: skip
            algo = resume_spec["algo"]
        several = bool(algo and "," in algo and argv[0] == "sweep")
        if algo and not several:
            _, config_cls, _ = _algorithm(algo)
    if several:  # `rlx sweep ppo,dqn`: field flags are checked per algorithm, in each group
        args, _ = _parser(None).parse_known_args(argv)
    else:
        args = _parser(config_cls).parse_args(argv)
    if args.command == "list":
        return _list()
    if args.command == "reproduce":
        return _reproduce(args)
    if args.command in ("eval", "record"):
        from rlx import runs

        return runs.eval_command(args) if args.command == "eval" else runs.record_command(args)
    if args.command == "compare":
        from rlx.compare import compare_command

        return compare_command(args)
    if resume_spec is not None:
        _check_resume_flags(argv, config_cls, resume_spec, args.resume)
        args.algo = resume_spec["algo"]
    if not args.algo:
        raise CLIError(f"name an algorithm: {_agent_names()}")
    if args.command == "sweep" and resume_spec is None:
        groups = _static_groups(args, argv)
        if groups is not None:  # several programs: one process per group, this one only launches
            return _run_groups(args, groups)
    _initialize_distributed(argv)
    return _train(args, resume_spec)


# Flags that may differ on --resume: they change where and how a run is shown, not its results.
RESUME_FREE = {"command", "resume", "devices", "no_progress", "log", "compile_cache", "debug", "coordinator",
               "num_processes", "process_id", "init_timeout"}  # fmt: skip


def _given_flags(argv: list[str], config_cls: Any) -> dict[str, Any]:
    """The options written on the command line (not defaults), as {dest: value}."""
    unset = object()
    p = _parser(config_cls)
    for sub in p.commands.values():
        for action in sub._actions:
            if action.dest != "help":  # list-valued flags collect into their default: None there
                many = isinstance(action, (argparse._AppendAction, argparse._ExtendAction))
                sub.set_defaults(**{action.dest: None if many else unset})
    args = p.parse_args(argv)
    return {k: v for k, v in vars(args).items() if v is not unset and v is not None}


def _check_resume_flags(argv: list[str], config_cls: Any, spec: dict, rdir: str) -> None:
    """Refuse `--resume DIR` with flags that would change the stored run, naming them."""
    from rlx import config as config_lib

    given = _given_flags(argv, config_cls)
    changed = []
    stored_cfg = config_lib.from_dict(config_cls, spec["config"])
    if given.get("algo") not in (None, spec["algo"]):
        changed.append(f"algorithm {given['algo']} (stored: {spec['algo']})")
    if "out" in given:
        changed.append("--out (a resumed run stays in its directory)")
    simple = {"env": "env", "seeds": "seeds", "chunks": "chunks", "population_mode": "population_mode",
              "map_batch_size": "map_batch_size", "eval_episodes": "eval_episodes", "eval_every": "eval_every",
              "preset": "preset", "grid": "grid"}  # fmt: skip
    for dest, key in simple.items():
        if dest not in given:
            continue
        new = given[dest]
        if dest == "seeds":
            new = list(range(new))
        elif dest == "grid":
            new = {k: v for k, v in _grid_items(new).items()}
            old = {k: [str(x) for x in v] for k, v in spec.get("grid", {}).items()}
            new = {k: [str(config_lib.apply_overrides(stored_cfg, {k: x}).__getattribute__(k)) for x in v]
                   for k, v in new.items()}  # fmt: skip
            if new != old:
                changed.append("--grid")
            continue
        if key not in spec and dest in ("preset", "eval_episodes", "eval_every"):
            continue  # a run stored before these were recorded
        if new != spec.get(key):
            changed.append(f"--{dest.replace('_', '-')} {given[dest]} (stored: {spec.get(key)})")
    if "env_kwargs" in given and _env_kwargs(_kv(given["env_kwargs"], "--env-kwargs")) != spec.get("env_kwargs", {}):
        changed.append(f"--env-kwargs (stored: {spec.get('env_kwargs')})")
    overrides = {k[5:]: v for k, v in given.items() if k.startswith("cfg__")}
    overrides.update(_kv(given.get("set", []), "--set"))
    if overrides:
        new_cfg = config_lib.apply_overrides(stored_cfg, overrides)
        for key in overrides:
            key = key.replace("-", "_")
            if getattr(new_cfg, key) != getattr(stored_cfg, key):
                changed.append(f"{key}={getattr(new_cfg, key)} (stored: {getattr(stored_cfg, key)})")
    unknown = set(given) - RESUME_FREE - set(simple) - {"algo", "out", "env_kwargs", "set"} - {
        k for k in given if k.startswith("cfg__")}
    changed += [f"--{k.replace('_', '-')}" for k in sorted(unknown)]
    if changed:
        raise CLIError(f"--resume {rdir}: these flags change the stored run: {'; '.join(changed)}. "
                       "Resume without them, or start a new run with another --out.")  # fmt: skip


def _list() -> int:
    from rlx import envs, registry

    print("algorithms (rlx train NAME; rlx train NAME --help for its fields):")
    for name, entry in registry.entries().items():
        presets = f" [presets: {', '.join(entry.presets)}]" if len(entry.presets) > 1 else ""
        print(f"  {name:<10} {entry.summary}{presets}")
        if entry.kind != "agent":
            print(f"  {'':<10} run: {entry.command}")
    print("environments:")
    for name in envs.names():
        print("  " + name)
    return 0


def _config(args: argparse.Namespace, algo: str) -> Any:
    """The config of `algo` from --preset, field flags and --set (validated; no jax arrays)."""
    from rlx import config as config_lib

    module, config_cls, entry = _algorithm(algo)
    if args.preset not in entry.presets:
        raise CLIError(f"--preset {args.preset!r} is invalid for {algo}: accepted values are {', '.join(entry.presets)}.")
    cfg = entry.make_config(args.preset)
    field_values = {k[5:]: v for k, v in vars(args).items() if k.startswith("cfg__") and v is not None}
    return config_lib.apply_overrides(cfg, {**field_values, **_kv(args.set, "--set")})


def _grid_items(items: list[str]) -> dict[str, list[str]]:
    """`--grid KEY=V1,V2` items as {field: [raw values]}; ';' separates values that hold commas."""
    grid: dict[str, list[str]] = {}
    for item in items:
        key, values = _kv([item], "--grid").popitem()
        raw = [v.strip() for v in values.split(";" if ";" in values else ",")]
        if not all(raw):
            raise CLIError(f"--grid {item!r} has an empty value; write KEY=V1,V2 (or V1;V2).")
        grid[key.replace("-", "_")] = raw
    return grid


# ---------------------------------------------------------------------------------
# Static-config sweeps: one compiled program (and one process) per group
# ---------------------------------------------------------------------------------


def _static_groups(args: argparse.Namespace, argv: list[str]) -> list[dict] | None:
    """Split a sweep by its static part: every algorithm x every combination of static
    grid values is a group with its own argv. None when one program serves the whole sweep.

    Everything is checked here, before any group starts, without touching a device.
    """
    import dataclasses
    import itertools

    from rlx import config as config_lib
    from rlx import envs

    algos = [a.strip() for a in args.algo.split(",") if a.strip()]
    for a in algos:
        _algorithm(a)  # unknown names fail here, with close matches
    if len(set(algos)) != len(algos):
        raise CLIError(f"algorithm list {args.algo!r} names an algorithm twice.")
    grid = _grid_items(args.grid)
    static_keys = set()
    for a in algos:
        cfg_cls = _algorithm(a)[1]
        fields = {f.name: f for f in dataclasses.fields(cfg_cls)}
        for key in grid:
            if key not in fields:
                config_lib.apply_overrides(cfg_cls(), {key: None})  # raises with close matches
            if config_lib.is_static(fields[key]):
                static_keys.add(key)
    if len(algos) == 1 and not static_keys:
        return None
    if not args.env:
        raise CLIError("--env is required, e.g. --env gymnax/CartPole-v1 (see `rlx list`)")
    envs.check_name(args.env)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out = args.out or os.path.join("runs", f"sweep-{'-'.join(algos)}-{args.env.replace('/', '-')}-{stamp}")
    static_grid = {k: v for k, v in grid.items() if k in static_keys}
    base = _strip_group_args(argv, static_keys)
    groups = []
    for algo in algos:
        for combo in itertools.product(*static_grid.values()):
            static = dict(zip(static_grid, combo))
            label = "_".join([algo] + [f"{k}={v}" for k, v in static.items()])
            label = "".join(c if c.isalnum() or c in "=._-" else "-" for c in label)
            group_argv = ["sweep", algo] + base + ["--out", os.path.join(out, label)]
            group_argv += ["--set"] + [f"{k}={v}" for k, v in static.items()] if static else []
            # Check the group's flags and config now: a typo fails before anything runs.
            _, cfg_cls, _ = _algorithm(algo)
            gargs = _parser(cfg_cls).parse_args(group_argv)
            cfg = _config(gargs, algo)
            for key, values in _grid_items(gargs.grid).items():
                for v in values:
                    config_lib.apply_overrides(cfg, {key: v})
            groups.append(dict(label=label, algo=algo, static=static, argv=group_argv, dir=os.path.join(out, label)))
    return groups


def _strip_group_args(argv: list[str], static_keys: set[str]) -> list[str]:
    """argv after `sweep ALGO`, without --out, the launcher flags and the static grid items."""
    out, i, rest = [], 0, argv[2:] if len(argv) > 1 and not argv[1].startswith("-") else argv[1:]
    takes_list = ("--launcher-kwargs",)
    while i < len(rest):
        a = rest[i]
        if a in ("--out", "--launcher"):
            i += 2
            continue
        if a.startswith(("--out=", "--launcher=")):
            i += 1
            continue
        if a in takes_list:
            i += 1
            while i < len(rest) and not rest[i].startswith("--"):
                i += 1
            continue
        if a == "--grid" and i + 1 < len(rest):
            key = rest[i + 1].split("=", 1)[0].strip().replace("-", "_")
            if key not in static_keys:
                out += [a, rest[i + 1]]
            i += 2
            continue
        out.append(a)
        i += 1
    return out


def _run_groups(args: argparse.Namespace, groups: list[dict]) -> int:
    """Run every group as its own `rlx sweep` process, then merge their metrics."""
    out = os.path.dirname(groups[0]["dir"])
    os.makedirs(out, exist_ok=True)
    launcher_kwargs = _env_kwargs(_kv(args.launcher_kwargs, "--launcher-kwargs"))
    print(f"rlx: {len(groups)} groups (one compiled program each) via the {args.launcher} launcher -> {out}")
    for g in groups:
        print(f"  {g['label']}: rlx {' '.join(g['argv'])}")
    commands = [[sys.executable, "-m", "rlx.cli"] + g["argv"] for g in groups]
    codes = LAUNCHERS[args.launcher](commands, out, launcher_kwargs)
    from rlx.logging import write_json

    for g, code in zip(groups, codes):
        g["returncode"] = code
    write_json(os.path.join(out, "sweep.json"), {"groups": groups})
    merged = _merge_group_metrics(groups, os.path.join(out, "metrics.csv"))
    failed = [g["label"] for g in groups if g["returncode"] != 0]
    print(f"rlx: {len(groups) - len(failed)} of {len(groups)} groups finished; merged {merged} rows into {out}/metrics.csv")
    if failed:
        print(f"rlx: failed groups: {', '.join(failed)} (see their directories)", file=sys.stderr)
        return 1
    return 0


def _merge_group_metrics(groups: list[dict], path: str) -> int:
    """One metrics.csv over all groups: `group`, `algo` and the static fields first."""
    import csv

    keys = ["group", "algo"] + list(dict.fromkeys(k for g in groups for k in g["static"]))
    rows, columns = [], list(keys)
    for g in groups:
        src = os.path.join(g["dir"], "metrics.csv")
        if g.get("returncode") != 0 or not os.path.exists(src):
            continue
        with open(src, newline="") as f:
            reader = csv.DictReader(f)
            columns += [c for c in reader.fieldnames or [] if c not in columns]
            for row in reader:
                rows.append({"group": g["label"], "algo": g["algo"], **{k: str(v) for k, v in g["static"].items()}, **row})
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=columns, restval="")
        w.writeheader()
        w.writerows(rows)
    return len(rows)


def _reproduce(args: argparse.Namespace) -> int:
    from rlx import experiments as ex

    found = ex.discover()
    if not found:  # an installed wheel carries no experiments/
        raise CLIError(f"no experiments under {os.path.join(ex.repo_root(), 'experiments')}: they live in rlx's "
                       "source tree; run rlx reproduce in a checkout, or set RLX_ROOT to one.")  # fmt: skip
    if args.list:
        print(ex.listing(found))
        return 0
    if args.gallery:
        path = ex.write_gallery(args.gallery, experiments=found)
        print(f"wrote the gallery of {len(found)} experiments to {path}")
        return 0
    if not args.name:
        raise CLIError("name an experiment (see `rlx reproduce --list`), or pass --list or --gallery")
    try:
        exp = ex.find(args.name, found)
        if args.scale not in exp.scales:
            raise ValueError(f"--scale {args.scale!r} is invalid for {exp.name}: accepted values are {', '.join(exp.scales)}.")
        out = args.out or os.path.join("results", exp.name)
        print(f"rlx: reproducing {exp.name} ({exp.path}) at scale {args.scale} -> {out}")
        record = ex.run_experiment(exp, args.scale, out)
    except ValueError as e:
        raise CLIError(str(e)) from None
    import json

    print(json.dumps(record["result"], indent=2, default=str))
    print(f"done in {record['seconds']:.1f} s; wrote {out}/{exp.name}.png, .csv and .json")
    return 0


def process_age_s() -> float | None:
    """Seconds since this process started (Linux: from /proc; None elsewhere), to time
    the interpreter's start and the imports before `main` runs."""
    try:
        with open("/proc/self/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        with open("/proc/stat") as f:
            boot = next(float(line.split()[1]) for line in f if line.startswith("btime"))
        return time.time() - (boot + float(fields[19]) / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError, StopIteration):
        return None


def _train(args: argparse.Namespace, spec: dict | None) -> int:
    # The start-up split (summary.json "timings"."startup"): where the time before the
    # first update goes.
    # Python's start, rlx's and the agent's imports, and parsing the command line:
    startup = {"python_imports_and_parsing_s": process_age_s()}
    from rlx import config as config_lib
    from rlx import envs

    module, config_cls, entry = _algorithm(args.algo)
    # -- everything below up to Runner.run only builds and validates: no compilation.
    if spec is not None:
        env_name, env_kwargs = spec["env"], spec["env_kwargs"]
        cfg = config_lib.from_dict(config_cls, spec["config"])
        seeds, grid = spec["seeds"], spec["grid"]
        out_dir = args.resume
        chunks, population_mode = spec["chunks"], spec["population_mode"]
        # The Runner gets the mode the run ran in (its resolved one): "auto" meant "map" on
        # CPU before it meant "vmap", and a resumed run keeps its program.
        runner_mode = spec.get("runner", {}).get("population_mode", population_mode)
        map_batch_size = spec.get("map_batch_size")
        preset = spec.get("preset", "default")
        eval_episodes, eval_every = spec.get("eval_episodes", args.eval_episodes), spec.get("eval_every", args.eval_every)
    else:
        if not args.env:
            raise CLIError("--env is required, e.g. --env gymnax/CartPole-v1 (see `rlx list`)")
        env_name, env_kwargs = args.env, _env_kwargs(_kv(args.env_kwargs, "--env-kwargs"))
        envs.check_name(env_name)
        cfg = _config(args, args.algo)
        seeds = list(range(args.seeds))
        grid = {}
        for key, values in _grid_items(getattr(args, "grid", []) or []).items():
            # Parsed and checked as the field would be: the error names the field.
            grid[key] = [getattr(config_lib.apply_overrides(cfg, {key: v}), key) for v in values]
        stamp = time.strftime("%Y%m%d-%H%M%S")
        out_dir = args.out or os.path.join("runs", f"{args.algo}-{env_name.replace('/', '-')}-{stamp}")
        chunks, population_mode, preset = args.chunks, args.population_mode, args.preset
        runner_mode = population_mode
        map_batch_size = args.map_batch_size
        eval_episodes, eval_every = args.eval_episodes, args.eval_every
        if not entry.plain_evaluation and (eval_every or _flag_given("--eval-episodes")):
            raise CLIError(f"{args.algo} is not evaluated by plain greedy episodes: {entry.evaluation_note}")
        if not entry.plain_evaluation:
            eval_episodes = 0
    if eval_every and not eval_episodes:
        raise CLIError("--eval-every needs --eval-episodes >= 1.")

    from rlx import population as pop_lib
    from rlx.distributed import is_main
    from rlx.tracking import Trackers
    from rlx.train import Runner

    trackers = Trackers(args.log)  # names and packages checked now; built once the run is checked
    t = time.perf_counter()
    env, env_params = envs.make(env_name, **env_kwargs)  # imports the env's suite
    startup["env_s"] = time.perf_counter() - t
    t = time.perf_counter()
    pop = pop_lib.make_population(cfg, seeds, grid)
    size = len(pop.members)
    devices = args.devices
    given = any(a == "--devices" or a.startswith("--devices=") for a in _RUN.get("argv", []))
    if spec is not None and not given and str(spec.get("devices", "auto")).isdigit():
        import jax

        stored = int(spec["devices"])  # the stored count, where this machine has it
        devices = str(stored) if stored <= len(jax.devices()) else "auto"
    n_dev = pop_lib.default_devices(size) if devices == "auto" else int(devices)
    pop_lib.check_devices(size, n_dev)
    agent = getattr(module, entry.builder)(env, cfg)
    num_updates = agent.num_updates(cfg)
    chunk_updates = max(1, -(-num_updates // chunks))
    run_spec = dict(algo=args.algo, env=env_name, env_kwargs=env_kwargs, seeds=seeds, grid=grid, chunks=chunks,
                    population_mode=population_mode, map_batch_size=map_batch_size, devices=devices,
                    preset=preset, eval_episodes=eval_episodes, eval_every=eval_every,
                    config=config_lib.to_dict(cfg))  # fmt: skip
    runner = Runner(
        agent, pop, env_params, out_dir, chunk_updates=chunk_updates, devices=n_dev,
        progress=not args.no_progress, population_mode=runner_mode, description=f"{args.algo} {env_name}",
        eval_env=env, eval_episodes=max(1, eval_episodes), eval_every=eval_every,
        map_batch_size=map_batch_size, run_spec=run_spec, trackers=trackers if trackers.names else None,
    )  # fmt: skip
    startup["agent_and_runner_s"] = time.perf_counter() - t
    if is_main():
        print(f"rlx: {args.algo} on {env_name}: {size} members x {num_updates} updates on {n_dev} device(s) -> {out_dir}")
    _RUN["dir"] = out_dir
    with trackers:
        result = runner.run(resume=spec is not None)
        result.timings["startup"] = _startup_line(startup, result.timings)
        from rlx import faults

        faults.point("run.finished")
        summary = _finish(args, agent, env, env_params, pop, result, out_dir, env_name, runner.mesh, eval_episodes)
        if summary is not None:
            from rlx.logging import write_json

            write_json(os.path.join(out_dir, "summary.json"), summary)
            last = num_updates - 1
            trackers.log_summary({k: summary[k] for k in ("final_train_return", "eval_return") if k in summary}, last)
            for name in ("learning_curve", "eval_curve"):
                if os.path.exists(os.path.join(out_dir, f"{name}.png")):
                    trackers.log_image(name, os.path.join(out_dir, f"{name}.png"), last)
    return 0


def _startup_line(startup: dict, timings: dict) -> dict:
    """Print where the time before the first update went; returns the split with `init_s`
    and `compile_s` (every chunk size's compile) added."""
    from rlx.distributed import is_main

    split = {**startup, "init_s": timings["init_s"], "compile_s": timings["compile_s"]}
    if is_main():
        known = {k: v for k, v in split.items() if v is not None}
        parts = ", ".join(f"{k[:-2].replace('_', ' ')} {v:.1f}s" for k, v in known.items())
        print(f"start-up {sum(known.values()):.1f}s: {parts}")
    return split


def _print_groups(members, swept, final, eval_return, pop) -> list[dict]:
    """The summary by swept value: one line per group of members with the same swept
    fields (mean and range over its seeds). Returns the groups for summary.json."""
    import numpy as np

    from rlx.compare import describe, group_members

    ev = None if eval_return is None else np.asarray(eval_return, float)
    if ev is not None and ev.ndim == 2:
        ev = _weighted(ev[:, None, :], pop)[:, 0]
    out = []
    print(f"by {', '.join(swept)} (mean over members [min, max]):")
    for label, idx in group_members(members, swept).items():
        t = describe(np.asarray(final)[idx], reps=0)
        e = describe(ev[idx], reps=0) if ev is not None else None
        line = f"  {label}: n={t['n']}, final training return {_span(t)}"
        if e is not None:
            line += f", evaluation return {_span(e)}"
        print(line)
        out.append({"group": label, "members": idx, "final_train_return": t, "eval_return": e})
    return out


def _span(d: dict) -> str:
    return "-" if not d["n"] else f"{d['mean']:.1f} [{d['min']:.1f}, {d['max']:.1f}]"


def _weighted(values, pop):
    """Vector returns `[M, U, d]` as each member's preference-weighted return `[M, U]`."""
    import numpy as np

    d = values.shape[-1]
    weights = np.asarray(getattr(pop.cfg, "weights", np.full(d, 1.0 / d)), float)
    return np.einsum("mud,md->mu", values, np.broadcast_to(weights, (values.shape[0], d)))


def _finish(args, agent, env, env_params, pop, result, out_dir, env_name, mesh, eval_episodes) -> dict | None:
    """Final evaluation, the learning-curve plot, and a printed summary (None on
    processes other than 0, which write nothing)."""
    import jax
    import numpy as np

    from rlx import population as pop_lib
    from rlx.distributed import is_main, to_host
    from rlx.evaluation import evaluate
    from rlx.logging import read_metrics
    from rlx.plotting import learning_curve

    summary: dict[str, Any] = {"timings": result.timings, "members": pop.members}
    if eval_episodes > 0:
        from rlx.train import EVAL_KEY_SEED

        params = agent.policy_params(result.state)
        eval_keys = jax.vmap(lambda k: jax.random.fold_in(k, EVAL_KEY_SEED))(pop.keys)

        @jax.jit
        def eval_all(params, cfg, keys):
            def one(p, c, k):
                return evaluate(agent, p, c, env, env_params, k, eval_episodes)["return"].mean(0)

            return jax.vmap(one)(params, cfg, keys)

        # Inputs placed like the training state, so the members' evaluation runs where they live.
        cfg, keys = pop_lib.shard((pop.cfg, eval_keys), mesh)
        summary["eval_return"] = to_host(eval_all(params, cfg, keys)).tolist()
    if not is_main():
        return None
    data = read_metrics(os.path.join(out_dir, "metrics.csv"))
    members = np.unique(data["member"]).astype(int)
    x = np.stack([data["env_steps"][data["member"] == m] for m in members])
    y = np.stack([data["episode_return"][data["member"] == m] for m in members])
    ylabel = "episode return"
    if y.ndim == 3:
        y, ylabel = _weighted(y, pop), "weighted episode return (weights · return)"
    swept = [k for k in pop.members[0] if k not in ("member", "seed")]
    groups = [", ".join(f"{k}={m[k]}" for k in swept) for m in pop.members] if swept else None
    learning_curve(os.path.join(out_dir, "learning_curve.png"), x, y, groups, title=f"{args.algo} on {env_name}",
                   ylabel=ylabel)  # fmt: skip
    if "eval_return" in data and np.isfinite(data["eval_return"]).any():
        ye = np.stack([data["eval_return"][data["member"] == m] for m in members])
        label = "evaluation return"
        if ye.ndim == 3:
            ye, label = _weighted(ye, pop), "weighted evaluation return (weights · return)"
        keep = np.isfinite(ye).all(0)
        learning_curve(os.path.join(out_dir, "eval_curve.png"), x[:, keep], ye[:, keep], groups,
                       title=f"{args.algo} on {env_name}: deterministic evaluation", ylabel=label)
    with np.errstate(all="ignore"):
        final = np.nanmean(y[:, -max(1, y.shape[1] // 20):], 1)
    summary["final_train_return"] = final.tolist()
    print(f"final training return per member (mean of the last 5% of updates): {_per_member(final)}")
    if "eval_return" in summary:
        print(f"deterministic evaluation return per member: {_per_member(summary['eval_return'])}")
    if swept:
        summary["groups"] = _print_groups(pop.members, swept, final, summary.get("eval_return"), pop)
    t = result.timings
    print(f"compile {t['compile_s']:.1f}s, run {t['run_s']:.1f}s; wrote {out_dir}/learning_curve.png")
    return summary


if __name__ == "__main__":
    sys.exit(main())
