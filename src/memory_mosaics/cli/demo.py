"""``mosaic demo``: the main job. Runs, on data it makes itself, what the library can already reproduce, and writes
one report folder (Markdown, JSON, PNG)."""

from __future__ import annotations

import argparse
import importlib
import json
import time
from pathlib import Path

from memory_mosaics.cli.types import out_folder, positive
from memory_mosaics.experiments.demo import induction_section

HELP = (
    "The main job: the laptop-scale reproduction on data made here (one-block induction head and streaming, three "
    "moons, RegBench at small N), one report folder."
)

# (section title, command module, arguments after --out, report file inside its folder)
EXPERIMENTS = {
    "moons": ("Three moons (Section 5)", "memory_mosaics.cli.moons", [], "report.md"),
    "regbench": ("RegBench (Figure 9)", "memory_mosaics.cli.regbench", ["--n-train", "100"], "table.md"),
}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", type=out_folder, default="runs/demo", help="report folder")
    p.add_argument("--steps", type=positive, default=300, help="training steps of the induction experiment, per model")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--skip", nargs="*", default=[], choices=sorted(EXPERIMENTS), help="experiments to leave out")


def run_experiment(name: str, out: Path) -> tuple[str, float]:
    """Run another command with its defaults; return a section that links to its report, and its duration. An
    exception in the command propagates; a non-zero exit code (failed acceptance checks) is reported in the section."""
    title, module_name, argv, report = EXPERIMENTS[name]
    module = importlib.import_module(module_name)
    parser = argparse.ArgumentParser()
    module.add_arguments(parser)
    t0 = time.perf_counter()
    code = module.run(parser.parse_args(["--out", str(out / name), *argv]))
    seconds = time.perf_counter() - t0
    command = " ".join(["mosaic", name, "--out", str(out / name), *argv])
    text = f"## {title}\n\n`{command}` ({seconds:.0f} s): see [{name}/{report}]({name}/{report}).\n"
    if code:  # the command ran to the end but says that some of its acceptance checks failed
        text += f"\nIt exited with code {code}: not all of its acceptance checks passed (details in its report).\n"
    return text, seconds


def run(args: argparse.Namespace) -> int:
    args.out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    sections, numbers = [], {}
    text, numbers["induction"] = induction_section(args.out, args.steps, args.seed)
    sections.append(text)
    for name in EXPERIMENTS:
        if name not in args.skip:
            text, numbers[f"{name}_seconds"] = run_experiment(name, args.out)
            sections.append(text)
    numbers["seconds"] = time.perf_counter() - t0
    numbers["config"] = {"steps": args.steps, "seed": args.seed, "skip": args.skip}
    (args.out / "results.json").write_text(json.dumps(numbers, indent=2) + "\n")
    report = "# memory-mosaics demonstration\n\nCommand: `mosaic demo --out {}` ({:.0f} s).\n\n{}".format(
        args.out, numbers["seconds"], "\n".join(sections)
    )
    (args.out / "report.md").write_text(report)
    print(report)
    print(f"wrote {args.out / 'report.md'}")
    return 0
