"""Drivers start sandboxed instances of a function version."""

from pratai.drivers.base import CallResult, Driver, Instance, InstanceSpec

__all__ = ["CallResult", "Driver", "Instance", "InstanceSpec"]
