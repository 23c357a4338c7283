"""Two versions of flowcore timed against each other: `python -m benchmarks.versions OLD [NEW]`.

OLD and NEW are git revisions (NEW defaults to the working tree). Each repeat runs the same
timing code once per version, each in a fresh subprocess with that version first on the import
path, the order flipped every repeat, so a change in machine load hits both alike; the table
gives medians and the median of the per-repeat ratios. What is timed, on random 8-bit images
(speed does not depend on the values): a `Trainer` step, `log_prob` of 500 images and 64
samples for the benchmarks' MNIST Glow and RealNVP (`benchmarks/mnist_models.json` of the working
tree, the same shapes for both versions), and a `Trainer` step
of the dashboard's 2-D NICE, RealNVP and Glow at batch 256.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks.images import model_spec
from benchmarks.timing import median

ROOT = Path(__file__).resolve().parents[1]

PROBE = r"""
import json, sys, time, torch
import flowcore
from flowcore.train import TrainConfig, Trainer
torch.set_num_threads(int(sys.argv[1]))
calls = int(sys.argv[2])
specs = json.loads(sys.argv[3])
out = {}

def seconds(fn, n):
    fn()
    start = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - start) / n

for name in ("glow", "realnvp"):
    model = specs[name]["model"]
    torch.manual_seed(0)
    flow = flowcore.build(name, (1, 28, 28), **model)
    images = torch.randint(0, 256, (2000, 1, 28, 28), dtype=torch.uint8)
    trainer = Trainer(flow, images, TrainConfig(steps=10**6, batch_size=64, lr=1e-4))
    out[f"{name} MNIST train step (64)"] = seconds(trainer.step, calls)
    flow.eval()
    x = images[:500].float() + torch.rand(500, 1, 28, 28)
    with torch.no_grad():
        out[f"{name} MNIST log_prob (500)"] = seconds(lambda: flow.log_prob(x), max(1, calls // 3))
        out[f"{name} MNIST sample (64)"] = seconds(lambda: flow.sample(64), calls)
for name in ("nice", "realnvp", "glow"):
    torch.manual_seed(0)
    flow = flowcore.build(name, (2,))
    trainer = Trainer(flow, flowcore.toy_data("moons", 4000, 0), TrainConfig(steps=10**6, batch_size=256))
    out[f"{name} 2-D train step (256)"] = seconds(trainer.step, 20 * calls)
print("RESULT " + json.dumps(out))
"""


def checkout(revision: str, folder: Path) -> Path:
    """The files of `revision` under `folder` (a `git archive`, so the repository is untouched)."""
    folder.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", revision], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive, check=True)
    return folder


def probe(tree: Path, threads: int, calls: int) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    specs = json.dumps({name: model_spec(name) for name in ("glow", "realnvp")})
    done = subprocess.run([sys.executable, "-c", PROBE, str(threads), str(calls), specs], cwd=tree, env=env,
                          check=True, capture_output=True, text=True)
    line = next(row for row in done.stdout.splitlines() if row.startswith("RESULT "))
    return json.loads(line[len("RESULT "):])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("old", help="git revision of the version to compare against")
    parser.add_argument("new", nargs="?", help="git revision (default: the working tree)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--calls", type=int, default=6, help="calls per timing (2-D steps: 20x)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        trees = {args.old: checkout(args.old, Path(tmp) / "old"),
                 args.new or "working tree": checkout(args.new, Path(tmp) / "new") if args.new else ROOT}
        runs: dict[str, list[dict[str, float]]] = {label: [] for label in trees}
        for r in range(args.repeats):
            for label in (list(trees) if r % 2 == 0 else list(reversed(trees))):
                runs[label].append(probe(trees[label], args.threads, args.calls))
            print(f"repeat {r + 1} of {args.repeats} done", file=sys.stderr, flush=True)
    old, new = runs.values()
    labels = list(runs)
    print(f"| timing | {labels[0]} (ms) | {labels[1]} (ms) | {labels[0]} / {labels[1]} |")
    print("| --- | ---: | ---: | ---: |")
    for key in old[0]:
        ratio = median([o[key] / n[key] for o, n in zip(old, new, strict=True)])
        print(f"| {key} | {median([o[key] for o in old]) * 1e3:.2f} | {median([n[key] for n in new]) * 1e3:.2f} "
              f"| {ratio:.2f}x |")


if __name__ == "__main__":
    main()
