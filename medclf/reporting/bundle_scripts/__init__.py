"""The code an exported MONAI bundle ships in its ``scripts/`` folder (MONAI, torch, numpy, PIL and pydicom
only: it must run where medclf is not installed). Not imported by medclf; copied by
:mod:`medclf.reporting.bundle`."""
