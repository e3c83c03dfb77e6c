"""Plans and policies, under one import: ``from recsys.policy import Plan, BudgetPolicy, ...``.

The plan of a round lives in :mod:`recsys.plan`, the policies that choose
plans in :mod:`recsys.policies`, and the cost model of each protocol in the
protocol itself (:meth:`protocols.AggregationProtocol.cost`); this module
gathers their public names for callers.
"""

from .plan import DP_MODES, LOCAL, Plan, calibrate, plan_protocols, round_event
from .policies import (
    BudgetPolicy,
    CostAwarePolicy,
    CostEstimate,
    FixedPolicy,
    Policy,
    as_policy,
    estimate_cost,
)

__all__ = [
    "DP_MODES",
    "LOCAL",
    "BudgetPolicy",
    "CostAwarePolicy",
    "CostEstimate",
    "FixedPolicy",
    "Plan",
    "Policy",
    "as_policy",
    "calibrate",
    "estimate_cost",
    "plan_protocols",
    "round_event",
]
