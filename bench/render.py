"""Render benchmark: wall time, peak memory and node-config sizes for 1 and 3 controllers.

Each case runs in a fresh Python process, so peak RSS belongs to that case alone. "cold" renders
with an empty state directory (every key and certificate generated), "warm" reuses the state the
cold run left, as every later `squall apply` does.

    .venv/bin/python bench/render.py [--repeat N]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "cluster.toml"

CHILD = textwrap.dedent(
    """
    import json, resource, sys, time
    from pathlib import Path
    t0 = time.perf_counter()
    from squall import render, spec, state
    t_import = time.perf_counter() - t0
    s = spec.parse(json.loads(sys.argv[1]))
    st = state.State(Path(sys.argv[2]))
    t1 = time.perf_counter()
    r = render.render(s, st)
    t_render = time.perf_counter() - t1
    sizes = [len(c.encode()) for c in r.controllers] + [len(w.encode()) for w in r.workers.values()]
    print(json.dumps({
        "import_s": t_import,
        "render_s": t_render,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "largest_config_b": max(sizes),
        "files": len(r.assets.files) + len(sizes),
    }))
    """
)


def case(data: dict, state_dir: Path) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", CHILD, json.dumps(data), str(state_dir)],
        check=True,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONHASHSEED": "0"},
    )
    return json.loads(out.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="runs per case; the best is shown")
    args = parser.parse_args()

    import tomllib

    base = tomllib.loads(EXAMPLE.read_text())
    rows = []
    for controllers in (1, 3):
        data = {**base, "controller_count": controllers}
        cold, warm = [], []
        for _ in range(args.repeat):
            with tempfile.TemporaryDirectory() as tmp:
                cold.append(case(data, Path(tmp)))
                warm.append(case(data, Path(tmp)))
        for label, runs in (("cold", cold), ("warm", warm)):
            best = min(runs, key=lambda r: r["render_s"])
            rows.append((controllers, label, best))

    print(
        f"{'controllers':>11} {'state':>5} {'render ms':>10} {'import ms':>10} "
        f"{'peak RSS MiB':>12} {'largest config B':>16} {'files':>5}"
    )
    for controllers, label, r in rows:
        print(
            f"{controllers:>11} {label:>5} {r['render_s'] * 1000:>10.1f} "
            f"{r['import_s'] * 1000:>10.1f} {r['peak_rss_mib']:>12.1f} "
            f"{r['largest_config_b']:>16} {r['files']:>5}"
        )


if __name__ == "__main__":
    main()
