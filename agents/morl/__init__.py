"""Multi-objective RL: MO-PPO (`moppo`), C-MORL (`cmorl`), Envelope Q-learning
(`envelope`), indicators (`indicators`)
and hyperparameter optimisation for MORL (`hpo`). Pareto math lives in `rlx.pareto`,
below both envs and agents."""

from rlx.registry import Algorithm, register

register(Algorithm("moppo", "MO-PPO: PPO with a vector critic and a scalarised advantage (one preference)",
                   "rlx.agents.morl.moppo", "MOPPOConfig", presets={"default": "two_objective_config"}, family="morl",
                   command="rlx train moppo --env rlx/deep-sea-treasure --weights 0.5,0.5"))  # fmt: skip
register(Algorithm("envelope", "Envelope Q-learning: one preference-conditioned multi-objective DQN for every preference",
                   "rlx.agents.morl.envelope", "EnvelopeConfig", family="morl", plain_evaluation=False,
                   evaluation_note="its observations carry the preference: evaluate with envelope.evaluate_front",
                   command="rlx train envelope --env rlx/minecart"))  # fmt: skip
register(Algorithm("cmorl", "C-MORL: a Pareto front by MO-PPO preferences, then constrained extension rounds",
                   "rlx.agents.morl.cmorl_cli", builder="main", family="morl", kind="trainer",
                   command="rlx train cmorl --env rlx/deep-sea-treasure --rounds 2 --out runs/cmorl"))  # fmt: skip

from rlx.lazy import submodules  # noqa: E402

__all__ = ["moppo", "cmorl", "cmorl_cli", "envelope", "indicators", "hpo"]
__getattr__, __dir__ = submodules(__name__, __all__)
