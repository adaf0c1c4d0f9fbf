"""Graph passes: each a named, typed ``Pass``; ``compiler.driver`` lists them in order."""
from nmc.compiler.passes.base import Pass
from nmc.compiler.passes.bit_slicing import BitSlicing
from nmc.compiler.passes.cam_mapping import CamMappingPass
from nmc.compiler.passes.fold_batchnorm import FoldBatchNorm
from nmc.compiler.passes.partition import Partition
from nmc.compiler.passes.placement import CapacityError, Placement
from nmc.compiler.passes.quantize import Quantize
from nmc.compiler.passes.tile_mapping import TileMapping

__all__ = ["Pass", "BitSlicing", "CamMappingPass", "CapacityError", "FoldBatchNorm", "Partition", "Placement", "Quantize",
           "TileMapping"]
