"""Manifest preparation of public data sets, from their official label files (no settings, no writing).

:mod:`~medclf.data.prepare.common` holds what every preparation shares: reading an official CSV with
row-level errors, the fraction and view checks, the patient-wise split and the one patient-leakage check.
Each data set is one module taking plain arguments and returning the manifest frame:
:mod:`~medclf.data.prepare.nih` (with its label-file parser in :mod:`~medclf.data.prepare.nih_findings`),
:mod:`~medclf.data.prepare.chexpert` and :mod:`~medclf.data.prepare.mimic_cxr`. ``medclf-prepare NAME``
(:mod:`medclf.prepare`) finds them through its ``DATA_SETS`` registry; the manifest is written by
:func:`medclf.reporting.manifest_csv.write_manifest`.
"""
