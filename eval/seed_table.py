r"""A miniature reproduction's table over seeds: each model's mean ± standard deviation, and which
differences between models are larger than that spread.

  python -m eval.seed_table --runs=runs/detection --report=eval/validation/detection/results.json \
      --metrics=frame_map_act,video_map_0.2,video_map_0.5 --names=s3dg_given,i2d_given --output_dir=docs/detection

Reads every RUNS/seed<S>/<NAME>/<REPORT> (a results.json that eval.main wrote for the run NAME
trained with seed S) and writes to --output_dir `<TABLE>.csv` (one row per run: seed, name and
the metrics) and `<TABLE>.md`: per name the number of seeds and each metric's mean ± sample
standard deviation (n - 1) over them, then, per metric, every pair of names whose difference of
means is larger than the spread, i.e. larger than the sum of their standard deviations (the mean
± sd intervals do not overlap), with the difference in units of the standard deviation of a
difference of two runs, sqrt(sd_a^2 + sd_b^2). A pair with fewer than 2 seeds on either side has
no spread and is not compared. The markdown is also printed.
"""

import csv
import itertools
import json
import math
import os
import pathlib
import re

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import flags  # noqa: E402
import numpy as np  # noqa: E402

from data import files  # noqa: E402
from flags import cli  # noqa: E402

PROGRAM = "eval.seed_table"
SEED_FOLDER = re.compile(r"seed(\d+)$")


class SeedTableError(ValueError):
    """Missing or unreadable reports; the message names them."""


def spread(values):
    """`(mean, sample standard deviation or None with one value, count)` of the values that are
    not None; `(None, None, 0)` without any."""
    values = [float(v) for v in values if v is not None]
    if not values:
        return None, None, 0
    return float(np.mean(values)), (float(np.std(values, ddof=1)) if len(values) > 1 else None), len(values)


def cell(values, digits=3):
    """"mean ± sd" (one value: the value; none: "-")."""
    mean, sd, _ = spread(values)
    if mean is None:
        return "-"
    return f"{mean:.{digits}f}" + ("" if sd is None else f" ± {sd:.{digits}f}")


def separated(a, b):
    """Whether the values `a` and `b` (two models' runs) differ by more than their spread:
    `(larger, difference of means a - b, difference / sqrt(sd_a^2 + sd_b^2))`; None (no spread)
    where either has fewer than 2 values. A zero spread makes any non-zero difference larger
    (in units: infinite)."""
    (mean_a, sd_a, _), (mean_b, sd_b, _) = spread(a), spread(b)
    if sd_a is None or sd_b is None:
        return None
    difference = mean_a - mean_b
    scale = math.hypot(sd_a, sd_b)
    units = difference / scale if scale else (math.copysign(math.inf, difference) if difference else 0.0)
    return abs(difference) > sd_a + sd_b, difference, units


def differences(groups, digits=3):
    """Lines naming each pair of `groups` ({name: [values]}, in order) whose difference is larger
    than the spread (`separated`), e.g. "s3dg_given - i2d_given: +0.120 (4.1 sd)"; pairs within the
    spread are counted, pairs without a spread named (or, where no pair has one, said so once)."""
    larger, within, unspread = [], 0, []
    for (name_a, a), (name_b, b) in itertools.combinations(groups.items(), 2):
        found = separated(a, b)
        if found is None:
            unspread.append(f"{name_a} / {name_b}")
        elif found[0]:
            larger.append(f"{name_a} - {name_b}: {found[1]:+.{digits}f} ({abs(found[2]):.1f} sd)")
        else:
            within += 1
    if unspread and not larger and not within:
        return ["no spread (fewer than 2 seeds)"]
    lines = larger or ["none"]
    if within:
        lines.append(f"({within} other pair(s) within the spread)")
    if unspread:
        lines.append("(no spread, fewer than 2 seeds: " + ", ".join(unspread) + ")")
    return lines


def collect(runs_dir, report, metrics):
    """Rows `{"seed", "name", metric...}` of every `runs_dir/seed<S>/<NAME>/<report>`, by seed
    then name; SeedTableError where a report is unreadable, lacks a metric, or none is found."""
    rows = []
    for seed_dir in sorted(pathlib.Path(runs_dir).glob("seed*"), key=lambda p: (len(p.name), p.name)):
        match = SEED_FOLDER.match(seed_dir.name)
        if not match or not seed_dir.is_dir():
            continue
        for path in sorted(seed_dir.glob(f"*/{report}")):
            try:
                results = json.loads(path.read_text())
            except (OSError, ValueError) as error:
                raise SeedTableError(f"{path}: not a readable results.json ({error})") from None
            missing = [metric for metric in metrics if metric not in results]
            if missing:
                raise SeedTableError(f"{path}: has no {missing[0]!r} (its figures: {', '.join(sorted(results))})")
            name = path.relative_to(seed_dir).parts[0]
            rows.append({"seed": int(match.group(1)), "name": name, **{metric: results[metric] for metric in metrics}})
    if not rows:
        raise SeedTableError(f"{runs_dir}: no seed*/*/{report}")
    return rows


def table(rows, metrics, names=None):
    """The markdown of `rows` (`collect`): one line per name (in `names`' order, else first
    seen), the number of seeds and each metric's mean ± sd, then the differences larger than
    the spread per metric."""
    names = list(names or dict.fromkeys(row["name"] for row in rows))
    groups = {metric: {name: [row[metric] for row in rows if row["name"] == name] for name in names}
              for metric in metrics}
    lines = ["| run | seeds | " + " | ".join(metrics) + " |", "|---|---|" + "---|" * len(metrics)]
    for name in names:
        seeds = sorted(row["seed"] for row in rows if row["name"] == name)
        lines.append(f"| {name} | {len(seeds)} ({', '.join(map(str, seeds))}) | "
                     + " | ".join(cell(groups[metric][name]) for metric in metrics) + " |")
    lines += ["", "mean ± sample standard deviation over seeds. Differences larger than the spread "
              "(|difference of means| > sd_a + sd_b; in units of sqrt(sd_a^2 + sd_b^2)):"]
    for metric in metrics:
        lines.append(f"- {metric}: " + "; ".join(differences(groups[metric])))
    return "\n".join(lines) + "\n"


def define(values):
    common = dict(flag_values=values)
    flags.DEFINE_string("runs", None, "Folder of seed<S>/<NAME> run folders.", **common)
    flags.DEFINE_string("report", None, "Path of each run's results.json inside its run folder, e.g. "
                        "eval/validation/detection/results.json.", **common)
    flags.DEFINE_list("metrics", None, "Figures of the results.json to tabulate, e.g. frame_map_act,video_map_0.5.",
                      **common)
    flags.DEFINE_list("names", None, "Run names in the table's order [default: as found]; others are left out.",
                      **common)
    flags.DEFINE_string("output_dir", None, "Where TABLE.csv and TABLE.md go.", **common)
    flags.DEFINE_string("table", "table", "Name of the output files.", **common)


def command(values):
    if not (values.runs and values.report and values.metrics and values.output_dir):
        raise cli.UsageError("--runs, --report, --metrics and --output_dir are required")
    rows = collect(values.runs, values.report, values.metrics)
    if values.names:
        rows = [row for row in rows if row["name"] in values.names]
    markdown = table(rows, values.metrics, values.names)
    output_dir = pathlib.Path(values.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    with files.atomic(output_dir / f"{values.table}.csv") as temporary, open(temporary, "w", newline="") as file:
        writer = csv.DictWriter(file, list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    with files.atomic(output_dir / f"{values.table}.md") as temporary:
        temporary.write_text(markdown)
    print(markdown)
    return {"rows": rows, "output_dir": str(output_dir)}


if __name__ == "__main__":
    cli.main(PROGRAM, __doc__, define, command)
