"""Evaluation, an application: measure a model on labelled images (`siamese eval`) and draw plots.

The retrieval metrics themselves are foundation (siamese.core.metrics): training validates with
them.
"""

from siamese.evaluation.evaluate import EvalConfig, evaluate

__all__ = ["EvalConfig", "evaluate"]
