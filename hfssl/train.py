"""``accelerate launch -m hfssl.train RECIPE.yaml [--output-dir DIR] [--resume] [key.sub=value ...]``:
the same code as ``hfssl train``."""

import sys

from hfssl.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
