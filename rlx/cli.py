"""`rlx train | sweep | reproduce | list` — the command line, generated from the config dataclasses.

    rlx train ppo --env gymnax/CartPole-v1 --seeds 8 --out runs/cartpole
    rlx train ppo --env gymnax/CartPole-v1 --lr 3e-4 --set clip_eps=0.1
    rlx sweep ppo --env gymnax/CartPole-v1 --seeds 4 --grid lr=1e-4,3e-4,1e-3
    rlx train --resume runs/cartpole
    rlx sweep ppo --env gymnax/CartPole-v1 --seeds 8 --coordinator 10.0.0.1:1234 --num-processes 2 --process-id 0

On CPU the command exposes one XLA device per core (set before jax is imported)
and spreads the population over them, so members run in parallel. With
`--coordinator/--num-processes/--process-id` (or RLX_* variables, or under SLURM /
a TPU pod) the same command spans processes: see `rlx.distributed`.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import time
from typing import Any

# algorithm name -> (module, config class, presets {name: factory or None for the default})
ALGORITHMS: dict[str, tuple[str, str, dict[str, str | None]]] = {
    "ppo": ("rlx.agents.ppo", "PPOConfig", {"default": None, "brax": "brax_config"}),
    "sac": ("rlx.agents.sac", "SACConfig", {"default": None, "brax": "brax_config"}),
    "dqn": ("rlx.agents.dqn", "DQNConfig", {"default": None}),
    "c51": ("rlx.agents.dqn", "C51Config", {"default": None}),
    "qrdqn": ("rlx.agents.dqn", "QRDQNConfig", {"default": None}),
}


LAUNCHERS = ("local", "slurm", "ray")


def _set_platform_flags(devices: str | None) -> None:
    """Before jax starts: one CPU device per core (at least `--devices` when it is a
    number) and the async-dispatch guard (`rlx.use_every_cpu_core`)."""
    import rlx

    count = rlx.usable_cpu_cores()
    if devices not in (None, "auto"):
        try:
            count = max(count, int(devices))
        except ValueError:
            pass
    rlx.use_every_cpu_core(count)


def _algorithm(name: str):
    if name not in ALGORITHMS:
        import difflib

        close = difflib.get_close_matches(name, list(ALGORITHMS), n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise SystemExit(f"error: unknown algorithm {name!r}.{hint} Accepted values: {', '.join(ALGORITHMS)}.")
    module_name, cls_name, presets = ALGORITHMS[name]
    module = importlib.import_module(module_name)
    return module, getattr(module, cls_name), presets


def _field_flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _parser(config_cls: Any | None = None) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="rlx", description="Train and sweep rlx agents.")
    sub = p.add_subparsers(dest="command", required=True)
    for command in ("train", "sweep"):
        s = sub.add_parser(command, help=f"{command} an agent (a population of seeds{' x a grid' * (command == 'sweep')})")
        s.add_argument("algo", nargs="?", help=f"one of: {', '.join(ALGORITHMS)}")
        s.add_argument("--env", help="environment name, e.g. gymnax/CartPole-v1 (see `rlx list`)")
        s.add_argument("--env-kwargs", nargs="*", default=[], metavar="KEY=VALUE", help="arguments for envs.make, e.g. backend=spring")
        s.add_argument("--seeds", type=int, default=8 if command == "train" else 4, help="seeds 0..N-1 (default: %(default)s)")
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
        s.add_argument("--devices", default="auto", help="devices to spread the population over (default: the most that divide it)")
        s.add_argument("--chunks", type=int, default=20, help="jitted chunks between which metrics, checkpoints and progress happen")
        s.add_argument("--population-mode", default="auto", choices=("auto", "vmap", "map"), help="how members share a device")
        s.add_argument("--map-batch-size", type=int, help="with map: vmap this many members at a time (memory grows with it; see docs/runbook.md)")
        s.add_argument("--eval-episodes", type=int, default=16, help="deterministic evaluation episodes per member at the end (0: skip)")
        s.add_argument("--eval-every", type=int, default=0, help="evaluate every N chunks into the eval_return column (0: only at the end); use it for long episodes, where few training episodes finish")
        s.add_argument("--no-progress", action="store_true", help="no progress bar")
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
    r.add_argument("--scale", default="cpu", help="smoke (seconds, CI), cpu (minutes on a laptop) or paper (the published budget)")
    r.add_argument("--out", help="output directory (default: results/<name>)")
    r.add_argument("--gallery", nargs="?", const="docs/gallery.md", metavar="PATH",
                   help="write the gallery section (figures, the paper's numbers, ours, gaps) from results/ to PATH")  # fmt: skip
    return p


def _distributed_flags(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("multi-process runs (default: single process, or detected from SLURM / a TPU pod)")
    g.add_argument("--coordinator", metavar="HOST:PORT", help="address of process 0 (env RLX_COORDINATOR)")
    g.add_argument("--num-processes", type=int, help="number of processes (env RLX_NUM_PROCESSES)")
    g.add_argument("--process-id", type=int, help="this process's index, 0..N-1 (env RLX_PROCESS_ID)")
    g.add_argument("--init-timeout", type=float, help="seconds to wait for every process to join (env RLX_INIT_TIMEOUT, default 120)")


def _initialize_distributed(argv: list[str]) -> None:
    """Join a multi-process run when asked to, before anything starts jax's devices."""
    pre = argparse.ArgumentParser(add_help=False)
    _distributed_flags(pre)
    known, _ = pre.parse_known_args(argv)
    from rlx import distributed

    try:
        distributed.initialize(known.coordinator, known.num_processes, known.process_id, timeout_s=known.init_timeout)
    except distributed.DistributedSetupError as e:
        raise SystemExit(f"error: {e}") from None


def _kv(items: list[str], what: str) -> dict[str, str]:
    out = {}
    for item in items:
        if "=" not in item:
            raise SystemExit(f"error: {what} {item!r} must look like KEY=VALUE")
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
    argv = list(sys.argv[1:] if argv is None else argv)
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--devices", default="auto")
    pre.add_argument("--compile-cache", nargs="?", const="")
    known, _ = pre.parse_known_args(argv)
    _set_platform_flags(known.devices)
    if known.compile_cache is not None:  # before anything compiles
        import rlx

        rlx.use_compile_cache(known.compile_cache or None)

    # Pick the algorithm (from the args or a resumed run) so its config fields become flags.
    config_cls = None
    resume_spec = None
    several = False
    if argv and argv[0] in ("train", "sweep"):
        algo = next((a for a in argv[1:2] if not a.startswith("-")), None)
        if "--resume" in argv:
            import json

            rdir = argv[argv.index("--resume") + 1] if argv.index("--resume") + 1 < len(argv) else ""
            path = os.path.join(rdir, "config.json")
            if not os.path.exists(path):
                raise SystemExit(f"error: --resume {rdir!r}: no config.json there, so it holds no rlx run.")
            with open(path) as f:
                resume_spec = json.load(f)
            algo = algo or resume_spec["algo"]
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
    if resume_spec is not None:
        args.algo = resume_spec["algo"]
    if not args.algo:
        raise SystemExit(f"error: name an algorithm: {', '.join(ALGORITHMS)}")
    if args.command == "sweep" and resume_spec is None:
        groups = _static_groups(args, argv)
        if groups is not None:  # several programs: one process per group, this one only launches
            return _run_groups(args, groups)
    _initialize_distributed(argv)
    return _train(args, resume_spec)


def _list() -> int:
    from rlx import envs

    print("algorithms:", ", ".join(ALGORITHMS))
    print("environments:")
    for name in envs.names():
        print("  " + name)
    return 0


def _config(args: argparse.Namespace, algo: str) -> Any:
    """The config of `algo` from --preset, field flags and --set (validated; no jax arrays)."""
    from rlx import config as config_lib

    module, config_cls, presets = _algorithm(algo)
    if args.preset not in presets:
        raise SystemExit(f"error: --preset {args.preset!r} is invalid for {algo}: accepted values are {', '.join(presets)}.")
    factory = presets[args.preset]
    cfg = getattr(module, factory)() if factory else config_cls()
    field_values = {k[5:]: v for k, v in vars(args).items() if k.startswith("cfg__") and v is not None}
    return config_lib.apply_overrides(cfg, {**field_values, **_kv(args.set, "--set")})


def _grid_items(items: list[str]) -> dict[str, list[str]]:
    """`--grid KEY=V1,V2` items as {field: [raw values]}; ';' separates values that hold commas."""
    grid: dict[str, list[str]] = {}
    for item in items:
        key, values = _kv([item], "--grid").popitem()
        raw = [v.strip() for v in values.split(";" if ";" in values else ",")]
        if not all(raw):
            raise SystemExit(f"error: --grid {item!r} has an empty value; write KEY=V1,V2 (or V1;V2).")
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
        raise SystemExit(f"error: algorithm list {args.algo!r} names an algorithm twice.")
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
        raise SystemExit("error: --env is required, e.g. --env gymnax/CartPole-v1 (see `rlx list`)")
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
    codes = LAUNCH[args.launcher](commands, out, launcher_kwargs)
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


def _launch_local(commands: list[list[str]], out: str, kwargs: dict) -> list[int]:
    """One group after another on this machine (each a fresh process: one compile each)."""
    import subprocess

    if kwargs:
        raise SystemExit(f"error: the local launcher takes no --launcher-kwargs (got {', '.join(kwargs)}).")
    return [subprocess.run(cmd).returncode for cmd in commands]


def _launch_slurm(commands: list[list[str]], out: str, kwargs: dict) -> list[int]:
    """Every group as a SLURM job through submitit; waits for all of them."""
    try:
        import submitit
    except ImportError:
        raise SystemExit("error: --launcher slurm needs submitit: pip install submitit") from None
    executor = submitit.AutoExecutor(folder=os.path.join(out, "submitit"))
    executor.update_parameters(**kwargs)
    jobs = [executor.submit(submitit.helpers.CommandFunction(cmd, cwd=os.getcwd())) for cmd in commands]
    print("rlx: submitted SLURM jobs " + ", ".join(str(j.job_id) for j in jobs))
    codes = []
    for job in jobs:
        try:
            job.result()
            codes.append(0)
        except Exception as e:  # a failed group must not lose the others' results
            print(f"rlx: job {job.job_id} failed: {e}", file=sys.stderr)
            codes.append(1)
    return codes


def _launch_ray(commands: list[list[str]], out: str, kwargs: dict) -> list[int]:
    """Every group as a Ray task (on the cluster at RAY_ADDRESS, or a local one)."""
    try:
        import ray
    except ImportError:
        raise SystemExit("error: --launcher ray needs ray: pip install 'ray[default]'") from None
    import subprocess

    ray.init(ignore_reinit_error=True)

    def run(cmd, cwd):
        return subprocess.run(cmd, cwd=cwd).returncode

    task = ray.remote(run).options(**kwargs)
    return list(ray.get([task.remote(cmd, os.getcwd()) for cmd in commands]))


LAUNCH = {"local": _launch_local, "slurm": _launch_slurm, "ray": _launch_ray}


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
    if args.list:
        print(ex.listing(found))
        return 0
    if args.gallery:
        path = ex.write_gallery(args.gallery, experiments=found)
        print(f"wrote the gallery of {len(found)} experiments to {path}")
        return 0
    if not args.name:
        raise SystemExit("error: name an experiment (see `rlx reproduce --list`), or pass --list or --gallery")
    try:
        exp = ex.find(args.name, found)
        if args.scale not in exp.scales:
            raise ValueError(f"--scale {args.scale!r} is invalid for {exp.name}: accepted values are {', '.join(exp.scales)}.")
        out = args.out or os.path.join("results", exp.name)
        print(f"rlx: reproducing {exp.name} ({exp.path}) at scale {args.scale} -> {out}")
        record = ex.run_experiment(exp, args.scale, out)
    except ValueError as e:
        raise SystemExit(f"error: {e}") from None
    import json

    print(json.dumps(record["result"], indent=2, default=str))
    print(f"done in {record['seconds']:.1f} s; wrote {out}/{exp.name}.png, .csv and .json")
    return 0


def _train(args: argparse.Namespace, spec: dict | None) -> int:
    from rlx import config as config_lib
    from rlx import envs

    module, config_cls, presets = _algorithm(args.algo)
    # -- everything below up to Runner.run only builds and validates: no compilation.
    if spec is not None:
        env_name, env_kwargs = spec["env"], spec["env_kwargs"]
        cfg = config_lib.from_dict(config_cls, spec["config"])
        seeds, grid = spec["seeds"], spec["grid"]
        out_dir = args.resume
        chunks, population_mode = spec["chunks"], spec["population_mode"]
        map_batch_size = spec.get("map_batch_size")
        devices = spec["devices"]
    else:
        if not args.env:
            raise SystemExit("error: --env is required, e.g. --env gymnax/CartPole-v1 (see `rlx list`)")
        env_name, env_kwargs = args.env, _env_kwargs(_kv(args.env_kwargs, "--env-kwargs"))
        envs.check_name(env_name)
        cfg = _config(args, args.algo)
        if args.seeds < 1:
            raise SystemExit(f"error: --seeds = {args.seeds} is invalid: it must be >= 1.")
        seeds = list(range(args.seeds))
        grid = {}
        for key, values in _grid_items(getattr(args, "grid", []) or []).items():
            default = getattr(cfg, key, None)
            grid[key] = [config_lib._parse_value(v, default) if default is not None else v for v in values]
        stamp = time.strftime("%Y%m%d-%H%M%S")
        out_dir = args.out or os.path.join("runs", f"{args.algo}-{env_name.replace('/', '-')}-{stamp}")
        chunks, population_mode, devices = args.chunks, args.population_mode, args.devices
        map_batch_size = args.map_batch_size
        if chunks < 1:
            raise SystemExit(f"error: --chunks = {chunks} is invalid: it must be >= 1.")

    from rlx import population as pop_lib
    from rlx.distributed import is_main
    from rlx.logging import versions, write_json
    from rlx.train import Runner

    env, env_params = envs.make(env_name, **env_kwargs)
    pop = pop_lib.make_population(cfg, seeds, grid)
    size = len(pop.members)
    n_dev = pop_lib.default_devices(size) if devices == "auto" else int(devices)
    pop_lib.check_devices(size, n_dev)
    agent = module.make_agent(env, cfg)
    num_updates = agent.num_updates(cfg)
    chunk_updates = max(1, -(-num_updates // chunks))
    main_process = is_main()  # only process 0 writes files when the run spans processes
    if spec is None and main_process:
        os.makedirs(out_dir, exist_ok=True)
        write_json(
            os.path.join(out_dir, "config.json"),
            dict(algo=args.algo, env=env_name, env_kwargs=env_kwargs, seeds=seeds, grid=grid, chunks=chunks,
                 population_mode=population_mode, map_batch_size=map_batch_size, devices=devices,
                 config=config_lib.to_dict(cfg)),
        )  # fmt: skip
    if main_process:
        write_json(os.path.join(out_dir, "versions.json"), versions())
        print(f"rlx: {args.algo} on {env_name}: {size} members x {num_updates} updates on {n_dev} device(s) -> {out_dir}")
    runner = Runner(
        agent, pop, env_params, out_dir, chunk_updates=chunk_updates, devices=n_dev,
        progress=not args.no_progress, population_mode=population_mode, description=f"{args.algo} {env_name}",
        eval_env=env, eval_episodes=max(1, args.eval_episodes), eval_every=args.eval_every,
        map_batch_size=map_batch_size,
    )  # fmt: skip
    result = runner.run(resume=spec is not None)
    summary = _finish(args, agent, env, env_params, pop, result, out_dir, env_name, runner.mesh)
    if summary is not None:
        write_json(os.path.join(out_dir, "summary.json"), summary)
    return 0


def _finish(args, agent, env, env_params, pop, result, out_dir, env_name, mesh) -> dict | None:
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
    if args.eval_episodes > 0:
        params = agent.policy_params(result.state)
        eval_keys = jax.vmap(lambda k: jax.random.fold_in(k, 10_007))(pop.keys)

        @jax.jit
        def eval_all(params, cfg, keys):
            def one(p, c, k):
                return evaluate(agent, p, c, env, env_params, k, args.eval_episodes)["return"].mean(0)

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
    swept = [k for k in pop.members[0] if k not in ("member", "seed")]
    groups = [", ".join(f"{k}={m[k]}" for k in swept) for m in pop.members] if swept else None
    learning_curve(os.path.join(out_dir, "learning_curve.png"), x, y, groups, title=f"{args.algo} on {env_name}")
    if "eval_return" in data and np.isfinite(data["eval_return"]).any():
        ye = np.stack([data["eval_return"][data["member"] == m] for m in members])
        keep = np.isfinite(ye).all(0)
        learning_curve(os.path.join(out_dir, "eval_curve.png"), x[:, keep], ye[:, keep], groups,
                       title=f"{args.algo} on {env_name}: deterministic evaluation", ylabel="evaluation return")
    with np.errstate(all="ignore"):
        final = np.nanmean(y[:, -max(1, y.shape[1] // 20):], 1)
    summary["final_train_return"] = final.tolist()
    print(f"final training return per member (mean of the last 5% of updates): {_per_member(final)}")
    if "eval_return" in summary:
        print(f"deterministic evaluation return per member: {_per_member(summary['eval_return'])}")
    t = result.timings
    print(f"compile {t['compile_s']:.1f}s, run {t['run_s']:.1f}s; wrote {out_dir}/learning_curve.png")
    return summary


if __name__ == "__main__":
    sys.exit(main())
