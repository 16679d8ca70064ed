"""Write a medclf manifest from the official label files of MIMIC-CXR (the chexpert, metadata and split CSVs).

The same as ``python -m medclf.prepare_mimic_cxr`` (or the console script ``medclf-prepare-mimic-cxr``);
``--help`` lists the flags.
"""

from medclf.prepare_mimic_cxr import main

if __name__ == "__main__":
    raise SystemExit(main())
