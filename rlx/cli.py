"""`rlx train | sweep | list` — the command line, generated from the config dataclasses.

    rlx train ppo --env gymnax/CartPole-v1 --seeds 8 --out runs/cartpole
    rlx train ppo --env gymnax/CartPole-v1 --lr 3e-4 --set clip_eps=0.1
    rlx sweep ppo --env gymnax/CartPole-v1 --seeds 4 --grid lr=1e-4,3e-4,1e-3
    rlx train --resume runs/cartpole

On CPU the command exposes one XLA device per core (set before jax is imported)
and spreads the population over them, so members run in parallel.
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


def _set_platform_flags(devices: str | None) -> None:
    """Before jax is imported: one CPU device per core and the async-dispatch guard."""
    flags = os.environ.get("XLA_FLAGS", "")
    if "xla_force_host_platform_device_count" not in flags:
        count = os.cpu_count() or 1
        if devices not in (None, "auto"):
            try:
                count = max(count, int(devices))
            except ValueError:
                pass
        os.environ["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count={count}".strip()
    # jax>=0.10 can hang forever on CPU populations with async dispatch (jax-ml/jax#25861).
    os.environ.setdefault("JAX_CPU_ENABLE_ASYNC_DISPATCH", "false")


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
        s.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="config overrides")
        if command == "sweep":
            s.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2", help="a traced field and its values; repeat for a product")
        s.add_argument("--out", help="output directory (default: runs/<algo>-<env>-<time>)")
        s.add_argument("--resume", metavar="DIR", help="continue the run in DIR from its last checkpoint")
        s.add_argument("--devices", default="auto", help="devices to spread the population over (default: the most that divide it)")
        s.add_argument("--chunks", type=int, default=20, help="jitted chunks between which metrics, checkpoints and progress happen")
        s.add_argument("--population-mode", default="auto", choices=("auto", "vmap", "map"), help="how members share a device")
        s.add_argument("--eval-episodes", type=int, default=16, help="deterministic evaluation episodes per member at the end (0: skip)")
        s.add_argument("--eval-every", type=int, default=0, help="evaluate every N chunks into the eval_return column (0: only at the end); use it for long episodes, where few training episodes finish")
        s.add_argument("--no-progress", action="store_true", help="no progress bar")
        if config_cls is not None:
            from rlx.config import describe

            group = s.add_argument_group(f"{config_cls.__name__} fields (static: shape the program; traced: can vary in a population)")
            for name, default, kind, doc in describe(config_cls):
                group.add_argument(_field_flag(name), dest=f"cfg__{name}", metavar=type(default).__name__.upper(),
                                   help=f"[{kind}] {doc} (default: {default})")  # fmt: skip
    sub.add_parser("list", help="list algorithms and environments")
    return p


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


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--devices", default="auto")
    known, _ = pre.parse_known_args(argv)
    _set_platform_flags(known.devices)

    # Pick the algorithm (from the args or a resumed run) so its config fields become flags.
    config_cls = None
    resume_spec = None
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
        if algo:
            _, config_cls, _ = _algorithm(algo)
    args = _parser(config_cls).parse_args(argv)
    if args.command == "list":
        return _list()
    if resume_spec is not None:
        args.algo = resume_spec["algo"]
    if not args.algo:
        raise SystemExit(f"error: name an algorithm: {', '.join(ALGORITHMS)}")
    return _train(args, resume_spec)


def _list() -> int:
    from rlx import envs

    print("algorithms:", ", ".join(ALGORITHMS))
    print("environments:")
    for name in envs.names():
        print("  " + name)
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
        devices = spec["devices"]
    else:
        if not args.env:
            raise SystemExit("error: --env is required, e.g. --env gymnax/CartPole-v1 (see `rlx list`)")
        env_name, env_kwargs = args.env, _env_kwargs(_kv(args.env_kwargs, "--env-kwargs"))
        envs.check_name(env_name)
        if args.preset not in presets:
            raise SystemExit(f"error: --preset {args.preset!r} is invalid for {args.algo}: accepted values are {', '.join(presets)}.")
        factory = presets[args.preset]
        cfg = getattr(module, factory)() if factory else config_cls()
        field_values = {k[5:]: v for k, v in vars(args).items() if k.startswith("cfg__") and v is not None}
        cfg = config_lib.apply_overrides(cfg, {**field_values, **_kv(args.set, "--set")})
        if args.seeds < 1:
            raise SystemExit(f"error: --seeds = {args.seeds} is invalid: it must be >= 1.")
        seeds = list(range(args.seeds))
        grid = {}
        for item in getattr(args, "grid", []) or []:
            key, values = _kv([item], "--grid").popitem()
            default = getattr(cfg, key.replace("-", "_"), None)
            parsed = [config_lib._parse_value(v, default) if default is not None else v for v in values.split(",")]
            grid[key.replace("-", "_")] = parsed
        stamp = time.strftime("%Y%m%d-%H%M%S")
        out_dir = args.out or os.path.join("runs", f"{args.algo}-{env_name.replace('/', '-')}-{stamp}")
        chunks, population_mode, devices = args.chunks, args.population_mode, args.devices
        if chunks < 1:
            raise SystemExit(f"error: --chunks = {chunks} is invalid: it must be >= 1.")

    from rlx import population as pop_lib
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
    if spec is None:
        os.makedirs(out_dir, exist_ok=True)
        write_json(
            os.path.join(out_dir, "config.json"),
            dict(algo=args.algo, env=env_name, env_kwargs=env_kwargs, seeds=seeds, grid=grid, chunks=chunks,
                 population_mode=population_mode, devices=devices, config=config_lib.to_dict(cfg)),
        )  # fmt: skip
    write_json(os.path.join(out_dir, "versions.json"), versions())
    print(f"rlx: {args.algo} on {env_name}: {size} members x {num_updates} updates on {n_dev} device(s) -> {out_dir}")
    runner = Runner(
        agent, pop, env_params, out_dir, chunk_updates=chunk_updates, devices=n_dev,
        progress=not args.no_progress, population_mode=population_mode, description=f"{args.algo} {env_name}",
        eval_env=env, eval_episodes=max(1, args.eval_episodes), eval_every=args.eval_every,
    )  # fmt: skip
    result = runner.run(resume=spec is not None)
    summary = _finish(args, agent, env, env_params, pop, result, out_dir, env_name)
    write_json(os.path.join(out_dir, "summary.json"), summary)
    return 0


def _finish(args, agent, env, env_params, pop, result, out_dir, env_name) -> dict:
    """Final evaluation, the learning-curve plot, and a printed summary."""
    import jax
    import numpy as np

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

        summary["eval_return"] = np.asarray(eval_all(params, pop.cfg, eval_keys)).tolist()
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
    print(f"final training return per member (mean of the last 5% of updates): {np.round(final, 1).tolist()}")
    if "eval_return" in summary:
        print(f"deterministic evaluation return per member: {np.round(summary['eval_return'], 1).tolist()}")
    t = result.timings
    print(f"compile {t['compile_s']:.1f}s, run {t['run_s']:.1f}s; wrote {out_dir}/learning_curve.png")
    return summary


if __name__ == "__main__":
    sys.exit(main())
