"""``python -m tmc_lightning.explain``: the same command as ``tmc-explain`` (tmc_lightning/cli/explain.py)."""

from tmc_lightning.cli.explain import main

if __name__ == "__main__":
    main()
