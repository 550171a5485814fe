"""Validation of exported Istio documents.

Each document's ``spec`` is checked against Istio's published v1 CRD schema (bundled in
``istio_schemas/``, with Kubernetes' schema extensions honoured), plus what schema
validation alone misses: apiVersion and kind, Go-style durations, route weights, DNS
names and labels, subsets a VirtualService routes to that no DestinationRule defines, and
the checks Istio's admission webhook makes of authorization operations (no empty value,
no '{' or '}' outside its path templates).
"""

from __future__ import annotations

import base64
import binascii
import copy
import json
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from functools import cache
from importlib import resources
from typing import Any

from jsonschema import Draft4Validator, FormatChecker, ValidationError
from jsonschema.validators import extend

from orchcore.mesh.istio import _DNS_LABEL, API_VERSIONS, TRUST_DOMAIN

# -- validation ---------------------------------------------------------------------------

_DNS_SUBDOMAIN_PART = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS_SUBDOMAIN = re.compile(rf"{_DNS_SUBDOMAIN_PART}(\.{_DNS_SUBDOMAIN_PART})*")
_LABEL_NAME = re.compile(r"([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?")
_GO_DURATION = re.compile(r"(?:(\d+\.?\d*|\.\d+)(ns|us|µs|μs|ms|s|m|h))+")
_DURATION_PART = re.compile(r"(\d+\.?\d*|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_UNIT_SECONDS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "μs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}

# Fields that hold durations although their schema carries no CEL duration rule
# (tcp.idleTimeout, httpCookie.ttl, retryBudget.budgetInterval, ...), by field name.
_DURATION_FIELDS = frozenset(
    {
        "timeout",
        "perTryTimeout",
        "backoff",
        "interval",
        "baseEjectionTime",
        "connectTimeout",
        "idleTimeout",
        "maxConnectionDuration",
        "time",
        "ttl",
        "budgetInterval",
        "fixedDelay",
        "exponentialDelay",
        "maxAge",
        "duration",
        "warmupDurationSecs",
    }
)
_DURATION_RULE = "duration(self) >= duration('1ms')"

# What Envoy's x-envoy-retry-on and x-envoy-retry-grpc-on accept, as Istio passes them on.
_RETRY_POLICIES = frozenset(
    {
        "5xx",
        "gateway-error",
        "reset",
        "reset-before-request",
        "connect-failure",
        "envoy-ratelimited",
        "retriable-4xx",
        "refused-stream",
        "retriable-status-codes",
        "retriable-headers",
        "http3-post-connect-failure",
        "cancelled",
        "deadline-exceeded",
        "internal",
        "resource-exhausted",
        "unavailable",
    }
)


def parse_duration(text: str) -> float | None:
    """Seconds in a duration as the API server's CEL ``duration()`` reads it (Go syntax:
    100ms, 1.5s, 1h30m), or None when it is not one."""
    body = text.removeprefix("+")
    if body == "0":
        return 0.0
    if not _GO_DURATION.fullmatch(body):
        return None
    return sum(float(n) * _UNIT_SECONDS[unit] for n, unit in _DURATION_PART.findall(body))


def _duration_problem(value: Any, *, minimum: float | None) -> str | None:
    if not isinstance(value, str):
        return None  # the schema's type check says so already
    seconds = parse_duration(value)
    if seconds is None:
        return f"{value!r} is not a duration (write e.g. 100ms, 1.5s or 30s)"
    if minimum is not None and seconds < minimum:
        return f"{value!r} is shorter than Istio's minimum of 1ms"
    return None


def validate_documents(documents: Sequence[Any]) -> list[str]:
    """Every problem found in ``documents``, each naming kind/name and the JSON path;
    an empty list means they are valid.

    Checked: apiVersion and kind; metadata.name (DNS-1123 subdomain), namespace and
    labels; ``spec`` against Istio's published v1 CRD schema, with the Kubernetes
    extensions honoured (unknown fields rejected as ``kubectl --validate=strict`` does,
    ``nullable``, int-or-string, int32 ranges, the schemas' CEL rules); every duration;
    route weights adding up to 100; retryOn values; subset names and labels; that each
    subset a VirtualService routes to is defined by a DestinationRule; and authorization
    operations as Istio's webhook checks them (no empty values, path templates).
    """
    problems: list[str] = []
    for index, document in enumerate(documents):
        problems += _document_problems(index, document)
    problems += _dangling_subsets(documents)
    return list(dict.fromkeys(problems))


def _title(index: int, document: Any) -> str:
    if not isinstance(document, Mapping):
        return f"document {index}"
    metadata = document.get("metadata")
    name = metadata.get("name") if isinstance(metadata, Mapping) else None
    return f"{document.get('kind', 'document')}/{name if name else f'#{index}'}"


def _document_problems(index: int, document: Any) -> list[str]:
    title = _title(index, document)
    if not isinstance(document, Mapping):
        return [f"{title}: $: not a mapping"]
    problems = [f"{title}: {path}: {problem}" for path, problem in _envelope_problems(document)]
    kind, spec = document.get("kind"), document.get("spec")
    if kind not in API_VERSIONS or not isinstance(spec, Mapping):
        return problems
    for path, problem in _schema_problems(kind, spec):
        problems.append(f"{title}: {path}: {problem}")
    for path, problem in _KIND_CHECKS[kind](spec):
        problems.append(f"{title}: {path}: {problem}")
    return problems


def _envelope_problems(document: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    kind = document.get("kind")
    if kind not in API_VERSIONS:
        yield "kind", f"{kind!r} is not one of {', '.join(API_VERSIONS)}"
    elif document.get("apiVersion") != API_VERSIONS[kind]:
        yield "apiVersion", f"{document.get('apiVersion')!r} is not {API_VERSIONS[kind]!r}"
    for key in sorted(set(document) - {"apiVersion", "kind", "metadata", "spec"}):
        yield _json_path([key]), "unknown top-level field"
    if not isinstance(document.get("spec"), Mapping):
        yield "spec", "missing or not a mapping"
    metadata = document.get("metadata")
    if not isinstance(metadata, Mapping):
        yield "metadata", "missing or not a mapping"
        return
    name = metadata.get("name")
    if not isinstance(name, str) or len(name) > 253 or not _DNS_SUBDOMAIN.fullmatch(name):
        yield "metadata.name", f"{name!r} is not a DNS-1123 name (lower case, digits, '-', '.')"
    namespace = metadata.get("namespace")
    if namespace is not None and not (
        isinstance(namespace, str) and _DNS_LABEL.fullmatch(namespace)
    ):
        yield "metadata.namespace", f"{namespace!r} is not a DNS-1123 label"
    yield from _label_problems(metadata.get("labels"), ["metadata", "labels"])


def _label_problems(labels: Any, path: list[str | int]) -> Iterator[tuple[str, str]]:
    if labels is None:
        return
    if not isinstance(labels, Mapping):
        yield _json_path(path), "labels must be a mapping"
        return
    for key, value in labels.items():
        if not _is_label_key(key):
            yield _json_path([*path, str(key)]), f"{key!r} is not a Kubernetes label key"
        if not (isinstance(value, str) and len(value) <= 63 and _LABEL_NAME.fullmatch(value)):
            yield _json_path([*path, str(key)]), f"{value!r} is not a Kubernetes label value"


def _is_label_key(key: Any) -> bool:
    if not isinstance(key, str):
        return False
    prefix, _, name = key.rpartition("/")
    if prefix and (len(prefix) > 253 or not _DNS_SUBDOMAIN.fullmatch(prefix)):
        return False
    return 0 < len(name) <= 63 and bool(_LABEL_NAME.fullmatch(name))


def _json_path(parts: Iterable[str | int]) -> str:
    text = ""
    for part in parts:
        if isinstance(part, int):
            text += f"[{part}]"
        elif re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", part):
            text += f".{part}" if text else part
        else:
            text += f"[{json.dumps(part)}]"
    return text or "$"


# -- the CRD schemas, with Kubernetes' extensions -----------------------------------------


def _schema_problems(kind: str, spec: Mapping[str, Any]) -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    for error in _spec_validator(kind).iter_errors(spec):
        found += _explain(error)
    return sorted(found)


def _explain(error: ValidationError) -> list[tuple[str, str]]:
    path: list[str | int] = ["spec", *error.absolute_path]
    if error.validator == "additionalProperties" and isinstance(error.instance, Mapping):
        known = error.schema.get("properties", {}) if isinstance(error.schema, Mapping) else {}
        return [
            (_json_path([*path, key]), "unknown field (not in Istio's v1 CRD schema)")
            for key in error.instance
            if key not in known
        ]
    if error.validator == "oneOf" and isinstance(error.validator_value, list):
        choices = [name for branch in error.validator_value for name in branch.get("required", [])]
        return [(_json_path(path), f"set at most one of {', '.join(choices)}")]
    if error.validator == "format":
        return [(_json_path(path), f"{error.instance!r} is not a valid {error.validator_value}")]
    message = error.message if len(error.message) <= 200 else error.message[:197] + "..."
    return [(_json_path(path), message)]


def _schema_text(kind: str) -> str:
    folder = resources.files("orchcore.mesh").joinpath("istio_schemas")
    return folder.joinpath(f"{kind.lower()}.json").read_text(encoding="utf-8")


@cache
def _spec_validator(kind: str) -> Any:
    schema = json.loads(_schema_text(kind))["properties"]["spec"]
    return _KubernetesValidator(_structural(schema), format_checker=_FORMATS)


def _structural(schema: Any) -> Any:
    """The schema as the API server applies it: objects with declared properties take no
    others (unless they preserve unknown fields), and string fields named as durations
    are checked as durations even where the schema has no CEL rule for them."""
    schema = copy.deepcopy(schema)
    _close_objects(schema)
    return schema


def _close_objects(node: Any) -> None:
    if not isinstance(node, dict):
        return
    properties = node.get("properties")
    if (
        isinstance(properties, dict)
        and "additionalProperties" not in node
        and not node.get("x-kubernetes-preserve-unknown-fields")
    ):
        node["additionalProperties"] = False
    for name, child in (properties or {}).items():
        if name in _DURATION_FIELDS and isinstance(child, dict) and child.get("type") == "string":
            rules = [r.get("rule") for r in child.get("x-kubernetes-validations", [])]
            if _DURATION_RULE not in rules:
                child["x-orch-duration"] = True
        _close_objects(child)
    for key in ("items", "additionalProperties", "not"):
        _close_objects(node.get(key))
    for key in ("allOf", "anyOf", "oneOf"):
        for branch in node.get(key, []):
            _close_objects(branch)


def _nullable_type(validator: Any, types: Any, instance: Any, schema: Mapping[str, Any]) -> Any:
    if instance is None and schema.get("nullable"):
        return
    yield from Draft4Validator.VALIDATORS["type"](validator, types, instance, schema)


def _int_or_string(validator: Any, enabled: Any, instance: Any, schema: Any) -> Any:
    if enabled and (isinstance(instance, bool) or not isinstance(instance, int | str)):
        yield ValidationError(f"{instance!r} is neither a whole number nor a string")


def _marked_duration(validator: Any, enabled: Any, instance: Any, schema: Any) -> Any:
    problem = _duration_problem(instance, minimum=None) if enabled else None
    if problem:
        yield ValidationError(problem)


def _cel_rules(validator: Any, rules: Any, instance: Any, schema: Any) -> Any:
    """The schemas' CEL rules, each evaluated by a Python equivalent of its exact text;
    a rule without one is reported rather than passed unchecked."""
    for rule in rules:
        text = " ".join(str(rule.get("rule", "")).split())
        if text == _DURATION_RULE:
            problem = _duration_problem(instance, minimum=0.001)
            if problem:
                yield ValidationError(problem)
            continue
        check = _CEL_CHECKS.get(text)
        if check is None:
            yield ValidationError(f"cannot check the schema's CEL rule {text!r}")
        elif not check(instance):
            yield ValidationError(str(rule.get("message") or f"fails {text}"))


def _has(value: Any, *keys: str) -> bool:
    return isinstance(value, Mapping) and any(key in value for key in keys)


def _all_keys(check: Callable[[str], bool]) -> Callable[[Any], bool]:
    return lambda value: not isinstance(value, Mapping) or all(check(str(k)) for k in value)


def _port_key(key: str) -> bool:
    return key.isdigit() and 0 < int(key) <= 65535


def _port_level_needs_selector(spec: Any) -> bool:
    if not _has(spec, "portLevelMtls"):
        return True
    selector = spec.get("selector")
    return _has(selector, "matchLabels") and bool(selector["matchLabels"])


def _one_target_at_most(spec: Any) -> bool:
    return (
        not isinstance(spec, Mapping)
        or sum(key in spec for key in ("selector", "targetRef", "targetRefs")) <= 1
    )


def _service_accounts_alone(source: Any) -> bool:
    if not _has(source, "serviceAccounts", "notServiceAccounts"):
        return True
    return not _has(source, "principals", "notPrincipals", "namespaces", "notNamespaces")


_SELECTOR_OR_TARGET_RULE = (
    "(has(self.selector) ? 1 : 0) + (has(self.targetRef) ? 1 : 0) + "
    "(has(self.targetRefs) ? 1 : 0) <= 1"
)
_SERVICE_ACCOUNTS_RULE = (
    "(has(self.serviceAccounts) || has(self.notServiceAccounts)) ? (!has(self.principals) && "
    "!has(self.notPrincipals) && !has(self.namespaces) && !has(self.notNamespaces)) : true"
)
_PORT_LEVEL_MTLS_RULE = (
    "has(self.portLevelMtls) ? (((has(self.selector) && has(self.selector.matchLabels)) ? "
    "self.selector.matchLabels : {}).size() > 0) : true"
)
_CEL_CHECKS: dict[str, Callable[[Any], bool]] = {
    '!self.contains("*")': lambda value: not isinstance(value, str) or "*" not in value,
    'self.all(key, !key.contains("*"))': _all_keys(lambda key: "*" not in key),
    "self.all(key, key.size() != 0)": _all_keys(lambda key: key != ""),
    "self.all(key, 0 < int(key) && int(key) <= 65535)": _all_keys(_port_key),
    "self.size() == 0": lambda value: not isinstance(value, str | list | Mapping) or not value,
    _SELECTOR_OR_TARGET_RULE: _one_target_at_most,
    _SERVICE_ACCOUNTS_RULE: _service_accounts_alone,
    _PORT_LEVEL_MTLS_RULE: _port_level_needs_selector,
}


def _is_base64(value: object) -> bool:
    if not isinstance(value, str):
        return True
    try:
        base64.b64decode(value, validate=True)
    except binascii.Error:
        return False
    return True


def _fits(bits: int) -> Callable[[object], bool]:
    limit = 2 ** (bits - 1)
    return lambda value: not isinstance(value, int) or -limit <= value < limit


_FORMATS = FormatChecker(formats=())
_FORMATS.checks("int32")(_fits(32))
_FORMATS.checks("int64")(_fits(64))
_FORMATS.checks("byte")(_is_base64)

_KubernetesValidator: Any = extend(  # type: ignore[no-untyped-call]
    Draft4Validator,  # OpenAPI v3.0 schemas follow draft 4's keywords
    validators={
        "type": _nullable_type,
        "x-kubernetes-int-or-string": _int_or_string,
        "x-kubernetes-validations": _cel_rules,
        "x-orch-duration": _marked_duration,
    },
)


# -- checks the schemas cannot express ----------------------------------------------------


def _virtual_service_problems(spec: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    for protocol in ("http", "tcp", "tls"):
        for index, entry in enumerate(_list(spec.get(protocol))):
            route = _list(_get(entry, "route"))
            yield from _weight_problems(route, ["spec", protocol, index, "route"])
    for index, entry in enumerate(_list(spec.get("http"))):
        retry_on = _get(_get(entry, "retries"), "retryOn")
        if isinstance(retry_on, str):
            yield from _retry_on_problems(retry_on, ["spec", "http", index, "retries", "retryOn"])


def _weight_problems(route: list[Any], path: list[str | int]) -> Iterator[tuple[str, str]]:
    if len(route) < 2:
        return  # a lone destination takes all traffic whatever its weight
    weights = [_get(destination, "weight") for destination in route]
    total = sum(w for w in weights if isinstance(w, int))
    if total != 100:
        yield _json_path(path), f"destination weights add up to {total}, not 100"


def _retry_on_problems(retry_on: str, path: list[str | int]) -> Iterator[tuple[str, str]]:
    for token in (part.strip() for part in retry_on.split(",")):
        status_code = token.isdigit() and 100 <= int(token) <= 599
        if not status_code and token not in _RETRY_POLICIES:
            yield _json_path(path), f"{token!r} is neither a retry policy nor an HTTP status"


def _destination_rule_problems(spec: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    seen: set[str] = set()
    for index, subset in enumerate(_list(spec.get("subsets"))):
        name = _get(subset, "name")
        path: list[str | int] = ["spec", "subsets", index, "name"]
        if not (isinstance(name, str) and _DNS_LABEL.fullmatch(name)):
            yield _json_path(path), f"{name!r} is not a DNS-1123 label"
        elif name in seen:
            yield _json_path(path), f"subset {name!r} is defined twice"
        seen.add(str(name))
        yield from _label_problems(_get(subset, "labels"), ["spec", "subsets", index, "labels"])


def _selector_problems(spec: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    labels = _get(spec.get("selector"), "matchLabels")
    yield from _label_problems(labels, ["spec", "selector", "matchLabels"])


# The lists of a rule's source and operation in which Istio's webhook refuses "".
_RULE_LISTS = {
    ("from", "source"): (
        "principals", "notPrincipals", "requestPrincipals", "notRequestPrincipals",
        "namespaces", "notNamespaces", "ipBlocks", "notIpBlocks", "remoteIpBlocks",
        "notRemoteIpBlocks",
    ),
    ("to", "operation"): (
        "hosts", "notHosts", "ports", "notPorts", "methods", "notMethods", "paths", "notPaths",
    ),
}  # fmt: skip
_PATH_LISTS = frozenset({"paths", "notPaths"})
_MATCH_ONE, _MATCH_ANY = "{*}", "{**}"
# RFC 3986's pchar, which Envoy requires of the literal segments of a path template.
_PATH_LITERAL = re.compile(r"[a-zA-Z0-9\-._~%!$&'()+,;:@=]+")


def _authorization_problems(spec: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    yield from _selector_problems(spec)
    for index, rule in enumerate(_list(spec.get("rules"))):
        for (side, part), keys in _RULE_LISTS.items():
            for position, entry in enumerate(_list(_get(rule, side))):
                path: list[str | int] = ["spec", "rules", index, side, position, part]
                for key in keys:
                    for item, value in enumerate(_list(_get(_get(entry, part), key))):
                        problem = _rule_value_problem(key, value)
                        if problem:
                            yield _json_path([*path, key, item]), problem


def _rule_value_problem(key: str, value: Any) -> str | None:
    if value == "":
        return "empty value not allowed"
    if key in _PATH_LISTS and isinstance(value, str):
        return _path_template_problem(value)
    return None


def _path_template_problem(path: str) -> str | None:
    """What Istio's webhook refuses in a path: '{' or '}' beyond the {*} and {**}
    templates, {**} before the last template, and in a templated path a segment that is
    no literal."""
    templated = _MATCH_ONE in path or _MATCH_ANY in path
    matched_any = False
    for segment in path.strip("/").split("/"):
        if segment in (_MATCH_ONE, _MATCH_ANY):
            if matched_any:
                return f"{path!r}: {{**}} must be the last template operator"
            matched_any = segment == _MATCH_ANY
        elif "{" in segment or "}" in segment:
            return f"{path!r} holds '{{' or '}}' beyond a supported path template"
        elif templated and not _PATH_LITERAL.fullmatch(segment):
            return f"{path!r}: segment {segment!r} is not a valid literal of a path template"
    return None


_KIND_CHECKS: dict[str, Callable[[Mapping[str, Any]], Iterator[tuple[str, str]]]] = {
    "VirtualService": _virtual_service_problems,
    "DestinationRule": _destination_rule_problems,
    "PeerAuthentication": _selector_problems,
    "AuthorizationPolicy": _authorization_problems,
}


def _dangling_subsets(documents: Sequence[Any]) -> list[str]:
    """Subsets a VirtualService routes to that no DestinationRule for the host defines."""
    defined: dict[str, set[str]] = {}
    for document in _of_kind(documents, "DestinationRule"):
        spec, namespace = document["spec"], _namespace(document)
        names = {_get(s, "name") for s in _list(spec.get("subsets"))}
        host = _qualified_host(spec.get("host"), namespace)
        defined.setdefault(host, set()).update(n for n in names if isinstance(n, str))
    problems = []
    for index, document in enumerate(documents):
        if not _of_kind([document], "VirtualService"):
            continue
        for path, destination in _routed_destinations(document["spec"]):
            subset = _get(destination, "subset")
            host = _qualified_host(_get(destination, "host"), _namespace(document))
            if subset is not None and subset not in defined.get(host, set()):
                problems.append(
                    f"{_title(index, document)}: {_json_path([*path, 'subset'])}: "
                    f"no DestinationRule for {host} defines subset {subset!r}"
                )
    return problems


def _routed_destinations(spec: Mapping[str, Any]) -> Iterator[tuple[list[str | int], Any]]:
    for protocol in ("http", "tcp", "tls"):
        for index, entry in enumerate(_list(spec.get(protocol))):
            for position, route in enumerate(_list(_get(entry, "route"))):
                yield (
                    ["spec", protocol, index, "route", position, "destination"],
                    _get(route, "destination"),
                )
    for index, entry in enumerate(_list(spec.get("http"))):
        if _get(entry, "mirror") is not None:
            yield ["spec", "http", index, "mirror"], _get(entry, "mirror")
        for position, mirror in enumerate(_list(_get(entry, "mirrors"))):
            yield (
                ["spec", "http", index, "mirrors", position, "destination"],
                _get(mirror, "destination"),
            )


def _of_kind(documents: Sequence[Any], kind: str) -> list[Mapping[str, Any]]:
    return [
        d
        for d in documents
        if isinstance(d, Mapping) and d.get("kind") == kind and isinstance(d.get("spec"), Mapping)
    ]


def _namespace(document: Mapping[str, Any]) -> str:
    namespace = _get(document.get("metadata"), "namespace")
    return namespace if isinstance(namespace, str) else "default"


def _qualified_host(host: Any, namespace: str) -> str:
    # Istio reads a short host name relative to the namespace of the rule naming it.
    text = str(host)
    return text if "." in text else f"{text}.{namespace}.svc.{TRUST_DOMAIN}"


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _get(value: Any, key: str) -> Any:
    return value.get(key) if isinstance(value, Mapping) else None
