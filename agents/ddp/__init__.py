"""Distributional dynamic programming with stock augmentation (Pires et al. 2025):
tabular DP (`tabular`), objectives (`objectives`), oracles (`oracle`), and DηN (`deep`)."""

from rlx.registry import Algorithm, register

register(Algorithm("ddp-dqn", "DηN: deep distributional DP with stock augmentation (objectives beyond the mean)",
                   "rlx.agents.ddp.deep", "DDPConfig", family="ddp",
                   command="rlx train ddp-dqn --env rlx/ddp-grid --horizon 16", plain_evaluation=False,
                   evaluation_note="its policy depends on the starting stock c_0; evaluate it with "
                                   "rlx.agents.ddp.deep.evaluate(..., c0) or select_c0 after training."))  # fmt: skip

from rlx.lazy import submodules  # noqa: E402

__all__ = ["tabular", "objectives", "oracle", "deep"]
__getattr__, __dir__ = submodules(__name__, __all__)
