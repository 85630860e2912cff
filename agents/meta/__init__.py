"""Meta-learned objectives: drifts (`drifts`: DPO, LPO, TA-LPO), LPG (`lpg`, `lpg_gym`),
the evolution-strategies meta-trainer (`es`), meta-testing (`meta_test`) and GROOVE."""

from rlx.registry import Algorithm, register

register(Algorithm("dpo", "PPO with DPO's closed-form drift (Lu et al. 2022) in place of the clip",
                   "rlx.agents.meta.drifts", "PPOConfig", presets={"default": "dpo_config"}, family="meta",
                   command="rlx train dpo --env gymnax/CartPole-v1"))  # fmt: skip
register(Algorithm("meta-test", "train PPO with saved learned drifts (LPO, TA-LPO) or LPG rules, side by side",
                   "rlx.agents.meta.meta_test", builder="main", family="meta", kind="trainer",
                   command="rlx train meta-test --drift ppo --drift dpo --env gymnax/Acrobot-v1"))  # fmt: skip
register(Algorithm("lpo-es", "meta-train a learned PPO drift (LPO, TA-LPO) with OpenES over whole PPO runs",
                   "rlx.agents.meta.meta_train", builder="main", family="meta", kind="trainer",
                   command="rlx train lpo-es --env gymnax/CartPole-v1 --generations 4 --out runs/lpo"))  # fmt: skip
register(Algorithm("lpg-metagrad", "meta-train an LPG rule by meta-gradients through K unrolled grid-world agent updates",
                   "rlx.agents.meta.lpg_metagrad", builder="main", family="meta", kind="trainer",
                   command="rlx train lpg-metagrad --meta-steps 200 --out runs/lpg-metagrad"))  # fmt: skip

from rlx.lazy import submodules  # noqa: E402

__all__ = ["drifts", "es", "lpg", "lpg_gym", "lpg_metagrad", "groove", "meta_test", "meta_train", "plotting"]
__getattr__, __dir__ = submodules(__name__, __all__)
