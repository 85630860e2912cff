"""A way back into a finished (or running) run directory.

    run = rlx.load("runs/cartpole")
    run.metrics["episode_return"]           # metrics.csv, column by column
    run.evaluate(episodes=16)["mean"]       # [P] deterministic return per member
    run.policy(member=0).act(obs, key)      # one member's jitted policy
    run.record("episode.gif", member=0)     # an episode of member 0, frame by frame

`load` rebuilds the agent, env and population from `config.json` (as `rlx train
--resume` does) and restores the newest checkpoint that verifies into a state laid out
for this process's devices, so a run written on another device count loads as well. It
never takes the run's lock: a run still in progress loads at its latest verified
checkpoint (load it again for a newer one).

Runs of the trainer families (C-MORL, the ES meta-trainer, GROOVE) give their
`metrics` and `config_json`; their policies live in their own files (see `Run.policy`).

`rlx eval RUN_DIR` and `rlx record RUN_DIR --out episode.gif` are the command-line forms.
"""

from __future__ import annotations

import functools
import json
import os
import tempfile
from typing import Any

import numpy as np

from rlx.errors import RunError, RunFileError

# Where the policies of trainer-kind runs (config.json "kind") are read from.
TRAINER_LOADERS = {
    "cmorl": "rlx.agents.morl.cmorl.load_archive(RUN_DIR/archive, like_params)",
    "es": "rlx.agents.meta.es.load_params(RUN_DIR/mean.npz) (or best.npz)",
    "groove": "rlx.checkpoint.read_state_arrays(RUN_DIR/checkpoints/<step>)",
}

# The gymnax envs `gymnax.visualize.Visualizer` draws (the branches of its init/update in gymnax 1.x).
GYMNAX_VISUALIZED = (
    "Acrobot-v1", "CartPole-v1", "Pendulum-v1", "MountainCar-v0", "MountainCarContinuous-v0", "Catch-bsuite",
    "Asterix-MinAtar", "Breakout-MinAtar", "Freeway-MinAtar", "Seaquest-MinAtar", "SpaceInvaders-MinAtar",
    "Pong-misc", "PointRobot-misc", "MetaMaze-misc", "FourRooms-misc",
)  # fmt: skip

VIDEO_FORMATS = (".gif", ".mp4")

# Frames of gymnax's 6 x 5 inch figure at this resolution: 384 x 320 pixels. Drawing time and
# file size grow with its square; at 64 dpi a CartPole frame takes about 0.1 s on one CPU core
# (a third of it gymnasium restarting pygame, as gymnax renders each frame with a new env).
RECORD_DPI = 64

# The env and agent of a config.json already loaded in this process, by the file's content:
# loading a run again (a live run, for its newer checkpoint) reuses the compiled programs.
_BUILT: dict[str, tuple[Any, Any, Any]] = {}


def load(run_dir: str) -> "Run":
    """The run in `run_dir`: a directory `rlx train` wrote (or a `Runner` given the same
    `run_spec`), or a trainer family's. Reads config.json and metrics.csv now; the
    checkpoint is restored on first use."""
    run_dir = os.fspath(run_dir)
    path = os.path.join(run_dir, "config.json")
    if not os.path.isdir(run_dir):
        raise RunFileError(f"{run_dir} is not a directory: pass the directory of a run (e.g. runs/<algo>-<env>-<time>).")
    if not os.path.exists(path):
        if os.path.exists(os.path.join(run_dir, "sweep.json")):
            raise RunFileError(f"{run_dir} is a sweep of several groups (sweep.json): load one group's directory inside it.")
        raise RunFileError(f"{path} is missing, so {run_dir} holds no rlx run: pass the directory `rlx train --out` "
                           "wrote (it holds config.json, metrics.csv and checkpoints/).")  # fmt: skip
    from rlx.runfiles import read_json

    spec = read_json(path, "config.json")
    if not isinstance(spec, dict) or not ("algo" in spec or "kind" in spec):
        raise RunFileError(f"{path} is corrupt or not an rlx run's (it names no 'algo' or 'kind'); "
                           "restore it from a copy, or pass another run directory.")  # fmt: skip
    return Run(run_dir, spec)


class Run:
    """A run directory, read back. See the module docstring."""

    def __init__(self, run_dir: str, config_json: dict):
        self.directory = run_dir
        self.config_json = config_json
        self.kind = config_json.get("kind", "agent")  # "agent": a Runner's population
        self.algorithm = config_json.get("algo", self.kind)
        self.env_name = config_json.get("env")
        self.metrics = read_metrics_so_far(os.path.join(run_dir, "metrics.csv"))
        runner = config_json.get("runner", {})
        self.members: list[dict] = runner.get("members") or _members_in(self.metrics)
        self._restored: tuple[Any, int] | None = None
        if self.kind == "agent":
            self._build()

    def __repr__(self) -> str:
        return f"Run({self.directory!r}: {self.algorithm} on {self.env_name}, {len(self.members)} members)"

    # -- what config.json describes ------------------------------------------------------------
    def _build(self) -> None:
        """The agent, env and population of an agent run, as `rlx train --resume` rebuilds them."""
        import jax

        from rlx import config as config_lib
        from rlx import envs, registry
        from rlx import population as pop_lib
        from rlx.hostloop import jsonable

        spec, path = self.config_json, os.path.join(self.directory, "config.json")
        missing = [k for k in ("env", "config", "seeds") if k not in spec]
        if missing:
            raise RunFileError(f"{path} lacks {', '.join(missing)}: it was not written by `rlx train` (a Runner "
                               "stores them when given run_spec); rebuild the agent and restore rlx.checkpoint yourself.")  # fmt: skip
        try:
            entry = registry.get(self.algorithm)
        except KeyError as e:
            raise RunError(f"{path}: {e.args[0]} Import the package that registers it before rlx.load.") from None
        module, config_cls, _ = entry.load()
        try:
            base = config_lib.from_dict(config_cls, spec["config"])
            self.population = pop_lib.make_population(base, spec["seeds"], spec.get("grid") or {})
        except (TypeError, ValueError) as e:
            raise RunFileError(f"{path} holds a config {self.algorithm} cannot use ({str(e).splitlines()[0]}); "
                               "was it written by another rlx version?") from None  # fmt: skip
        stored = spec.get("runner", {})
        rebuilt = {"population_config": config_lib.to_dict(self.population.cfg), "members": self.population.members}
        if any(key in stored and jsonable(value) != stored[key] for key, value in rebuilt.items()):
            raise RunFileError(f"{path}: its config, seeds and grid do not rebuild the stored population "
                               "(runner.population_config, runner.members); the file was edited or is corrupt.")  # fmt: skip
        key = json.dumps(spec, sort_keys=True, default=str)
        if key not in _BUILT:
            env, env_params = envs.make(self.env_name, **spec.get("env_kwargs", {}))
            _BUILT[key] = (env, env_params, getattr(module, entry.builder)(env, base))
            while len(_BUILT) > 8:
                _BUILT.pop(next(iter(_BUILT)))
        self.env, self.env_params, self.agent = _BUILT[key]
        self.population_config = self.population.cfg
        self.config = jax.tree.map(lambda x: x[0], self.population.cfg)  # member 0's
        self.entry = entry

    def _refuse(self, what: str) -> RunError:
        loader = TRAINER_LOADERS.get(self.kind, "its own module")
        return RunError(f"{self.directory} is a {self.kind} run, whose {what} rlx.load does not rebuild: "
                        f"read its policies with {loader}; Run.metrics and Run.config_json work here.")  # fmt: skip

    # -- the checkpoint --------------------------------------------------------------------------
    def _mesh(self):
        from rlx import population as pop_lib

        size = len(self.population.members)
        stored = str(self.config_json.get("devices", "auto"))
        import jax

        # The stored device count where this process has it (as a resume does), else the most that divide.
        n = int(stored) if stored.isdigit() and int(stored) <= len(jax.devices()) else pop_lib.default_devices(size)
        return pop_lib.make_mesh(n)

    def _restore(self) -> tuple[Any, int]:
        if self.kind != "agent":
            raise self._refuse("state")
        if self._restored is None:
            self._restored = self._restore_newest()
        return self._restored

    def _restore_newest(self) -> tuple[Any, int]:
        import jax

        from rlx.checkpoint import Checkpointer, update_count_check
        from rlx.population import shard
        from rlx.train import Runner

        ckpt_dir = os.path.join(self.directory, "checkpoints")
        if not os.path.isdir(ckpt_dir) or not any(n.isdigit() for n in os.listdir(ckpt_dir)):
            chunk = self.config_json.get("runner", {}).get("chunk_updates")
            when = f" after its first chunk of {chunk} update{'s' * (chunk != 1)}" if chunk else " after its first chunk"
            raise RunFileError(f"{ckpt_dir} holds no checkpoint yet: the run saves one{when}; wait for it "
                               "(Run.metrics has what it logged so far), or resume it with `rlx train --resume`.")  # fmt: skip
        mesh = self._mesh()
        runner_spec = self.config_json.get("runner", {})
        # A template of the state laid out for this process's devices: the run's own init, never run.
        runner = Runner(self.agent, self.population, self.env_params, None, devices=mesh.devices.size,
                        progress=False, population_mode=runner_spec.get("population_mode", "auto"),
                        map_batch_size=runner_spec.get("map_batch_size"))  # fmt: skip
        self.mesh = runner.mesh
        pop = self.population
        like = jax.eval_shape(runner._init_fn(), shard(pop.keys, self.mesh), shard(pop.cfg, self.mesh), self.env_params)
        ckpt = Checkpointer(ckpt_dir, writer=False)  # reads only: a live run's steps stay as they are
        try:
            state, _, step, _ = ckpt.restore_newest(like, update_count_check)
        finally:
            ckpt.close()
        return state, step

    @property
    def updates(self) -> int:
        """Updates done at the newest verified checkpoint (restores it on first use)."""
        return self._restore()[1]

    def state(self, member: int | None = None) -> Any:
        """The restored population state (leaves `[P, ...]`), or one member's (leaves `[...]`)."""
        import jax

        state = self._restore()[0]
        if member is None:
            return state
        index = self._member_index(member)
        return jax.tree.map(lambda x: x[index], state)

    def _member_index(self, member: int) -> int:
        size = len(self.members)
        if isinstance(member, bool) or not isinstance(member, (int, np.integer)) or not 0 <= member < size:
            raise RunError(f"member {member!r} is invalid for {self.directory}: it has members 0..{size - 1}.")
        return int(member)

    # -- acting and evaluating -----------------------------------------------------------------
    def policy(self, member: int = 0) -> "Policy":
        """Member `member`'s policy at the restored checkpoint."""
        import jax

        if self.kind != "agent":
            raise self._refuse("policy")
        index = self._member_index(member)
        params = jax.tree.map(lambda x: x[index], self.agent.policy_params(self.state()))
        cfg = jax.tree.map(lambda x: x[index], self.population.cfg)
        return Policy(self.agent, params, cfg, index)

    def evaluate(self, episodes: int = 16, member: int | None = None, seed: int = 0) -> dict[str, np.ndarray]:
        """Deterministic episodes of every member (or one), vmapped over members.

        Returns `mean` and `std` of the return (`[P]`, or `[P, d]` for vector rewards),
        `returns` `[P, episodes(, d)]` and `lengths` `[P, episodes]`; with `member`, without
        the `P` axis. Seed 0 draws the episodes of the run's own final evaluation
        (summary.json's eval_return, for the same number of episodes); others draw new ones."""
        import jax

        from rlx.distributed import to_host
        from rlx.population import shard
        from rlx.train import EVAL_KEY_SEED

        if self.kind != "agent":
            raise self._refuse("evaluation")
        _check_int("episodes", episodes, 1)
        _check_int("seed", seed, 0)
        index = None if member is None else self._member_index(member)
        params = self.agent.policy_params(self.state())
        keys = jax.vmap(lambda k: jax.random.fold_in(k, EVAL_KEY_SEED + int(seed)))(self.population.keys)
        cfg = self.population.cfg
        if member is None:  # placed like the state, as the run's own final evaluation is
            cfg, keys = shard((cfg, keys), self.mesh)
        else:
            params, cfg, keys = jax.tree.map(lambda x: x[index : index + 1], (params, cfg, keys))
        out = to_host(_evaluate_members(self.agent, self.env, int(episodes))(params, cfg, self.env_params, keys))
        out = {k: np.asarray(v) for k, v in out.items()}
        return out if member is None else {k: v[0] for k, v in out.items()}

    def record(self, path: str, member: int = 0, episodes: int = 1, seed: int = 0) -> dict[str, Any]:
        """Write `episodes` deterministic episodes of `member`, one frame per step, to a GIF
        (or an MP4, with ffmpeg). Episode `e` starts from `fold_in(key(seed), e)`.
        Returns `{"path", "frames", "lengths" [episodes], "returns" [episodes]}`."""
        path = os.fspath(path)
        extension = os.path.splitext(path)[1].lower()
        if extension not in VIDEO_FORMATS:
            raise RunError(f"{path}: a recording is written as .gif or .mp4 (ffmpeg), not {extension or 'no extension'}.")
        _check_int("episodes", episodes, 1)
        _check_int("seed", seed, 0)
        if self.kind != "agent":
            raise self._refuse("policy")
        draw = _renderer(self.env, self.env_name)
        writer = _writer(path, extension)
        policy = self.policy(member)
        states, rewards = rollout(policy, self.env, self.env_params, episode_keys(seed, int(episodes)))
        frames = draw(states, rewards, self.env_params, path, writer)
        return {"path": path, "frames": frames, "lengths": np.asarray([len(r) for r in rewards]),
                "returns": np.asarray([r.sum(0) for r in rewards])}  # fmt: skip

    def table(self):
        """metrics.csv as a pandas DataFrame (vector columns split as `name[i]`)."""
        try:
            import pandas as pd
        except ImportError:
            raise RunError("Run.table() needs pandas, which is not installed: pip install pandas "
                           "(Run.metrics holds the same columns as numpy arrays).") from None  # fmt: skip
        columns: dict[str, np.ndarray] = {}
        for name, values in self.metrics.items():
            if values.ndim == 2:
                columns.update({f"{name}[{i}]": values[:, i] for i in range(values.shape[1])})
            else:
                columns[name] = values
        return pd.DataFrame(columns)


class Policy:
    """One member's policy: `act(obs, key, deterministic=True) -> action` for one
    unbatched observation, jitted. `params` and `cfg` are that member's."""

    def __init__(self, agent: Any, params: Any, cfg: Any, member: int):
        import jax

        self.agent, self.params, self.cfg, self.member = agent, params, cfg, member
        self._act = _act_fn(agent)

    def act(self, obs: Any, key: Any, deterministic: bool = True) -> Any:
        return self._act(self.params, self.cfg, obs, key, bool(deterministic))

    def __repr__(self) -> str:
        return f"Policy(member {self.member})"


# ---------------------------------------------------------------------------------
# Pieces
# ---------------------------------------------------------------------------------


@functools.lru_cache(maxsize=32)
def _act_fn(agent: Any):
    """`agent.act` jitted (as `(params, cfg, obs, key, deterministic)`), once per agent."""
    import jax

    return jax.jit(lambda p, c, obs, key, deterministic: agent.act(p, obs, key, c, deterministic), static_argnums=4)


def read_metrics_so_far(path: str) -> dict[str, np.ndarray]:
    """`rlx.logging.read_metrics` of a file a live run may be appending to: a torn last
    row (no newline yet) is left out. `{}` before the first row. Each column is `[rows]`."""
    from rlx.logging import read_metrics

    if not os.path.exists(path):
        return {}
    with open(path, "rb") as f:
        data = f.read()
    if data.endswith(b"\n") or not data:
        return read_metrics(path)
    with tempfile.TemporaryDirectory() as tmp:
        whole = os.path.join(tmp, "metrics.csv")
        with open(whole, "wb") as f:
            f.write(data[: data.rfind(b"\n") + 1])
        return read_metrics(whole)


def _check_int(name: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise RunError(f"{name} = {value!r} is invalid: it must be an integer >= {minimum}.")


def _members_in(metrics: dict[str, np.ndarray]) -> list[dict]:
    """Members as metrics.csv labels them, for runs whose config.json does not list them."""
    if "member" not in metrics:
        return []
    seeds = metrics.get("seed", np.full(len(metrics["member"]), np.nan))
    pairs = dict(zip(metrics["member"].astype(int).tolist(), seeds.tolist()))
    return [{"member": m, "seed": int(s) if np.isfinite(s) else None} for m, s in sorted(pairs.items())]


@functools.lru_cache(maxsize=32)
def _evaluate_members(agent: Any, env: Any, episodes: int):
    """jit(vmap) of `rlx.evaluation.evaluate` over members: `{mean, std, returns, lengths}`."""
    import jax

    from rlx.evaluation import evaluate

    def one(params, cfg, env_params, key):
        out = evaluate(agent, params, cfg, env, env_params, key, episodes)
        # The mean as the run's final evaluation takes it, so seed 0 reproduces summary.json.
        return {"mean": out["return"].mean(0), "std": out["return"].std(0), "returns": out["return"],
                "lengths": out["length"]}  # fmt: skip

    return jax.jit(jax.vmap(one, (0, 0, None, 0)))


def episode_keys(seed: int, episodes: int):
    """`[episodes]` keys of `Run.record`: episode e starts from `fold_in(key(seed), e)`."""
    import jax
    import jax.numpy as jnp

    return jax.vmap(lambda e: jax.random.fold_in(jax.random.key(int(seed)), e))(jnp.arange(episodes))


def rollout(policy: Policy, env: Any, env_params: Any, keys: Any) -> tuple[list[list], list[np.ndarray]]:
    """Deterministic episodes from `keys` `[E]`, vmapped: per episode, the env state
    before each of its T steps and the T rewards `[T(, d)]` (after its last step the env
    has already reset, so that state is not there)."""
    import jax

    from rlx.evaluation import episode_limit

    run = _rollout_fn(policy.agent, env, episode_limit(env, env_params))
    states, rewards, alive = jax.device_get(run(policy.params, policy.cfg, env_params, keys))
    out_states, out_rewards = [], []
    for e, length in enumerate(np.sum(alive, 1).tolist()):  # alive up to and including the last step
        out_states.append([jax.tree.map(lambda x: x[e, t], states) for t in range(length)])
        out_rewards.append(np.asarray(rewards[e, :length]))
    return out_states, out_rewards


@functools.lru_cache(maxsize=32)
def _rollout_fn(agent: Any, env: Any, horizon: int):
    """jit(vmap over keys) of `horizon` deterministic steps: `(states, rewards, alive)` `[E, horizon, ...]`."""
    import jax
    import jax.numpy as jnp

    def episode(params, cfg, env_params, key):
        key, k_reset = jax.random.split(key)
        obs, state = env.reset(k_reset, env_params)

        def step(carry, _):
            obs, state, key, alive = carry
            key, k_act, k_env = jax.random.split(key, 3)
            action = agent.act(params, obs, k_act, cfg, True)
            next_obs, next_state, reward, term, trunc, _ = env.step(k_env, state, action, env_params)
            return (next_obs, next_state, key, alive & ~(term | trunc)), (state, reward, alive)

        _, (states, rewards, alive) = jax.lax.scan(step, (obs, state, key, jnp.bool_(True)), None, length=horizon)
        return states, rewards, alive

    return jax.jit(jax.vmap(episode, (None, None, None, 0)))


def _renderer(env: Any, env_name: str):
    """`draw(states per episode, rewards per episode, env_params, path, writer) -> frames`
    for envs that can be drawn; one line naming what renders otherwise."""
    env_id = env_name.split("/", 1)[1] if env_name.startswith("gymnax/") else None
    if env_id in GYMNAX_VISUALIZED and hasattr(env, "_env"):
        return lambda states, rewards, params, path, writer: _draw_gymnax(env._env, states, rewards, params, path, writer)
    shown = ", ".join(f"gymnax/{n}" for n in GYMNAX_VISUALIZED)
    raise RunError(f"{env_name} cannot be rendered: rlx records the envs gymnax.visualize draws ({shown}).")


def _writer(path: str, extension: str):
    """The matplotlib writer for the file's format (checked before anything runs)."""
    from matplotlib import animation

    if extension == ".mp4" and not animation.writers.is_available("ffmpeg"):
        raise RunError(f"writing {path} needs ffmpeg, which is not installed: record a .gif instead.")
    return animation.FFMpegWriter if extension == ".mp4" else animation.PillowWriter


def _draw_gymnax(gymnax_env: Any, states: list[list], rewards: list[np.ndarray], params: Any, path: str, writer: Any) -> int:
    """Every episode's states through gymnax's own Visualizer; the title shows each
    episode's return so far. Returns the number of frames written."""
    import contextlib
    import sys
    import warnings

    import matplotlib

    if "matplotlib.pyplot" not in sys.modules:  # no display needed, and no window opens
        matplotlib.use("Agg")
    # gymnasium draws classic control with pygame: off-screen, and without opening a sound device
    # (whose failures on a headless machine print C-library errors on every frame).
    os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
    os.environ.setdefault("SDL_AUDIODRIVER", "dummy")
    with warnings.catch_warnings():  # pygame's own import warns about pkg_resources
        warnings.simplefilter("ignore")
        with contextlib.suppress(ImportError):
            import pygame  # noqa: F401
    import matplotlib.pyplot as plt
    from gymnax.visualize import Visualizer

    sequence = [s for episode in states for s in episode]
    returns = np.concatenate([np.cumsum(r.astype(np.float64)) for r in rewards])
    vis = Visualizer(gymnax_env, params, sequence, returns)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    try:
        vis.init()
        # The Visualizer's own frames, one draw each (FuncAnimation.save draws every frame three times).
        with writer(fps=max(1, 1000 // vis.interval)).saving(vis.fig, path, RECORD_DPI) as movie:
            for t in range(len(sequence)):
                vis.update(t)
                movie.grab_frame()
    finally:
        plt.close(vis.fig)
    return len(sequence)


# ---------------------------------------------------------------------------------
# The command line: `rlx eval` and `rlx record`
# ---------------------------------------------------------------------------------


def eval_command(args: Any) -> int:
    """`rlx eval RUN_DIR`: every member's (or one's) mean ± std of the deterministic return."""
    run = load(args.run_dir)
    result = run.evaluate(args.episodes, args.member, args.seed)
    members = run.members if args.member is None else [run.members[args.member]]
    means = result["mean"] if args.member is None else result["mean"][None]
    stds = result["std"] if args.member is None else result["std"][None]
    print(f"rlx: {run.algorithm} on {run.env_name} at update {run.updates}: deterministic return over "
          f"{args.episodes} episodes (seed {args.seed})")  # fmt: skip
    for info, mean, std in zip(members, means, stds):
        label = ", ".join(f"{k}={v}" for k, v in info.items() if k != "member")
        print(f"  member {info['member']} ({label}): {_number(mean)} ± {_number(std)}")
    return 0


def _number(x: Any) -> str:
    x = np.asarray(x, float)
    return f"{float(x):.2f}" if x.ndim == 0 else "[" + ", ".join(f"{v:.2f}" for v in x) + "]"


def record_command(args: Any) -> int:
    """`rlx record RUN_DIR --out PATH`: episodes of one member as a GIF or MP4."""
    run = load(args.run_dir)
    out = run.record(args.out, member=args.member, episodes=args.episodes, seed=args.seed)
    returns = ", ".join(_number(r) for r in out["returns"])
    print(f"rlx: wrote {out['path']}: {out['frames']} frames, {args.episodes} episode(s) of member {args.member} "
          f"at update {run.updates} (return {returns})")  # fmt: skip
    return 0
