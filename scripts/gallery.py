"""Regenerate the gallery section (figures, the paper's numbers, ours, gaps).

`rlx reproduce NAME --scale cpu` writes `results/<name>/<name>.{png,csv,json}`. This
script copies each figure and record to `docs/gallery/` (results/ is not tracked) and
writes the section that links to them.

    python scripts/gallery.py              # docs/gallery.md, links relative to docs/
    python scripts/gallery.py --readme     # print the section for README.md (links from the root)
    python scripts/gallery.py --run        # first run every experiment at --scale (default cpu)
"""

from __future__ import annotations

import argparse
import os
import sys


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="docs/gallery.md", help="file to write (default: %(default)s)")
    p.add_argument("--readme", action="store_true", help="print the section with links from the repository root")
    p.add_argument("--run", action="store_true", help="run every experiment first (at --scale)")
    p.add_argument("--scale", default="cpu", help="the scale the gallery shows (default: %(default)s)")
    args = p.parse_args(argv)

    from rlx import experiments as ex

    root = ex.repo_root()
    found = ex.discover(root)
    if args.run:
        for e in found:
            if e.error:
                print(f"skip {e.name}: {e.error}", file=sys.stderr)
                continue
            print(f"running {e.name} at {args.scale} ...", flush=True)
            record = ex.run_experiment(e, args.scale, os.path.join(root, "results", e.name))
            print(f"  {record['seconds']:.0f} s", flush=True)
    if args.readme:
        ex.publish(found, root)
        sys.stdout.write(ex.gallery_markdown(found, root, ".", args.scale))
        return 0
    path = ex.write_gallery(args.out, root, args.scale, found)
    print(f"wrote {path} ({len(found)} experiments; figures in {ex.GALLERY_FILES}/)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
