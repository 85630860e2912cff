"""`make bench`: run every benchmark, each in its own process (its own jax and XLA
flags), and collect their markdown tables into benchmarks/results/latest.md.

The PureJaxRL comparison imports an upstream checkout from $PUREJAXRL_DIR (`make bench
PUREJAXRL=DIR` sets it); without one it records its one-line skip reason."""

from __future__ import annotations

import datetime
import os
import platform
import subprocess
import sys

from rlx import usable_cpu_cores

HERE = os.path.dirname(os.path.abspath(__file__))
BENCHES = [
    ("Start-up of rlx train: the time to the first update, by phase", ["bench_startup.py"]),
    ("PPO on CartPole: rlx vs rejax", ["bench_ppo.py", "cartpole"]),
    ("PPO on CartPole: rlx vs PureJaxRL, fresh process per repeat",
     ["bench_purejaxrl.py", "--purejaxrl", os.environ.get("PUREJAXRL_DIR", "")]),
    ("PPO on brax inverted_pendulum: rlx vs brax.training", ["bench_ppo.py", "brax"]),
    ("Distributional value iteration", ["bench_ddp.py"]),
    ("SAC on Pendulum: rlx vs rejax", ["bench_sac.py", "--steps", "20000"]),
    ("SAC on brax inverted_pendulum: rlx vs brax.training", ["bench_sac.py", "--suite", "brax"]),
    ("C-MORL on Deep Sea Treasure: population vs one policy at a time", ["bench_morl.py", "--updates", "20"]),
    ("Meta-learning: LPO ES generation and LPG meta-steps", ["bench_meta.py"]),
]


def main() -> int:
    only = sys.argv[1:]
    parts = [f"# rlx benchmarks\n\n{datetime.date.today()}, {platform.processor() or platform.machine()}, "
             f"{usable_cpu_cores()} cores, Python {platform.python_version()}.\n"]  # fmt: skip
    failed = 0
    for title, cmd in BENCHES:
        if only and not any(o in " ".join(cmd) for o in only):
            continue
        script = os.path.join(HERE, cmd[0])
        if not os.path.exists(script):
            parts.append(f"## {title}\n\nnot available ({cmd[0]} is not written yet)\n")
            continue
        print(f"== {title}", flush=True)
        proc = subprocess.run([sys.executable, script, *cmd[1:]], capture_output=True, text=True)
        tables = [ln for ln in proc.stdout.splitlines() if ln.startswith("|")]
        if not tables:  # a bench that skips says why in one line
            tables = [ln for ln in proc.stdout.splitlines() if ln.startswith("skipped:")]
        print("\n".join(tables) or proc.stdout[-2000:], flush=True)
        if proc.returncode:
            failed += 1
            parts.append(f"## {title}\n\nfailed (exit {proc.returncode}):\n\n```\n{proc.stderr[-1500:]}\n```\n")
        else:
            parts.append(f"## {title}\n\n" + "\n".join(tables) + "\n")
    os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
    with open(os.path.join(HERE, "results", "latest.md"), "w") as f:
        f.write("\n".join(parts))
    print(f"wrote {os.path.join(HERE, 'results', 'latest.md')}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
