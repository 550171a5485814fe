"""The policy in force for one (source, target) call: enabled policies merged by priority.

For each setting the highest-priority enabled policy that matches the pair and holds
that setting wins. Authorization follows Istio's rule: any matching deny rule denies;
otherwise, if allow rules exist for the target, one of them must match.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from orchcore.mesh.models import (
    AuthorizationRule,
    CircuitBreakerConfig,
    LoadBalancingConfig,
    MeshPolicy,
    MutualTlsConfig,
    OutlierDetectionConfig,
    RateLimitingConfig,
    RetryPolicyConfig,
    TracingConfig,
    TrafficSplittingConfig,
)
from orchcore.resilience.breakers import glob_matches


@dataclass(frozen=True)
class AuthorizationVerdict:
    allowed: bool
    policy: str | None
    reason: str


@dataclass(frozen=True)
class _RuleSet:
    policy: str
    action: str
    rules: tuple[AuthorizationRule, ...]


@dataclass(frozen=True)
class EffectivePolicy:
    source: str
    target: str
    load_balancing: LoadBalancingConfig | None = None
    traffic_splitting: TrafficSplittingConfig | None = None
    rate_limiting: RateLimitingConfig | None = None
    mutual_tls: MutualTlsConfig | None = None
    circuit_breaker: CircuitBreakerConfig | None = None
    retry_policy: RetryPolicyConfig | None = None
    outlier_detection: OutlierDetectionConfig | None = None
    timeout: float | None = None
    tracing: TracingConfig | None = None
    sources: dict[str, str] = field(default_factory=dict)  # setting -> policy name
    authorization: tuple[_RuleSet, ...] = ()

    def authorize(self, method: str, endpoint: str) -> AuthorizationVerdict:
        for ruleset in self.authorization:
            if ruleset.action == "deny" and _any_rule(ruleset.rules, self, method, endpoint):
                return AuthorizationVerdict(
                    False, ruleset.policy, f"denied by policy {ruleset.policy}"
                )
        allow_sets = [r for r in self.authorization if r.action == "allow"]
        if not allow_sets:
            return AuthorizationVerdict(True, None, "no authorization policy applies")
        for ruleset in allow_sets:
            if _any_rule(ruleset.rules, self, method, endpoint):
                return AuthorizationVerdict(
                    True, ruleset.policy, f"allowed by policy {ruleset.policy}"
                )
        names = ", ".join(r.policy for r in allow_sets)
        return AuthorizationVerdict(
            False,
            allow_sets[0].policy,
            f"no allow rule of {names} lets {self.source} call {self.target}",
        )


def _any_rule(
    rules: Iterable[AuthorizationRule], pair: EffectivePolicy, method: str, endpoint: str
) -> bool:
    return any(_rule_matches(rule, pair.source, pair.target, method, endpoint) for rule in rules)


def _rule_matches(
    rule: AuthorizationRule, source: str, target: str, method: str, endpoint: str
) -> bool:
    if not (_names_match(rule.from_, source) and _names_match(rule.to, target)):
        return False
    if rule.when.method and method.upper() not in rule.when.method:
        return False
    return not rule.when.endpoint or any(glob_matches(p, endpoint) for p in rule.when.endpoint)


def _names_match(names: list[str], name: str) -> bool:
    return "*" in names or name in names


_SETTINGS = (
    "load_balancing", "traffic_splitting", "rate_limiting", "mutual_tls", "circuit_breaker",
    "retry_policy", "outlier_detection", "timeout", "tracing",
)  # fmt: skip


def resolve(policies: Iterable[MeshPolicy], source: str, target: str) -> EffectivePolicy:
    """Merge the enabled policies that match (source, target), highest priority first."""
    chosen: dict[str, object] = {}
    origin: dict[str, str] = {}
    rulesets: list[_RuleSet] = []
    ordered = sorted(
        (p for p in policies if p.is_enabled and p.matches(source, target)),
        key=lambda p: (-p.priority, p.policy_name),
    )
    for policy in ordered:
        config = policy.policy_config
        for name in _SETTINGS:
            value = getattr(config, name)
            if value is not None and name not in chosen:
                chosen[name] = value
                origin[name] = policy.policy_name
        if config.authorization is not None:
            rulesets.append(
                _RuleSet(
                    policy.policy_name,
                    config.authorization.action,
                    tuple(config.authorization.rules),
                )
            )
    return EffectivePolicy(source, target, sources=origin, authorization=tuple(rulesets), **chosen)  # type: ignore[arg-type]
