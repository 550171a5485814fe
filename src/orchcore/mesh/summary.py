"""One line that says what a policy does (the seed's policy_summary)."""

from __future__ import annotations

from orchcore.mesh.models import MeshPolicy


def summarise_policy(policy: MeshPolicy) -> str:
    c = policy.policy_config
    parts: list[str] = []
    if c.load_balancing:
        parts.append(f"balance {c.load_balancing.algorithm.replace('_', ' ')}")
    if c.traffic_splitting:
        parts.append(
            "split " + ", ".join(f"{r.destination} {r.weight}%" for r in c.traffic_splitting.routes)
        )
    if c.rate_limiting:
        parts.append(
            f"rate limit {c.rate_limiting.requests_per_second:g}/s "
            f"burst {c.rate_limiting.burst_size}"
        )
    if c.mutual_tls:
        parts.append(f"mTLS {c.mutual_tls.mode}")
    if c.authorization:
        parts.append(f"{c.authorization.action} {len(c.authorization.rules)} rule(s)")
    if c.circuit_breaker:
        parts.append(
            f"breaker {c.circuit_breaker.failure_threshold} failures / "
            f"{c.circuit_breaker.timeout_duration}s"
        )
    if c.retry_policy:
        parts.append(
            f"retry ×{c.retry_policy.max_attempts} ({', '.join(c.retry_policy.retry_conditions)})"
        )
    if c.outlier_detection:
        parts.append(f"eject after {c.outlier_detection.consecutive_5xx} 5xx")
    if c.timeout:
        parts.append(f"timeout {c.timeout:g}s")
    if c.connection_pool:
        parts.append(f"pool {c.connection_pool.max_connections}")
    if c.tracing:
        parts.append(f"trace {c.tracing.sampling_rate:.0%}")
    if c.metrics:
        parts.append("metrics " + ("on" if c.metrics.enabled else "off"))
    return "; ".join(parts)
