"""The shared command line of every `experiments/<paper>/<figure>/run.py`.

Each experiment module defines `META` (name, paper, figure, claim, expected), `SCALES`
and `run(scale, out_dir) -> dict of headline numbers`, and ends with
`if __name__ == "__main__": main(run, SCALES, __doc__)`.
"""

from __future__ import annotations

import argparse
from typing import Callable, Iterable


def main(run: Callable[[str, str | None], dict], scales: Iterable[str], doc: str | None = None) -> None:
    parser = argparse.ArgumentParser(description=doc)
    parser.add_argument("--scale", default="smoke", choices=list(scales))
    parser.add_argument("--out", default=None, help="output directory (default: results/<name>)")
    args = parser.parse_args()
    print(run(args.scale, args.out))
