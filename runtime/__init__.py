"""The simulator: runs an nmc program (and nothing else) on inputs."""
from nmc.runtime.crossbar import SimOptions
from nmc.runtime.machine import SimulationError, execute

__all__ = ["execute", "SimOptions", "SimulationError"]
