"""``python -m tmc_lightning.train``: the same command as ``tmc-train`` (tmc_lightning/cli/train.py)."""

from tmc_lightning.cli.train import main

if __name__ == "__main__":
    main()
