"""C-MORL throughput: a 6-policy stage-1 MO-PPO population and one stage-2 round.

    python benchmarks/bench_morl.py                 # DST, C-MORL's official PPO settings
    python benchmarks/bench_morl.py --updates 20    # a quicker run
    python benchmarks/bench_morl.py --env mo-halfcheetah --updates 4 --k 2 --select 2   # brax spring

Rows (env steps per second, excluding and including compile):
- stage 1, population: the 6 preferences of the 2-D lattice (step 0.2) as one program,
  sharded over the devices (`rlx.train.Runner`);
- stage 1, one policy at a time: the same 6 runs one after another, each its own call
  of one compiled program: what a process-per-policy implementation does at best
  (no process start, no IPC, no torch), measured in the same process;
- stage 2, one round: N = 5 selected policies x 2 objectives = 10 constrained MO-PPO
  runs of K = 20 updates, as one program (from `cmorl.run`'s timings);
- env alone: the env stepped with random actions and no learner, 8 envs on one device:
  the physics' share of the cost, a ceiling for any learner on this machine.

The PyTorch peer (MORL-Baselines' PGMORL, whose warm-up is the same 6-policy population
job) needs torch and MuJoCo, which rlx does not depend on: `bench_morl_torch.py` runs it in
its own environment, for `--env mo-halfcheetah`. Writes benchmarks/results/morl_<env>.json
and prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import rlx  # noqa: E402

rlx.use_every_cpu_core()  # one XLA device per usable core, before jax starts

import jax  # noqa: E402
import numpy as np  # noqa: E402

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--updates", type=int, default=40, help="stage-1 MO-PPO updates per policy")
    parser.add_argument("--k", type=int, default=20, help="constrained updates per (policy, objective)")
    parser.add_argument("--select", type=int, default=5, help="policies selected for the stage-2 round")
    parser.add_argument("--small", action="store_true", help="16 envs x 64 steps instead of the official 8 x 512")
    parser.add_argument("--env", choices=("dst", "mo-halfcheetah"), default="dst",
                        help="dst: Deep Sea Treasure (convex); mo-halfcheetah: brax halfcheetah-2d, spring backend")
    parser.add_argument("--population-mode", choices=("auto", "vmap", "map"), default="auto",
                        help="how members share a device (rlx.train.Runner); auto is vmap")
    args = parser.parse_args()

    from rlx import envs
    from rlx.agents.morl import cmorl, moppo
    from rlx.train import make_train

    if args.env == "dst":
        env, params = envs.make("rlx/deep-sea-treasure")
    else:
        from rlx.envs.mo.brax_mo import make_mo_brax

        env, params = make_mo_brax("halfcheetah-2d", backend="spring")
    if args.small:
        cfg = moppo.MOPPOConfig(weights=(0.5, 0.5), num_envs=16, num_steps=64, num_minibatches=4, update_epochs=4,
                                normalize_obs=True, reward_scale=(0.1, 1.0))  # fmt: skip
    else:
        cfg = moppo.cmorl_config(weights=(0.5, 0.5), reward_scale=(0.1, 1.0))
    batch = cfg.num_envs * cfg.num_steps
    ccfg = cmorl.CMORLConfig(init_divisions=5, init_updates=args.updates, rounds=1, num_select=args.select,
                             constrained_updates=args.k, population_mode=args.population_mode)  # fmt: skip
    rows = []

    # C-MORL: stage 1 as a population, then one stage-2 round.
    res = cmorl.run(env, params, cfg, ccfg, seed=0)
    t = res.timings
    s1_steps = res.history[0]["env_steps"]
    rows.append(_row("stage 1, population (6 policies, one program)", s1_steps, t["stage1_compile_s"], t["stage1_s"]))
    if len(res.history) > 1:
        s2 = res.history[1]
        rows.append(_row(f"stage 2, one round ({s2['policies_trained']} constrained runs x {args.k} updates)",
                         s2["env_steps"] - s1_steps, t["stage2_compile_s"], t["stage2_s"]))  # fmt: skip

    # The same six stage-1 runs one at a time (one compiled program, called six times).
    pop = cmorl.stage1_population(cfg, 2, 5, args.updates, 0)
    template = jax.tree.map(lambda x: x[0], pop.cfg)
    t0 = time.perf_counter()  # set-up as in stage 1's compile column: the agent, then the compile
    agent = moppo.make_agent(env, template)
    train = jax.jit(make_train(agent, template))
    compiled = train.lower(pop.keys[0], template, params).compile()
    compile_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    for i in range(len(pop.members)):
        jax.block_until_ready(compiled(pop.keys[i], jax.tree.map(lambda x: x[i], pop.cfg), params))
    seq_s = time.perf_counter() - t0
    rows.append(_row("stage 1, one policy at a time (6 calls)", len(pop.members) * args.updates * batch, compile_s, seq_s))
    # The env alone: what the physics costs, the floor under any learner on this machine.
    rows.append(_env_only_row(env, params, cfg.num_envs, cfg.num_steps))

    name = "DST convex" if args.env == "dst" else "MO-HalfCheetah (brax spring)"
    setting = f"{name}, {cfg.num_envs} envs x {cfg.num_steps} steps, {cfg.update_epochs} epochs x {cfg.num_minibatches} minibatches"
    print(f"\n{setting}; {len(jax.devices())} {jax.default_backend()} device(s)\n")
    print("| what | env steps | compile s | run s | env-steps/s | incl. compile |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['what']} | {r['steps']:,} | {r['compile_s']:.1f} | {r['run_s']:.1f} | {r['sps']:,.0f} | {r['sps_incl']:,.0f} |")
    pop_row = rows[0]
    seq_row = next(r for r in rows if r["what"].startswith("stage 1, one policy"))
    print(f"\npopulation / one-at-a-time: {pop_row['sps'] / seq_row['sps']:.2f}x excluding compile, "
          f"{pop_row['sps_incl'] / seq_row['sps_incl']:.2f}x including it")  # fmt: skip
    os.makedirs(RESULTS, exist_ok=True)
    with open(os.path.join(RESULTS, f"morl_{args.env}.json"), "w") as fh:
        json.dump(dict(setting=setting, backend=jax.default_backend(), devices=len(jax.devices()), rows=rows,
                       final_hv=res.history[-1]["hypervolume"]), fh, indent=2)  # fmt: skip


def _env_only_row(env, params, num_envs, num_steps):
    """`num_envs` envs stepped `num_steps` times with uniform random actions, no learner."""
    space = env.action_space(params)

    def rollout(key):
        k_reset, k_run = jax.random.split(key)
        _, state = jax.vmap(env.reset, (0, None))(jax.random.split(k_reset, num_envs), params)

        def step(state, k):
            k_act, k_env = jax.random.split(k)
            action = jax.vmap(space.sample)(jax.random.split(k_act, num_envs))
            out = jax.vmap(env.step, (0, 0, 0, None))(jax.random.split(k_env, num_envs), state, action, params)
            return out[1], out[2].sum()

        return jax.lax.scan(step, state, jax.random.split(k_run, num_steps))[1].sum()

    t0 = time.perf_counter()
    compiled = jax.jit(rollout).lower(jax.random.key(0)).compile()
    compile_s = time.perf_counter() - t0
    jax.block_until_ready(compiled(jax.random.key(1)))  # first call: buffers and caches
    t0 = time.perf_counter()
    jax.block_until_ready(compiled(jax.random.key(2)))
    return _row(f"env alone, random actions ({num_envs} envs, 1 device)", num_envs * num_steps, compile_s,
                time.perf_counter() - t0)  # fmt: skip


def _row(what, steps, compile_s, run_s):
    return dict(what=what, steps=int(steps), compile_s=compile_s, run_s=run_s, sps=steps / run_s,
                sps_incl=steps / (run_s + compile_s))  # fmt: skip


if __name__ == "__main__":
    np.set_printoptions(precision=3)
    main()
