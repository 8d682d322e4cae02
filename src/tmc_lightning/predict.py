"""``python -m tmc_lightning.predict``: the same command as ``tmc-predict`` (tmc_lightning/cli/predict.py)."""

from tmc_lightning.cli.predict import main

if __name__ == "__main__":
    main()
