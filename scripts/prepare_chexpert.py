"""Write a medclf manifest from the official label files of CheXpert (train.csv, valid.csv).

The same as ``python -m medclf.prepare_chexpert`` (or the console script ``medclf-prepare-chexpert``);
``--help`` lists the flags.
"""

from medclf.prepare_chexpert import main

if __name__ == "__main__":
    raise SystemExit(main())
