"""Named presets of training settings (``--recipe``), chosen by cross-validation (docs/recipes.md).

A recipe only changes defaults: :func:`~medclf.config.files.make_settings` lays it under the values given
(flags, a ``--config`` file, a resumed run's saved settings), so every setting it holds can still be
overridden by its own flag. The resolved values, and the recipe's name, are what ``config.json`` and the
checkpoint record.
"""

from __future__ import annotations

from typing import Any

#: Each recipe's settings; "none" is today's defaults.
RECIPE_SETTINGS: dict[str, dict[str, Any]] = {
    "none": {},
    # The best of the cross-validated search on 373 NIH images (docs/recipes.md): AdamW with weight decay,
    # one warm-up epoch, then a cosine schedule to zero. EMA weights, strong augmentation and batch 16 each
    # added nothing significant there, and less on top of this one, so they are left out.
    "small-data": {"optimizer": "adamw", "weight_decay": 0.05, "scheduler": "cosine", "warmup_epochs": 1},
}
RECIPES = tuple(RECIPE_SETTINGS)


def _named_recipe(values: dict[str, Any]) -> dict[str, Any]:
    """The settings of the recipe ``values`` name (``values["recipe"]``; none or unknown: no settings)."""
    return RECIPE_SETTINGS.get(str(values.get("recipe", "none")), {})


def with_recipe(values: dict[str, Any]) -> dict[str, Any]:
    """``values`` over the settings of the recipe they name (``values["recipe"]``; none: unchanged)."""
    return {**_named_recipe(values), **values}


def departures(values: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """The named recipe's settings that ``values`` set otherwise, as ``{name: (value, recipe's value)}``.

    A value given on the command line wins over the recipe on purpose; a :class:`TrainConfig` built
    directly with ``recipe=`` does not get the recipe's values at all (only ``medclf.train(recipe=...)`` and
    the command lines lay them under the values given), and this says which settings that left out.
    """
    return {
        name: (values.get(name), value) for name, value in _named_recipe(values).items() if values.get(name) != value
    }
