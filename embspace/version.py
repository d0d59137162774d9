"""The version of embspace (one home: the package, reports and trajectories read it here)."""

__version__ = "0.1.0"
