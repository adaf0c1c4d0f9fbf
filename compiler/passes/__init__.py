"""Graph passes: each a named, typed ``Pass``; ``compiler.driver`` lists them in order."""
from compiler.passes.base import Pass
from compiler.passes.bit_slicing import BitSlicing
from compiler.passes.cam_mapping import CamMappingPass
from compiler.passes.fold_batchnorm import FoldBatchNorm
from compiler.passes.partition import Partition
from compiler.passes.placement import CapacityError, Placement
from compiler.passes.quantize import Quantize
from compiler.passes.tile_mapping import TileMapping

__all__ = ["Pass", "BitSlicing", "CamMappingPass", "CapacityError", "FoldBatchNorm", "Partition", "Placement", "Quantize",
           "TileMapping"]
