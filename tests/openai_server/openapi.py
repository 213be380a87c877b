"""
The OpenAPI description, loaded once: route matching and a loose request validator.

The validator checks what a client most often gets wrong, not all of JSON Schema: ``$ref``; ``allOf``
(merged into one object schema); ``anyOf``/``oneOf`` (a value passes if it fits any branch); ``type``
and ``nullable``; ``enum``/``const``; ``required``; ``additionalProperties`` (``false`` rejects unknown
keys, a schema checks map values); ``minimum``/``maximum`` (also exclusive); ``minLength``/``maxLength``;
``minItems``/``maxItems``; ``items``. It recurses into nested objects and arrays up to ``MAX_DEPTH``
levels. ``pattern``, ``format``, ``not``, ``discriminator`` and ``uniqueItems`` are ignored.

Loading the 3 MB YAML takes one to four seconds, so the parsed paths and schemas (without descriptions
and examples) can be cached as JSON, keyed by the YAML file's SHA-256.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["MAX_DEPTH", "ApiDescription", "Problem", "Route", "load_description"]

MAX_DEPTH = 8
"""Nesting levels the validator descends into (the body's top level is 0)."""

_DROP = frozenset({"description", "x-oaiMeta", "example", "examples", "title", "summary", "x-oaiTypeLabel"})
_JSON_TYPES = {
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "a boolean",
    "array": "an array",
    "object": "an object",
    "null": "null",
}


@dataclass(frozen=True)
class Problem:
    """
    What is wrong with a request, as OpenAI's error body states it.
    """

    message: str
    param: str | None
    code: str | None
    kind: str = "other"
    """``missing``, ``type``, ``enum``, ``unknown``, ``range`` or ``other``: used to pick among branches."""
    allowed: tuple[str, ...] = field(default=(), compare=False)
    """For ``type`` and ``enum`` problems: what would have been accepted."""


@dataclass(frozen=True)
class Route:
    """
    One path template of the description with its operations.
    """

    template: str
    pattern: re.Pattern[str]
    operations: dict[str, Any]


def _strip(node: Any) -> Any:
    if isinstance(node, dict):
        return {str(k): _strip(v) for k, v in node.items() if k not in _DROP}
    if isinstance(node, list):
        return [_strip(v) for v in node]
    if isinstance(node, str | int | float | bool) or node is None:
        return node
    return str(node)  # datetime.date values from YAML


def _read_yaml(path: Path) -> dict[str, Any]:
    import yaml  # type: ignore[import-untyped]  # dev extra; only mypy on llmrec/ is enforced

    with path.open("rb") as f:
        doc = yaml.load(f, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    return {"paths": _strip(doc["paths"]), "schemas": _strip(doc["components"]["schemas"])}


def load_description(path: Path, cache: Path | None = None) -> ApiDescription:
    """
    Parse the OpenAPI file (or its JSON cache when the YAML's hash matches).

    Args:
        path: the ``openapi.yaml`` file.
        cache: a JSON file to read the parsed description from, or to write it to.

    Returns:
        The description, ready to match routes and validate bodies.
    """
    raw = path.read_bytes()
    digest = hashlib.sha256(raw).hexdigest()
    if cache is not None and cache.exists():
        try:
            cached = json.loads(cache.read_text(encoding="utf-8"))
            if cached.get("sha256") == digest:
                return ApiDescription(cached["paths"], cached["schemas"])
        except (OSError, ValueError, KeyError):
            pass
    parsed = _read_yaml(path)
    if cache is not None:
        tmp = cache.with_name(f"{cache.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"sha256": digest, **parsed}), encoding="utf-8")
        os.replace(tmp, cache)
    return ApiDescription(parsed["paths"], parsed["schemas"])


def _type_of(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _fits_type(value: Any, expected: str) -> bool:
    actual = _type_of(value)
    if expected == actual:
        return True
    if expected == "number" and actual == "integer":
        return True
    return expected == "integer" and isinstance(value, float) and value.is_integer()


def _join(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


def _quote(values: tuple[str, ...]) -> str:
    return ", ".join(f"'{v}'" for v in values)


class ApiDescription:
    """
    Paths and component schemas of the description.
    """

    def __init__(self, paths: dict[str, Any], schemas: dict[str, Any]) -> None:
        self.schemas = schemas
        # id(schema) -> (schema, result): the schema is kept, so its id cannot be reused meanwhile
        self._resolved: dict[int, tuple[Any, dict[str, Any]]] = {}
        self._merges: dict[int, tuple[Any, dict[str, Any]]] = {}
        self.routes: list[Route] = []
        for template, operations in paths.items():
            regex = re.sub(r"\\\{[^}]+\\\}", "([^/]+)", re.escape(template))
            self.routes.append(Route(template, re.compile(f"^{regex}$"), operations))
        # literal templates first, so /files/{file_id} never shadows a fixed path
        self.routes.sort(key=lambda r: r.template.count("{"))

    def match(self, path: str) -> Route | None:
        """
        The route whose template matches a path below ``/v1`` (for example ``/fine_tuning/jobs``).
        """
        for route in self.routes:
            if route.pattern.match(path):
                return route
        return None

    def resolve(self, schema: Any) -> dict[str, Any]:
        """
        Follow ``$ref`` links to the schema they name.
        """
        hit = self._resolved.get(id(schema))
        if hit is not None and hit[0] is schema:
            return hit[1]
        original = schema
        seen = 0
        while isinstance(schema, dict) and "$ref" in schema and seen < 32:
            nullable = schema.get("nullable")
            schema = self.schemas[schema["$ref"].rsplit("/", 1)[-1]]
            if nullable and isinstance(schema, dict) and not schema.get("nullable"):
                schema = {**schema, "nullable": True}
            seen += 1
        result = schema if isinstance(schema, dict) else {}
        self._resolved[id(original)] = (original, result)
        return result

    def body_schema(self, operation: dict[str, Any], content_type: str) -> dict[str, Any] | None:
        """
        The request body schema for a content type, or None when the operation takes no such body.
        """
        content = operation.get("requestBody", {}).get("content", {})
        entry = content.get(content_type)
        if entry is None:
            return None
        return self.resolve(entry.get("schema", {}))

    def _merged(self, schema: dict[str, Any]) -> dict[str, Any]:
        hit = self._merges.get(id(schema))
        if hit is not None and hit[0] is schema:
            return hit[1]
        result = self._merge(schema)
        self._merges[id(schema)] = (schema, result)
        return result

    def _merge(self, schema: dict[str, Any]) -> dict[str, Any]:
        # allOf branches of object schemas become one object schema (properties, required united)
        schema = self.resolve(schema)
        if "allOf" not in schema:
            return schema
        merged: dict[str, Any] = {k: v for k, v in schema.items() if k != "allOf"}
        props: dict[str, Any] = dict(merged.get("properties", {}))
        required: list[str] = list(merged.get("required", []))
        closed = merged.get("additionalProperties") is False
        for branch in schema["allOf"]:
            part = self._merged(branch)
            for key, sub in part.get("properties", {}).items():
                props.setdefault(key, sub)
            required.extend(part.get("required", []))
            closed = closed or part.get("additionalProperties") is False
            for key in ("type", "anyOf", "oneOf", "nullable"):
                if key in part and key not in merged:
                    merged[key] = part[key]
        merged["properties"] = props
        merged["required"] = required
        if closed:
            merged["additionalProperties"] = False
        return merged

    def check(self, value: Any, schema: Any, path: str = "", depth: int = 0) -> Problem | None:
        """
        The first problem of a value against a schema, or None when it fits.

        Args:
            value: the decoded JSON value.
            schema: a schema or ``$ref``.
            path: the value's parameter name in messages (``messages[0].role``).
            depth: the nesting level of the value.
        """
        if depth > MAX_DEPTH:
            return None
        s = self._merged(schema)
        if value is None and (s.get("nullable") or s.get("type") == "null"):
            return None
        branches = s.get("anyOf") or s.get("oneOf")
        if branches:
            problem = self._check_branches(value, branches, path, depth)
            if problem is not None:
                return problem
        return self._check_plain(value, s, path, depth)

    def _check_branches(self, value: Any, branches: list[Any], path: str, depth: int) -> Problem | None:
        problems: list[Problem] = []
        for branch in branches:
            problem = self.check(value, branch, path, depth)
            if problem is None:
                return None
            problems.append(problem)
        here = [p for p in problems if p.param == (path or None) and p.kind in ("type", "enum")]
        if len(here) == len(problems):
            # no branch got past the value itself: say what any branch would have taken
            allowed: list[str] = []
            for p in here:
                allowed.extend(a for a in p.allowed if a not in allowed)
            if all(p.kind == "enum" for p in here):
                return Problem(
                    f"Invalid value: {json.dumps(value)}. Supported values are: {_quote(tuple(allowed))}.",
                    path or None,
                    "invalid_value",
                    "enum",
                    tuple(allowed),
                )
            return Problem(
                f"Invalid type for '{path}': expected one of {', '.join(allowed)}, "
                f"but got {_JSON_TYPES[_type_of(value)]} instead.",
                path or None,
                "invalid_type",
                "type",
                tuple(allowed),
            )

        # the branch that got furthest: not a type miss at this level, not a discriminator miss, deepest
        def rank(p: Problem) -> tuple[int, int, int]:
            return (p not in here, p.kind != "enum", len(p.param or ""))

        best = max(problems, key=rank)
        if best.kind != "enum":
            return best
        # every branch stopped at the same discriminator (a message's role): list what all of them take
        allowed = []
        for p in problems:
            if p.kind == "enum" and p.param == best.param:
                allowed.extend(a for a in p.allowed if a not in allowed)
        value_text = best.message.split(". Supported", 1)[0]
        return Problem(
            f"{value_text}. Supported values are: {_quote(tuple(allowed))}.",
            best.param,
            best.code,
            "enum",
            tuple(allowed),
        )

    def _check_plain(self, value: Any, s: dict[str, Any], path: str, depth: int) -> Problem | None:
        param = path or None
        expected = s.get("type")
        if isinstance(expected, str):
            expected = [expected]
        if s.get("nullable") and expected:
            expected = [*expected, "null"]
        if expected and not any(_fits_type(value, t) for t in expected):
            words = tuple(_JSON_TYPES.get(t, t) for t in expected)
            return Problem(
                f"Invalid type for '{path}': expected {' or '.join(words)}, "
                f"but got {_JSON_TYPES[_type_of(value)]} instead.",
                param,
                "invalid_type",
                "type",
                words,
            )
        allowed = s.get("enum")
        if allowed is None and "const" in s:
            allowed = [s["const"]]
        if allowed is not None and value not in allowed and not (value is None and s.get("nullable")):
            names = tuple(str(a) for a in allowed)
            return Problem(
                f"Invalid value: {json.dumps(value)}. Supported values are: {_quote(names)}.",
                param,
                "invalid_value",
                "enum",
                names,
            )
        if isinstance(value, bool) or value is None:
            return None
        if isinstance(value, int | float):
            return self._check_number(value, s, path)
        if isinstance(value, str):
            return self._check_string(value, s, path)
        if isinstance(value, list):
            return self._check_array(value, s, path, depth)
        if isinstance(value, dict):
            return self._check_object(value, s, path, depth)
        return None

    def _check_number(self, value: float, s: dict[str, Any], path: str) -> Problem | None:
        low, high = s.get("minimum"), s.get("maximum")
        ex_low, ex_high = s.get("exclusiveMinimum"), s.get("exclusiveMaximum")
        if isinstance(ex_low, int | float) and not isinstance(ex_low, bool):
            low, ex_low = ex_low, True
        if isinstance(ex_high, int | float) and not isinstance(ex_high, bool):
            high, ex_high = ex_high, True
        if low is not None and (value < low or (ex_low is True and value == low)):
            bound = f"> {low}" if ex_low is True else f">= {low}"
            return Problem(
                f"Invalid '{path}': number below minimum value. Expected a value {bound}, "
                f"but got {value} instead.",
                path or None,
                "invalid_value",
                "range",
            )
        if high is not None and (value > high or (ex_high is True and value == high)):
            bound = f"< {high}" if ex_high is True else f"<= {high}"
            return Problem(
                f"Invalid '{path}': number above maximum value. Expected a value {bound}, "
                f"but got {value} instead.",
                path or None,
                "invalid_value",
                "range",
            )
        return None

    def _check_string(self, value: str, s: dict[str, Any], path: str) -> Problem | None:
        if "minLength" in s and len(value) < s["minLength"]:
            return Problem(
                f"Invalid '{path}': string too short. Expected a string with minimum length "
                f"{s['minLength']}, but got a string with length {len(value)} instead.",
                path or None,
                "string_below_min_length",
                "range",
            )
        if "maxLength" in s and len(value) > s["maxLength"]:
            return Problem(
                f"Invalid '{path}': string too long. Expected a string with maximum length "
                f"{s['maxLength']}, but got a string with length {len(value)} instead.",
                path or None,
                "string_above_max_length",
                "range",
            )
        return None

    def _check_array(self, value: list[Any], s: dict[str, Any], path: str, depth: int) -> Problem | None:
        if "minItems" in s and len(value) < s["minItems"]:
            what = "empty array" if not value else "array too short"
            return Problem(
                f"Invalid '{path}': {what}. Expected an array with minimum length {s['minItems']}, "
                f"but got an array with length {len(value)} instead.",
                path or None,
                "empty_array" if not value else "array_below_min_length",
                "range",
            )
        if "maxItems" in s and len(value) > s["maxItems"]:
            return Problem(
                f"Invalid '{path}': array too long. Expected an array with maximum length "
                f"{s['maxItems']}, but got an array with length {len(value)} instead.",
                path or None,
                "array_above_max_length",
                "range",
            )
        items = s.get("items")
        if isinstance(items, dict):
            for i, item in enumerate(value):
                problem = self.check(item, items, _join(path, i), depth + 1)
                if problem is not None:
                    return problem
        return None

    def _check_object(
        self, value: dict[str, Any], s: dict[str, Any], path: str, depth: int
    ) -> Problem | None:
        props: dict[str, Any] = s.get("properties", {})
        for key, item in value.items():
            # discriminators (a message's role, a method's type) first, so a union names them
            if key in props and ("enum" in (sub := self.resolve(props[key])) or "const" in sub):
                problem = self._check_plain(item, sub, _join(path, key), depth + 1)
                if problem is not None:
                    return problem
        for key in s.get("required", []):
            if key not in value:
                name = _join(path, key)
                return Problem(
                    f"Missing required parameter: '{name}'.", name, "missing_required_parameter", "missing"
                )
        extra = s.get("additionalProperties")
        for key, item in value.items():
            name = _join(path, key)
            if key in props:
                problem = self.check(item, props[key], name, depth + 1)
            elif extra is False:
                problem = Problem(
                    f"Unrecognized request argument supplied: {name}", name, "unknown_parameter", "unknown"
                )
            elif isinstance(extra, dict):
                problem = self.check(item, extra, name, depth + 1)
            else:
                problem = None
            if problem is not None:
                return problem
        return None

    def check_query(self, operation: dict[str, Any], query: dict[str, list[str]]) -> Problem | None:
        """
        Check query parameters the operation declares (integers must parse, enums must match).
        """
        for parameter in operation.get("parameters", []):
            if parameter.get("in") != "query" or parameter.get("name") not in query:
                continue
            name = parameter["name"]
            schema = self.resolve(parameter.get("schema", {}))
            raw = query[name][-1]
            value: Any = raw
            if schema.get("type") == "integer":
                try:
                    value = int(raw)
                except ValueError:
                    return Problem(
                        f"Invalid type for '{name}': expected an integer, but got '{raw}' instead.",
                        name,
                        "invalid_type",
                        "type",
                    )
            elif schema.get("type") == "object":
                continue  # deepObject parameters are parsed by the endpoint
            problem = self.check(value, schema, name)
            if problem is not None:
                return problem
        return None
