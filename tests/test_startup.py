"""Start-up: what a run imports before its first update. A fresh interpreter per check,
since imports are process-wide."""

import subprocess
import sys



def run(code: str) -> str:
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def test_a_gymnax_env_does_not_import_seaborn_or_pyplot_until_they_are_used():
    """gymnax's misc/pong.py imports seaborn and matplotlib.pyplot at module level (for
    rendering): deferred, they stay unloaded through `make`, and work when first used."""
    out = run(
        "import sys\n"
        "from rlx import envs\n"
        "envs.make('gymnax/CartPole-v1')\n"
        "print('loaded', sorted(m for m in ('seaborn.relational', 'pandas', 'matplotlib.figure') if m in sys.modules))\n"
        "import gymnax.environments.misc.pong as pong\n"
        "print('palette', len(pong.sns.color_palette('cubehelix', 3)))\n"
        "import seaborn, matplotlib.pyplot as plt\n"
        "print('real', type(sys.modules['seaborn']).__name__, callable(plt.figure), seaborn.__version__ > '0')\n"
    )
    assert "loaded []" in out
    assert "palette 3" in out and "real module True True" in out


def test_defer_import_leaves_imported_and_missing_modules_alone():
    out = run(
        "import sys, json\n"
        "from rlx.lazy import defer_import\n"
        "defer_import('json'); defer_import('no_such_module_xyz')\n"
        "print(sys.modules['json'] is json, 'no_such_module_xyz' in sys.modules)\n"
    )
    assert out.split() == ["True", "False"]
