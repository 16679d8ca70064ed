"""Write a medclf manifest from the official label files of NIH ChestX-ray14 (Data_Entry_2017_v2020.csv).

The same as ``python -m medclf.prepare_nih`` (or the console script ``medclf-prepare-nih``);
``--help`` lists the flags.
"""

from medclf.prepare_nih import main

if __name__ == "__main__":
    raise SystemExit(main())
