"""``python -m bnlint``."""

from bnlint.cli import main

if __name__ == "__main__":
    main(prog_name="bnlint")
