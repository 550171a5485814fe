"""Resilience on the call path: circuit breakers, retries, rate limits, outlier ejection."""
