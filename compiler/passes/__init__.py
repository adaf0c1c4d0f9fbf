"""Graph passes: each a named, typed ``Pass``; ``compiler.driver`` lists them in order."""
from compiler.passes.base import Pass
from compiler.passes.fold_batchnorm import FoldBatchNorm

__all__ = ["Pass", "FoldBatchNorm"]
