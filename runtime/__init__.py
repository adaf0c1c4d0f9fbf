"""The simulator: runs an nmc program (and nothing else) on inputs."""
from runtime.crossbar import SimOptions
from runtime.machine import SimulationError, execute

__all__ = ["execute", "SimOptions", "SimulationError"]
