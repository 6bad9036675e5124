"""squall: minimal, upstream Kubernetes on AWS."""

__version__ = "0.1.0"
