"""Reference predictors for any dataset: chance, train mean, 1-NN on pixels, linear probe.

    python scripts/baselines.py [DATASET_DIR | --data saw] [--markdown PATH --section NAME]

Scored on the test split with the same metrics as the models (src/metrics/estimation.py):
per head accuracy, accuracy within one class, MAE in natural units, skill against the
train-mean predictor; `score` is the mean skill.
"""

from __future__ import annotations

import argparse

from rich.console import Console
from rich.table import Table

from src.data.datamodule import VIMHDataModule
from src.data.provision import dataset_folder
from src.metrics.baselines import BASELINES, datamodule_baselines
from src.utils.config import compose_config

from mdreport import machine_line, markdown_table, results_table, update_section


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("dataset", nargs="?", help="a VIMH folder (default: the --data config's)")
    ap.add_argument("--data", default="saw", help="data config when no folder is given")
    ap.add_argument("--seed", type=int, default=0, help="seed of the chance predictor")
    ap.add_argument("--markdown", help="write the table into this markdown file")
    ap.add_argument("--section", default="baselines")
    args = ap.parse_args()
    if args.dataset:
        folder = args.dataset
    else:
        cfg = compose_config("train", [f"data={args.data}"])
        folder = dataset_folder(cfg.data, cfg.paths.data_dir)
    dm = VIMHDataModule(folder)
    scores = datamodule_baselines(dm, seed=args.seed)
    cols, rows = results_table(
        [h.name for h in dm.heads], [(name, [scores[name]], {}) for name in BASELINES]
    )
    table = Table(title=f"Baselines on {dm.data_dir.name} (test split)")
    for c in cols:
        table.add_column(c, justify="right")
    for r in rows:
        table.add_row(*r)
    Console().print(table)
    if args.markdown:
        lines = [
            f"`python scripts/baselines.py {args.dataset or '--data ' + args.data}`; dataset "
            f"`{dm.data_dir.name}`. Machine: {machine_line()}.",
            "",
            *markdown_table(cols, rows),
        ]
        update_section(args.markdown, args.section, "\n".join(lines))


if __name__ == "__main__":
    main()
