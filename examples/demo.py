"""The built-in demo, as a script: `python examples/demo.py [--budget-s 300] [--no-parallel-text] [--output-dir DIR]`.

Same as `cclm-hf demo`; see `cclm_hf.demo.run` for what it does.
"""

import sys

from cclm_hf.cli import main


if __name__ == "__main__":
    sys.exit(main(["demo", *sys.argv[1:]]))
