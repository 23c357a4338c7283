"""Run the benchmarks and write BENCHMARKS.md: `python -m benchmarks.run [--quick] [--tiny]`.

For each shipped MNIST model (NICE, RealNVP, Glow) and its matched normflows model: training
images/s, `log_prob` images/s, time to draw 64 samples, peak memory; then the 2-D models on
two moons: steps/s and time to converge. Works without normflows (its columns then say so).
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys

import torch

from benchmarks import images, memory, peers, report, timing, toy

MODES = {  # repeats, calls per repeat (train, log_prob, sample), warm-up calls
    "full": {"repeats": 7, "calls": (3, 5, 3), "warmup": 2},
    "quick": {"repeats": 2, "calls": (1, 1, 1), "warmup": 1},
}
TOY_MODES = {  # long-run steps, max steps to converge, steps per rate measurement, repeats, seeds
    "full": {"long_steps": toy.LONG_STEPS, "max_steps": toy.MAX_STEPS, "rate_steps": 100, "repeats": 5,
             "seeds": toy.SEEDS},
    "quick": {"long_steps": 300, "max_steps": 300, "rate_steps": 20, "repeats": 2, "seeds": 1},
    "tiny": {"long_steps": 40, "max_steps": 20, "rate_steps": 5, "repeats": 1, "seeds": 1},
}


def bench_model(name: str, args: argparse.Namespace, device: torch.device) -> report.ModelResult:
    mode = MODES["quick" if args.quick else "full"]
    overrides, batch = images.load_config(name, args.models_file, args.tiny)
    pixels, _ = images.images(images.N_BATCHES * batch, args.data_dir)
    libs = ["flowcore"] + (["normflows"] if peers.available() else [])
    runners = [images.make_runner(lib, name, overrides, batch, pixels, device) for lib in libs]
    compiled, compile_s = None, {}
    if args.compile:  # a third contender for evaluation and sampling: the same flowcore model, compiled
        compiled = images.make_runner("flowcore", name, overrides, batch, pixels, device)
        compiled.model.compile(**({} if args.compile == "default" else {"mode": args.compile}))
        compiled.eval_mode()
        compile_s = {op: timing.seconds_per_call(fn, 1, device)  # the first call compiles
                     for op, fn in (("log_prob", compiled.log_prob), ("sample", compiled.sample))}
    results: dict[str, list[list[float]]] = {}
    for op, calls in zip(("train", "log_prob", "sample"), mode["calls"], strict=True):
        contenders = runners + ([compiled] if compiled is not None and op != "train" else [])
        for r in contenders:
            (r.train_mode if op == "train" else r.eval_mode)()
        fns = [{"train": r.train_step, "log_prob": r.log_prob, "sample": r.sample}[op] for r in contenders]
        results[op] = timing.alternate(fns, mode["repeats"], calls, mode["warmup"], device)
        names = [r.library for r in runners] + ["flowcore compiled"] * (len(contenders) - len(runners))
        print(f"  {name} {op}: " + ", ".join(
            f"{lib} {timing.median(t) * 1000:.1f} ms" for lib, t in zip(names, results[op], strict=True)),
            flush=True)
    tasks = [] if args.skip_memory else (["train"] if args.quick else ["train", "sample"])
    out = []
    for i, r in enumerate(runners):
        mem = {t: memory.in_subprocess(r.library, name, t, args.tiny, str(device), args.models_file, args.threads)
               for t in tasks}
        out.append(report.LibraryResult(
            parameters=r.parameters,
            train_ips=batch / timing.median(results["train"][i]),
            log_prob_ips=batch / timing.median(results["log_prob"][i]),
            sample_s=timing.median(results["sample"][i]),
            memory_mib=mem, finite=r.loss_is_finite()))
    ratios = {}
    if len(runners) == 2:
        ratios = {op: timing.median_ratio(results[op][1], results[op][0]) for op in results}
    compiled_result = None
    if compiled is not None:
        last = {op: results[op][-1] for op in ("log_prob", "sample")}
        compiled_result = report.CompiledResult(
            log_prob_ips=batch / timing.median(last["log_prob"]), sample_s=timing.median(last["sample"]),
            compile_s=compile_s, active=compiled.model.compiled,
            ratios={op: timing.median_ratio(results[op][1], last[op]) for op in last} if len(runners) == 2 else {})
    return report.ModelResult(name, batch, out[0], out[1] if len(out) == 2 else None, ratios, compiled_result)


def load_note() -> str:
    """How busy the machine was: load averages and other heavy Python processes."""
    try:
        one, five, _ = os.getloadavg()
    except OSError:
        return "unknown"
    cores = os.cpu_count() or 1
    note = f"load average {one:.1f} (1 min), {five:.1f} (5 min) on {cores} cores"
    if one > 0.75 * cores:
        note += (" -- the machine was busy with other work, so absolute numbers are low; flowcore and "
                 "normflows ran alternately in one process, so the ratios still compare like with like")
    return note


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="few repeats: checks that everything runs")
    p.add_argument("--tiny", action="store_true", help="tiny models and 2-D runs (for tests)")
    p.add_argument("--models", default=",".join(report.TITLES), help="comma-separated: nice,realnvp,glow")
    p.add_argument("--skip-images", action="store_true", help="no MNIST benchmarks")
    p.add_argument("--skip-2d", action="store_true", help="no two-moons benchmarks")
    p.add_argument("--skip-memory", action="store_true", help="no peak-memory subprocesses")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--compile", nargs="?", const="default", default=None, metavar="MODE",
                   help="also time log_prob and sampling of flowcore models after flow.compile() "
                        "(torch.compile mode, e.g. reduce-overhead; default: torch's default)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    p.add_argument("--models-file", default=str(images.MODELS_FILE),
                   help="JSON file of the MNIST models to time (default benchmarks/mnist_models.json)")
    p.add_argument("--data-dir", default=None, help="folder with the MNIST IDX files (else random pixels)")
    p.add_argument("--out", default="BENCHMARKS.md", help="Markdown file to update")
    p.add_argument("--no-write", action="store_true", help="print the tables only")
    args = p.parse_args(argv)
    unknown = set(args.models.split(",")) - set(report.TITLES)
    if unknown:
        p.error(f"unknown model(s): {', '.join(sorted(unknown))}")
    return args


def main(argv: list[str] | None = None) -> str:
    raw = sys.argv[1:] if argv is None else argv
    args = parse_args(raw)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    info = report.machine(device)
    load_before = load_note()
    print(f"flowcore vs normflows {info['normflows']} on {info['cpu']} ({info['threads']} threads)", flush=True)
    models = []
    if not args.skip_images:
        for name in args.models.split(","):
            models.append(bench_model(name, args, device))
    toy_results = []
    toy_threads = args.threads or toy.THREADS  # as the dashboard trains them, unless --threads says otherwise
    if not args.skip_2d:
        toy_mode = TOY_MODES["tiny" if args.tiny else "quick" if args.quick else "full"]
        previous = torch.get_num_threads()
        torch.set_num_threads(toy_threads)
        try:
            for name in toy.MODELS:
                toy_results.append(toy.run(name, **toy_mode))
                t = toy_results[-1]
                print(f"  2-D {name}: {t.steps_per_s:.0f} steps/s, converged in "
                      f"{'-' if t.seconds_to_converge is None else f'{t.seconds_to_converge:.2f} s'}", flush=True)
        finally:
            torch.set_num_threads(previous)
    mode = MODES["quick" if args.quick else "full"]
    toy_mode = TOY_MODES["tiny" if args.tiny else "quick" if args.quick else "full"]
    long_steps, seeds = toy_mode["long_steps"], toy_mode["seeds"]
    over = f"the median over {seeds} seeds (initialisation and batch order; per seed in brackets) of " \
        if seeds > 1 else ""
    own = "the same seed's" if seeds > 1 else "the"
    _, data_note = images.images(1, args.data_dir)
    settings = {
        "load": f"before: {load_before}; after: {load_note()}",
        "timing": f"{mode['warmup']} warm-up calls each, then {mode['repeats']} repeats alternating flowcore "
                  f"and normflows (order flipped every repeat) of {'/'.join(map(str, mode['calls']))} "
                  "calls (train/log_prob/sample); medians of the repeats, wall-clock",
        "data": data_note,
        "memory": "skipped" if args.skip_memory else "VmHWM reset through /proc/self/clear_refs on Linux CPUs, "
                  "torch.cuda.max_memory_allocated on CUDA",
        "tolerance": toy.TOLERANCE,
        "toy": f"Adam lr {toy.LR:g}, batch {toy.BATCH}, {toy.N_TRAIN} training / {toy.N_HELD_OUT} held-out points, "
               f"{toy_threads} torch thread{'s' if toy_threads > 1 else ''} (the dashboard trains each session's 2-D "
               "model on one); "
               f"long-run NLL: {over}the held-out NLL after {long_steps} cosine-decayed steps; converged: "
               f"{over}the first held-out NLL (every {toy.EVAL_EVERY} steps, clock stopped) within "
               f"{toy.TOLERANCE:g} nats of {own} long-run NLL, at the constant lr, training through "
               "`flowcore.Trainer` as the dashboard does. Steps/s (loop): a plain loop with a default "
               "`torch.optim.Adam`; steps/s (`Trainer`): the same through `flowcore.Trainer`.",
    }
    command = "python -m benchmarks.run" + ("" if not raw else " " + shlex.join(raw))
    generated = report.render(info, command, models, toy_results, settings)
    print(generated)
    if not args.no_write:
        report.write(args.out, generated)
        print(f"wrote {args.out}")
    return generated


if __name__ == "__main__":
    main()
