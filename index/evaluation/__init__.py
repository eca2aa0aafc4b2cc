"""``hashmatch eval``: how well matching finds edited copies of known images, and how often it
matches distinct ones, measured through the product's own build and match pipeline.

:mod:`.transforms` names the edits (the ``--transforms`` grammar and the default suite),
:mod:`.run` runs an evaluation, :mod:`.report` and :mod:`.plots` write what it found.
"""

from hashmatch.index.evaluation.report import results_json, write_report
from hashmatch.index.evaluation.run import (
    DEFAULT_EVAL_MATCHING,
    EditedCopy,
    EvalOptions,
    EvalResult,
    TransformScore,
    evaluate,
    recall_curve,
)
from hashmatch.index.evaluation.transforms import DEFAULT_SUITE, apply_transform, parse_transforms

__all__ = [
    "DEFAULT_EVAL_MATCHING",
    "DEFAULT_SUITE",
    "EditedCopy",
    "EvalOptions",
    "EvalResult",
    "TransformScore",
    "apply_transform",
    "evaluate",
    "parse_transforms",
    "recall_curve",
    "results_json",
    "write_report",
]
