"""A small, generic reconciler for AWS over boto3.

- :mod:`squall.engine.core`: :class:`Resource` (desired), :class:`Ref`, :class:`Actual`
  (discovered), :class:`Kind` (find / create / update / delete of one sort of resource) and the
  run's :class:`Context` (clients, ownership tag, memoized discovery).
- :mod:`squall.engine.plan`: :func:`make_plan` diffs desired against discovered resources;
  a :class:`Plan` renders as text or stable JSON.
- :mod:`squall.engine.run`: :func:`apply` carries a plan out in dependency order, in parallel.
- :mod:`squall.engine.kinds`: the AWS kinds (EC2, ELBv2, Auto Scaling, Route53).
- :mod:`squall.engine.aws`: the boto3 session, retries, error codes and one-line explanations.

It knows nothing of clusters beyond the ownership tag: :mod:`squall.aws` describes the cluster.
"""

from squall.engine.core import Actual, Context, Kind, Ref, Resource
from squall.engine.plan import Change, Plan, make_plan
from squall.engine.run import apply

__all__ = ["Actual", "Change", "Context", "Kind", "Plan", "Ref", "Resource", "apply", "make_plan"]
