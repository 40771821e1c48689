"""Print IGLUE's 7-column table from benchmark runs, next to the paper's CCLM rows and the translate-test bar.

    python examples/iglue_table.py OUT_xvnli OUT_xgqa OUT_marvl OUT_xflickrco OUT_wit [more OUT folders ...]

Each argument is an output folder of run_xvnli.py, run_vqa.py (xgqa), run_nlvr.py (marvl) or run_retrieval.py
(xflickrco, wit), or its metrics.json; folders of other settings (few_shot, translate_test) add rows, and few-shot
folders of single languages are merged. A column without a run shows "–". Values: % (IGLUE averages, English
excluded; R@1 for retrieval).
"""

import argparse
import sys

from cclm_hf.evaluation import iglue_table, load_runs


def main(argv=None) -> str:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", help="OUT folders (or metrics.json files) of IGLUE benchmark runs")
    args = parser.parse_args(argv)
    try:
        table = iglue_table(load_runs(args.runs))
    except (FileNotFoundError, ValueError) as error:
        raise SystemExit(f"error: {error}") from None
    sys.stdout.write(table)
    return table


if __name__ == "__main__":
    main()
