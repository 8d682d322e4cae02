"""``python -m tmc_lightning.evaluate``: the same command as ``tmc-eval`` (tmc_lightning/cli/evaluate.py)."""

from tmc_lightning.cli.evaluate import main

if __name__ == "__main__":
    main()
