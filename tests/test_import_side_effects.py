"""``import medclf`` must leave the importing process as it was (a hospital research script's process)."""

import subprocess
import sys

CHECK = r"""
import logging, os, sys, warnings
os.umask(0o027)
filters = list(warnings.filters)
levels = {name: logging.getLogger(name).level for name in ("", "monai", "monai.data.nvimgcodec_pydicom_plugin", "PIL")}
import medclf
assert os.umask(0o027) == 0o027, "umask changed"
assert warnings.filters == filters, "warnings filters changed"
assert {name: logging.getLogger(name).level for name in levels} == levels, "logging levels changed"
heavy = [m for m in ("matplotlib", "tensorboard", "torch.utils.tensorboard", "monai") if m in sys.modules]
assert not heavy, f"imported at import time: {heavy}"
print("ok")
"""

# The public API loads torch, MONAI and the rest; what those libraries do on import is theirs, so they
# are imported first and only medclf's own modules are checked.
CHECK_API = r"""
import logging, os, sys, warnings
import torch, monai, monai.data, monai.transforms, torchmetrics, pandas
os.umask(0o027)
filters = list(warnings.filters)
names = ("", "medclf", "monai", "monai.data.nvimgcodec_pydicom_plugin", "PIL")
levels = {name: logging.getLogger(name).level for name in names}
from medclf import Manifest, TrainConfig, ValidateConfig, evaluate, load_checkpoint, train
import medclf.workflows.explain, medclf.workflows.predict, medclf.data.prepare.nih
assert callable(train) and callable(evaluate) and callable(load_checkpoint)
assert os.umask(0o027) == 0o027, "umask changed"
assert warnings.filters == filters, "warnings filters changed"
assert {name: logging.getLogger(name).level for name in names} == levels, "logging levels changed"
print("ok")
"""


def test_import_changes_nothing_in_the_process() -> None:
    # A fresh interpreter: the test process itself has imported everything already.
    for code in (CHECK, CHECK_API):
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
        assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]
