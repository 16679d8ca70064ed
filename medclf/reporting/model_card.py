"""The model card of an exported model (``bundle/docs/README.md``): data, validation metrics, use, limits."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from medclf.reporting.bundle import BundleFacts

INTENDED_USE = (
    "Research and method development on frontal chest radiographs: ranking studies, prototyping a triage "
    "or worklist tool, comparing models. Not a medical device: it has not been cleared or approved for "
    "diagnosis, and its outputs must not replace a radiologist's reading."
)
LIMITATIONS = (
    "- Trained on the data summarised above only; performance on other hospitals, scanners, populations, "
    "lateral views or paediatric images is unknown until measured there (`python -m medclf.validate`).\n"
    "- Labels mined from radiology reports (NIH ChestX-ray14, CheXpert, MIMIC-CXR) are noisy; AUROC "
    "against them understates or overstates clinical accuracy.\n"
    "- The thresholds were chosen on the VALIDATION split (Youden's J); a site should choose its own "
    "operating points for its prevalence and costs.\n"
    "- Input must be preprocessed exactly as described (one channel, area resize, per-image min/max); "
    "other scalings change the probabilities."
)


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


def _label_table(facts: BundleFacts) -> str:
    n = len(facts.labels)
    values = zip(facts.labels, facts.thresholds or [0.5] * n, facts.temperatures or [1.0] * n, strict=True)
    rows = [[str(i), name, f"{t:.4f}", f"{temp:.4f}"] for i, (name, t, temp) in enumerate(values)]
    return _table(["output", "label", "threshold (raw sigmoid)", "temperature"], rows)


def model_card(facts: BundleFacts) -> str:
    """Markdown: what the model is, its training data, VALIDATION metrics, intended use, limitations, thresholds."""
    prov = facts.provenance
    parts = [
        f"# medclf chest X-ray classifier: {facts.model_name}\n",
        f"{len(facts.labels)} labels, one probability each: {', '.join(facts.labels)}.\n",
        "## Input\n",
        f"One float32 image `(N, 1, {facts.image_size}, {facts.image_size})`: {facts.intensity}. "
        "`scripts/medclf_bundle.py` (`load_image`) makes it from a PNG, JPEG or DICOM file.\n",
        *(f"## {title}\n\n{text}\n" for title, text in facts.card.items()),
        "## Intended use\n",
        INTENDED_USE + "\n",
        "## Limitations\n",
        LIMITATIONS + "\n",
        "## Thresholds and temperatures\n",
        "A label is called positive when its raw probability `sigmoid(logit)` is at least its threshold; the "
        "reported probability is `sigmoid(logit / temperature)` (temperature scaling fitted on VALIDATION).\n",
        _label_table(facts) + "\n",
        "## Provenance\n",
        "```json\n" + _json(prov) + "\n```\n",
        "## Running it\n",
        "```\npython -m monai.bundle run --config_file configs/inference.json --bundle_root . "
        "--dataset_dir IMAGES --output_dir OUT\n```\n",
        "writes `OUT/predictions.csv`: per image its probabilities and `pred_<label>` calls.\n",
    ]
    return "\n".join(parts)


def _json(value: object) -> str:
    import json

    return json.dumps(value, indent=2, sort_keys=True, default=str)
