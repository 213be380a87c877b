"""
The HTTP server: routing, validation, modes, faults, rate limits, the request log and the endpoints.

Request handling order: control endpoints; ``/v1`` prefix and API key; the path and method must be in
the OpenAPI description; ``no-finetune``/``no-batch`` modes; fault rules; the rate limiter (chat only,
in ``ratelimit-headers`` mode); body and query validation; the endpoint.
"""

from __future__ import annotations

import base64
import email.parser
import email.policy
import hashlib
import json
import math
import random
import re
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from .chat import PrefixCache, complete_chat, is_reasoning_model
from .formats import (
    BATCH_MAX_BYTES,
    check_batch_lines,
    check_training_lines,
    message_text,
    messages_tokens,
    titles_in,
)
from .limits import FaultRule, RateLimiter, parse_fault
from .openapi import ApiDescription, Problem
from .store import Store, new_id, public
from .training import StepMetrics, resolve_hyperparameters, simulate_training, step_metrics_csv

__all__ = ["BATCH_CHUNK", "DEFAULT_MODES", "KNOWN_MODES", "Config", "OpenAIServer", "make_server"]

KNOWN_MODES = (
    "strict-method",
    "no-json-schema",
    "no-seed",
    "no-finetune",
    "no-batch",
    "ratelimit-headers",
    "shutdown-dates",
    "plain-result-files",
    "logprobs",
    "no-logprobs",
)
DEFAULT_MODES = ("strict-method",)
ORGANIZATION = "org-llmrectest"
ORG_NAME = "personal"

# snapshot -> (aliases, supervised fine-tuning allowed)
BASE_MODELS: dict[str, tuple[tuple[str, ...], bool]] = {
    "gpt-4o-mini-2024-07-18": (("gpt-4o-mini",), True),
    "gpt-4o-2024-08-06": (("gpt-4o",), True),
    "gpt-4.1-2025-04-14": (("gpt-4.1",), True),
    "gpt-4.1-mini-2025-04-14": (("gpt-4.1-mini",), True),
    "gpt-4.1-nano-2025-04-14": (("gpt-4.1-nano",), True),
    "gpt-3.5-turbo-0125": (("gpt-3.5-turbo",), True),
    "o3-mini-2025-01-31": (("o3-mini",), False),
    "o4-mini-2025-04-16": (("o4-mini",), False),
    "gpt-5-mini-2025-08-07": (("gpt-5-mini",), False),
    "gpt-5-2025-08-07": (("gpt-5",), False),
}
_JOB_PHASES = ("validating_files", "queued", "running", "succeeded")
_BATCH_PHASES = ("validating", "in_progress", "finalizing", "completed")
_TERMINAL_JOB = frozenset({"succeeded", "failed", "cancelled"})
_TERMINAL_BATCH = frozenset({"completed", "failed", "expired", "cancelled"})
BATCH_CHUNK = 2000
"""Request lines a batch answers per poll while in progress (``--batch-chunk``)."""


@dataclass
class Config:
    """
    What the command line (and ``/_control``) set; ``modes`` and ``faults`` may change at runtime.
    """

    modes: set[str] = field(default_factory=lambda: set(DEFAULT_MODES))
    latency_s: float = 0.0
    faults: list[FaultRule] = field(default_factory=list)
    rpm_limit: int = 500
    tpm_limit: int = 200_000
    ratelimit_window_s: float = 60.0
    job_polls: int = 1
    batch_polls: int = 1
    batch_chunk: int = BATCH_CHUNK
    min_examples: int = 10
    shutdown_date: str = "2027-01-14"
    extra_models: tuple[str, ...] = ()
    api_key: str | None = None
    verbose: bool = False

    def set_modes(self, modes: list[str]) -> None:
        """
        Replace the modes; ``latency=<s>`` sets the chat latency, ``-name`` removes a default mode.
        """
        chosen = set(DEFAULT_MODES)
        latency = 0.0
        for mode in modes:
            if mode.startswith("latency="):
                latency = float(mode.partition("=")[2])
                continue
            name = mode.lstrip("-")
            if name not in KNOWN_MODES:
                msg = f"unknown mode {mode!r} (expected one of {', '.join(KNOWN_MODES)}, latency=<s>)"
                raise ValueError(msg)
            if mode.startswith("-"):
                chosen.discard(name)
            else:
                chosen.add(name)
        self.modes = chosen
        self.latency_s = latency

    def describe(self) -> dict[str, Any]:
        """
        Modes and fault rules as ``GET /_control/modes`` shows them.
        """
        return {
            "modes": sorted(self.modes),
            "latency_s": self.latency_s,
            "faults": [{"rule": f.text, "matched": f.matched, "fired": f.fired} for f in self.faults],
        }


class ApiError(Exception):
    """
    An error answered in OpenAI's shape: ``{"error": {"message", "type", "param", "code"}}``.
    """

    def __init__(
        self,
        status: int,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        type_: str = "invalid_request_error",
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code
        self.type = type_
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        """
        The JSON error body.
        """
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


def _problem_error(problem: Problem) -> ApiError:
    return ApiError(400, problem.message, param=problem.param, code=problem.code)


@dataclass
class Reply:
    """
    An answer: status, JSON (or raw bytes) and extra headers.
    """

    status: int = 200
    payload: Any = None
    raw: bytes | None = None
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Call:
    """
    One request as the endpoints see it.
    """

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    raw: bytes
    body: Any = None
    params: tuple[str, ...] = ()
    record: dict[str, Any] = field(default_factory=dict)


def _parse_multipart(content_type: str, raw: bytes) -> list[tuple[str, str | None, bytes]]:
    # hand-rolled: exact bytes, no deprecated cgi module
    header = email.parser.HeaderParser(policy=email.policy.HTTP).parsestr(
        f"Content-Type: {content_type}\r\n\r\n"
    )
    boundary = header.get_param("boundary")
    if not isinstance(boundary, str) or not boundary:
        msg = "multipart body without a boundary"
        raise ValueError(msg)
    delimiter = b"--" + boundary.encode("latin-1")
    parts: list[tuple[str, str | None, bytes]] = []
    chunks = raw.split(delimiter)
    for chunk in chunks[1:]:
        if chunk.startswith(b"--"):
            break
        chunk = chunk.removeprefix(b"\r\n")
        head, sep, data = chunk.partition(b"\r\n\r\n")
        if not sep:
            msg = "multipart part without headers"
            raise ValueError(msg)
        data = data.removesuffix(b"\r\n")
        headers = email.parser.HeaderParser(policy=email.policy.HTTP).parsestr(
            head.decode("utf-8") + "\r\n\r\n"
        )
        name = headers.get_param("name", header="content-disposition")
        filename = headers.get_param("filename", header="content-disposition")
        if not isinstance(name, str):
            msg = "multipart part without a name"
            raise ValueError(msg)
        parts.append((name, filename if isinstance(filename, str) else None, data))
    return parts


def _nest(fields: dict[str, Any], key: str, value: Any) -> None:
    # form keys such as expires_after[anchor] become nested objects
    names = re.findall(r"[^\[\]]+", key)
    target = fields
    for name in names[:-1]:
        target = target.setdefault(name, {})
    if value.isdigit() if isinstance(value, str) else False:
        value = int(value)
    target[names[-1] if names else key] = value


def _deep_object(query: dict[str, list[str]], name: str) -> dict[str, str] | None:
    found = {}
    for key, values in query.items():
        m = re.fullmatch(rf"{re.escape(name)}\[([^\]]*)\]", key)
        if m:
            found[m.group(1)] = values[-1]
    return found or None


def _page(items: list[dict[str, Any]], query: dict[str, list[str]], default_limit: int) -> dict[str, Any]:
    after = query.get("after", [None])[-1]
    limit = int(query.get("limit", [default_limit])[-1])
    if after is not None:
        ids = [i["id"] for i in items]
        items = items[ids.index(after) + 1 :] if after in ids else []
    page = items[:limit]
    return {
        "object": "list",
        "data": [public(i) for i in page],
        "has_more": len(items) > limit,
        "first_id": page[0]["id"] if page else None,
        "last_id": page[-1]["id"] if page else None,
    }


def _require(body: Any, *keys: str) -> dict[str, Any]:
    # the endpoints' own minimum, for when there is no description to validate against
    if not isinstance(body, dict):
        raise ApiError(400, "The request body must be a JSON object.")
    for key in keys:
        if key not in body:
            raise ApiError(
                400, f"Missing required parameter: '{key}'.", param=key, code="missing_required_parameter"
            )
    return body


def _batch_view(batch: dict[str, Any]) -> dict[str, Any]:
    # the Batch schema types errors, file ids and timestamps as non-null: leave unset ones out
    return {k: v for k, v in public(batch).items() if v is not None or k == "metadata"}


def _check_metadata(metadata: Any) -> None:
    if not isinstance(metadata, dict):
        return
    if len(metadata) > 16:
        raise ApiError(
            400, "Invalid 'metadata': too many keys (at most 16).", param="metadata", code="invalid_value"
        )
    for key, value in metadata.items():
        if len(key) > 64 or (isinstance(value, str) and len(value) > 512):
            raise ApiError(
                400,
                f"Invalid 'metadata.{key}': keys are at most 64 characters and values at most 512.",
                param=f"metadata.{key}",
                code="invalid_value",
            )


class OpenAIServer:
    """
    The application: state, configuration and the endpoints, independent of the HTTP plumbing.
    """

    def __init__(self, store: Store, config: Config, spec: ApiDescription | None, log_path: Path) -> None:
        self.store = store
        self.config = config
        self.spec = spec
        self.cache = PrefixCache()
        self.limiter = RateLimiter(config.rpm_limit, config.tpm_limit, config.ratelimit_window_s)
        self._seen: set[str] = set()
        self._answered: dict[str, int] = {}
        self._seen_lock = threading.Lock()
        self._log = log_path.open("a", encoding="utf-8")
        self._log_lock = threading.Lock()
        self._routes: list[tuple[str, re.Pattern[str], Callable[[Call], Reply]]] = []
        for method, template, handler in self._endpoints():
            regex = re.sub(r"\\\{[^}]+\\\}", "([^/]+)", re.escape(template))
            self._routes.append((method, re.compile(f"^{regex}$"), handler))

    def _endpoints(self) -> list[tuple[str, str, Callable[[Call], Reply]]]:
        return [
            ("GET", "/models", self.list_models),
            ("GET", "/models/{model}", self.get_model),
            ("DELETE", "/models/{model}", self.delete_model),
            ("POST", "/files", self.create_file),
            ("GET", "/files", self.list_files),
            ("GET", "/files/{file_id}", self.get_file),
            ("DELETE", "/files/{file_id}", self.delete_file),
            ("GET", "/files/{file_id}/content", self.file_content),
            ("POST", "/fine_tuning/jobs", self.create_job),
            ("GET", "/fine_tuning/jobs", self.list_jobs),
            ("GET", "/fine_tuning/jobs/{fine_tuning_job_id}", self.get_job),
            ("POST", "/fine_tuning/jobs/{fine_tuning_job_id}/cancel", self.cancel_job),
            ("GET", "/fine_tuning/jobs/{fine_tuning_job_id}/events", self.list_events),
            ("GET", "/fine_tuning/jobs/{fine_tuning_job_id}/checkpoints", self.list_checkpoints),
            ("POST", "/batches", self.create_batch),
            ("GET", "/batches", self.list_batches),
            ("GET", "/batches/{batch_id}", self.get_batch),
            ("POST", "/batches/{batch_id}/cancel", self.cancel_batch),
            ("POST", "/chat/completions", self.chat),
        ]

    # ---- plumbing -------------------------------------------------------------------------------

    def log(self, record: dict[str, Any]) -> None:
        """
        Append one request record to ``requests.jsonl`` and flush it.
        """
        line = json.dumps(record, ensure_ascii=False, default=str)
        with self._log_lock:
            self._log.write(line + "\n")
            self._log.flush()

    def _first_attempt(self, key: str) -> bool:
        with self._seen_lock:
            if key in self._seen:
                return False
            self._seen.add(key)
            return True

    def handle(self, call: Call) -> Reply:
        """
        Answer one request (errors become OpenAI-style error replies).
        """
        try:
            reply = self._handle(call)
        except ApiError as err:
            call.record["error_code"] = err.code
            reply = Reply(err.status, err.body(), headers=err.headers)
        if call.method == "GET" and reply.status < 400 and not call.record.get("fault"):
            with self._seen_lock:
                self._answered[call.path] = self._answered.get(call.path, 0) + 1
        return reply

    def _handle(self, call: Call) -> Reply:
        if call.path.startswith("/_control/"):
            return self.control(call)
        if not call.path.startswith("/v1/"):
            raise ApiError(404, f"Invalid URL ({call.method} {call.path})")
        sub = call.path[3:]
        self._authorize(call)
        operation = self._operation(call, sub)
        modes = self.config.modes
        if ("no-finetune" in modes and sub.startswith(("/files", "/fine_tuning"))) or (
            "no-batch" in modes and sub.startswith("/batches")
        ):
            raise ApiError(404, f"Invalid URL ({call.method} {call.path})")
        body_hash = hashlib.sha256(call.raw).hexdigest()
        call.record["body_sha256"] = body_hash
        # a GET is the same request again until it has been answered once: each poll is a new one
        generation = self._answered.get(call.path, 0) if call.method == "GET" else 0
        first = self._first_attempt(
            f"{call.method} {call.path}?{sorted(call.query.items())} {body_hash} {generation}"
        )
        call.record["first_attempt"] = first
        self._decode(call, sub)
        fault = self._fault(call, first)
        if fault is not None:
            return fault
        limits = self._admit(call) if sub == "/chat/completions" and "ratelimit-headers" in modes else {}
        reply = self._dispatch(call, sub, operation)
        reply.headers.update(limits)
        return reply

    def _authorize(self, call: Call) -> None:
        auth = call.headers.get("authorization", "")
        if not auth.startswith("Bearer ") or not auth[7:].strip():
            raise ApiError(
                401,
                "You didn't provide an API key. You need to provide your API key in an Authorization header "
                "using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
            )
        if self.config.api_key is not None and auth[7:].strip() != self.config.api_key:
            raise ApiError(401, "Incorrect API key provided.", code="invalid_api_key")

    def _operation(self, call: Call, sub: str) -> dict[str, Any] | None:
        if self.spec is None:
            return None
        route = self.spec.match(sub)
        if route is None or call.method.lower() not in route.operations:
            raise ApiError(404, f"Invalid URL ({call.method} {call.path})")
        operation: dict[str, Any] = route.operations[call.method.lower()]
        return operation

    def _fault(self, call: Call, first: bool) -> Reply | None:
        if not first:
            return None
        for rule in list(self.config.faults):
            if rule.path == "batch" or not rule.fires(call.path):
                continue
            call.record["fault"] = rule.text
            if rule.kind == "timeout":
                time.sleep(rule.sleep)
                return None
            if rule.kind == "malformed":
                return Reply(
                    200, raw=b'{"id": "chatcmpl-broken", "choices": [', content_type="application/json"
                )
            return self._fault_reply(rule)
        return None

    def _fault_reply(self, rule: FaultRule) -> Reply:
        headers: dict[str, str] = {}
        if rule.retry_after is not None:
            headers["retry-after"] = f"{rule.retry_after:g}"
            headers["retry-after-ms"] = str(round(rule.retry_after * 1000))
        if rule.kind == "insufficient_quota":
            err = ApiError(
                429,
                "You exceeded your current quota, please check your plan and billing details.",
                code="insufficient_quota",
                type_="insufficient_quota",
                headers=headers,
            )
        elif rule.status == 429:
            err = ApiError(
                429,
                "Rate limit reached for requests (injected fault). Please try again later.",
                code="rate_limit_exceeded",
                type_="requests",
                headers=headers,
            )
        elif rule.status == 401:
            err = ApiError(401, "Incorrect API key provided (injected fault).", code="invalid_api_key")
        elif rule.status >= 500:
            err = ApiError(
                rule.status,
                "The server had an error while processing your request. Sorry about that! (injected fault)",
                type_="server_error",
                headers=headers,
            )
        else:
            err = ApiError(rule.status, f"Injected fault {rule.status}.", headers=headers)
        return Reply(err.status, err.body(), headers=err.headers)

    def _decode(self, call: Call, sub: str) -> None:
        content_type = call.headers.get("content-type", "")
        if content_type.startswith("multipart/form-data"):
            fields: dict[str, Any] = {}
            uploads: dict[str, tuple[str | None, bytes]] = {}
            try:
                for name, filename, data in _parse_multipart(content_type, call.raw):
                    if filename is not None or name == "file":
                        uploads[name] = (filename, data)
                        fields[name] = "<binary>"
                    else:
                        _nest(fields, name, data.decode("utf-8"))
            except (ValueError, UnicodeDecodeError) as err:
                raise ApiError(400, f"Could not parse the multipart body: {err}.") from err
            call.body = {"fields": fields, "uploads": uploads}
        elif call.raw:
            try:
                call.body = json.loads(call.raw)
            except ValueError as err:
                raise ApiError(
                    400,
                    "We could not parse the JSON body of your request. (HINT: This likely means you aren't "
                    "using your HTTP library correctly. The OpenAI API expects a JSON payload.)",
                ) from err
            if isinstance(call.body, dict):
                for key in ("model", "metadata", "custom_id", "purpose", "suffix"):
                    if key in call.body:
                        call.record[key] = call.body[key]

    def _validate(self, call: Call, operation: dict[str, Any] | None) -> None:
        if self.spec is None or operation is None:
            return
        problem = self.spec.check_query(operation, call.query)
        if problem is not None:
            raise _problem_error(problem)
        content = operation.get("requestBody", {}).get("content", {})
        if not content:
            return
        if "multipart/form-data" in content:
            if not isinstance(call.body, dict) or "fields" not in call.body:
                raise ApiError(400, "This endpoint expects a multipart/form-data body.")
            schema = self.spec.body_schema(operation, "multipart/form-data")
            problem = self.spec.check(call.body["fields"], schema)
        else:
            if call.body is None:
                if operation.get("requestBody", {}).get("required"):
                    raise ApiError(400, "You must provide a JSON request body.")
                return
            schema = self.spec.body_schema(operation, "application/json")
            problem = self.spec.check(call.body, schema)
        if problem is not None:
            raise _problem_error(problem)

    def _admit(self, call: Call) -> dict[str, str]:
        body = call.body if isinstance(call.body, dict) else {}
        messages = [m for m in body.get("messages", []) if isinstance(m, dict)]
        limit = body.get("max_completion_tokens") or body.get("max_tokens") or 0
        tokens = messages_tokens(messages) + (int(limit) if isinstance(limit, int | float) else 0)
        ok, headers, wait = self.limiter.admit(tokens)
        if not ok:
            headers["retry-after-ms"] = str(max(1, round(wait * 1000)))
            headers["retry-after"] = str(max(1, math.ceil(wait)))
            call.record["rate_limited"] = True
            raise ApiError(
                429,
                f"Rate limit reached for requests: limit {self.limiter.requests} requests and "
                f"{self.limiter.tokens} tokens per {self.limiter.window_s:g} s. Please try again in "
                f"{round(wait * 1000)}ms.",
                code="rate_limit_exceeded",
                type_="requests",
                headers=headers,
            )
        return headers

    def _dispatch(self, call: Call, sub: str, operation: dict[str, Any] | None) -> Reply:
        for method, pattern, handler in self._routes:
            m = pattern.match(sub)
            if m and method == call.method:
                self._validate(call, operation)
                call.params = m.groups()
                return handler(call)
        if self.spec is None:
            raise ApiError(404, f"Invalid URL ({call.method} {call.path})")
        raise ApiError(501, f"{call.method} /v1{sub} is in the API but not implemented by this test server.")

    def control(self, call: Call) -> Reply:
        """
        ``GET|POST /_control/modes`` and ``GET|POST /_control/faults``: see and change the behaviour.
        """
        try:
            body = json.loads(call.raw) if call.raw else {}
        except ValueError as err:
            raise ApiError(400, f"The control body is not JSON: {err}.") from err
        if call.path == "/_control/modes":
            if call.method == "POST":
                try:
                    self.config.set_modes(list(body.get("modes", [])))
                except ValueError as err:
                    raise ApiError(400, str(err)) from err
            return Reply(200, self.config.describe())
        if call.path == "/_control/faults":
            if call.method == "POST":
                try:
                    self.config.faults = [parse_fault(t) for t in body.get("faults", [])]
                except ValueError as err:
                    raise ApiError(400, str(err)) from err
            return Reply(200, self.config.describe())
        raise ApiError(404, f"Invalid URL ({call.method} {call.path})")

    # ---- models -------------------------------------------------------------------------------

    def _shutdown(self, model_id: str) -> str | None:
        if "shutdown-dates" in self.config.modes and "gpt-4o-mini" in model_id:
            return self.config.shutdown_date
        return None

    def _model_object(self, model_id: str, created: int, owned_by: str) -> dict[str, Any]:
        obj: dict[str, Any] = {"id": model_id, "object": "model", "created": created, "owned_by": owned_by}
        shutdown = self._shutdown(model_id)
        if shutdown is not None:
            obj["shutdown_date"] = shutdown
        return obj

    def _fine_tuned(self) -> dict[str, dict[str, Any]]:
        # fine-tuned model id (final and checkpoints) -> its job
        models: dict[str, dict[str, Any]] = {}
        for job in self.store.newest_first("jobs"):
            if job["status"] != "succeeded":
                continue
            deleted = set(job.get("_deleted_models", []))
            names = [
                job["fine_tuned_model"],
                *(c["fine_tuned_model_checkpoint"] for c in job["_checkpoints"]),
            ]
            for name in names:
                if name not in deleted:
                    models[name] = job
        return models

    def _all_models(self) -> list[dict[str, Any]]:
        out = []
        for snapshot, (aliases, _) in BASE_MODELS.items():
            for name in (snapshot, *aliases):
                out.append(self._model_object(name, 1_700_000_000, "system"))
        out.extend(self._model_object(name, 1_700_000_000, "system") for name in self.config.extra_models)
        for name, job in self._fine_tuned().items():
            out.append(self._model_object(name, job["finished_at"], ORGANIZATION))
        return out

    def _chat_model(self, name: Any) -> tuple[str, list[str]]:
        # (model id to report, learned titles); ApiError 404 for models that do not exist
        if isinstance(name, str):
            for snapshot, (aliases, _) in BASE_MODELS.items():
                if name == snapshot or name in aliases:
                    return snapshot, []
            if name in self.config.extra_models:
                return name, []
            job = self._fine_tuned().get(name)
            if job is not None:
                return name, list(job.get("_learned", []))
        raise ApiError(
            404,
            f"The model `{name}` does not exist or you do not have access to it.",
            param="model",
            code="model_not_found",
        )

    def list_models(self, call: Call) -> Reply:
        """
        GET /v1/models.
        """
        return Reply(200, {"object": "list", "data": self._all_models()})

    def get_model(self, call: Call) -> Reply:
        """
        GET /v1/models/{model}.
        """
        for model in self._all_models():
            if model["id"] == call.params[0]:
                return Reply(200, model)
        raise ApiError(
            404, f"The model '{call.params[0]}' does not exist", param="model", code="model_not_found"
        )

    def delete_model(self, call: Call) -> Reply:
        """
        DELETE /v1/models/{model}: fine-tuned models only.
        """
        name = call.params[0]
        with self.store.lock:
            job = self._fine_tuned().get(name)
            if job is None:
                raise ApiError(
                    404, f"The model '{name}' does not exist", param="model", code="model_not_found"
                )
            job.setdefault("_deleted_models", []).append(name)
            self.store.save("jobs", job)
        return Reply(200, {"id": name, "object": "model", "deleted": True})

    # ---- files --------------------------------------------------------------------------------

    def create_file(self, call: Call) -> Reply:
        """
        POST /v1/files (multipart/form-data with ``purpose`` and ``file``).
        """
        if not isinstance(call.body, dict) or "uploads" not in call.body:
            raise ApiError(400, "This endpoint expects a multipart/form-data body.")
        fields, uploads = call.body["fields"], call.body["uploads"]
        purpose = fields.get("purpose")
        if purpose is None:
            raise ApiError(
                400,
                "Missing required parameter: 'purpose'.",
                param="purpose",
                code="missing_required_parameter",
            )
        if "file" not in uploads:
            raise ApiError(
                400, "Missing required parameter: 'file'.", param="file", code="missing_required_parameter"
            )
        filename, data = uploads["file"]
        call.record["purpose"] = purpose
        call.record["filename"] = filename
        if purpose in ("fine-tune", "batch") and not str(filename).endswith(".jsonl"):
            raise ApiError(
                400,
                f"Invalid file format for {'Fine-Tuning' if purpose == 'fine-tune' else 'Batch'} API. "
                "Must be .jsonl",
                param="file",
            )
        if purpose == "batch" and len(data) > BATCH_MAX_BYTES:
            raise ApiError(400, "Batch input files may be at most 200 MB.", param="file")
        with self.store.lock:
            obj = self.store.add_file(data, filename=filename or "upload", purpose=purpose)
        return Reply(200, public(obj))

    def _file(self, file_id: str) -> dict[str, Any]:
        obj = self.store.objects["files"].get(file_id)
        if obj is None:
            raise ApiError(404, f"No such File object: {file_id}", param="id")
        return obj

    def list_files(self, call: Call) -> Reply:
        """
        GET /v1/files.
        """
        items = self.store.newest_first("files")
        purpose = call.query.get("purpose", [None])[-1]
        if purpose is not None:
            items = [f for f in items if f["purpose"] == purpose]
        if call.query.get("order", ["desc"])[-1] == "asc":
            items.reverse()
        return Reply(200, _page(items, call.query, 10_000))

    def get_file(self, call: Call) -> Reply:
        """
        GET /v1/files/{file_id}.
        """
        return Reply(200, public(self._file(call.params[0])))

    def delete_file(self, call: Call) -> Reply:
        """
        DELETE /v1/files/{file_id}.
        """
        self._file(call.params[0])
        self.store.delete_file(call.params[0])
        return Reply(200, {"id": call.params[0], "object": "file", "deleted": True})

    def file_content(self, call: Call) -> Reply:
        """
        GET /v1/files/{file_id}/content.
        """
        self._file(call.params[0])
        return Reply(
            200, raw=self.store.file_content(call.params[0]), content_type="application/octet-stream"
        )

    # ---- fine-tuning --------------------------------------------------------------------------

    def _base_for_tuning(self, name: str) -> str:
        for snapshot, (aliases, tunable) in BASE_MODELS.items():
            if name in (snapshot, *aliases) and tunable:
                return snapshot
        job = self._fine_tuned().get(name)
        if job is not None:
            return str(job["_base"])  # continued fine-tuning keeps the original base snapshot
        raise ApiError(
            400,
            f"Model {name} is not available for fine-tuning or does not exist.",
            param="model",
            code="model_not_available",
        )

    def _training_file(self, file_id: Any, param: str) -> None:
        obj = self.store.objects["files"].get(file_id) if isinstance(file_id, str) else None
        if obj is None:
            raise ApiError(400, f"invalid {param}: {file_id}", param=param, code="invalid_file")
        if obj["purpose"] != "fine-tune":
            raise ApiError(
                400,
                f"File {file_id} has purpose {obj['purpose']!r}; fine-tuning needs purpose 'fine-tune'.",
                param=param,
                code="invalid_file_purpose",
            )

    def create_job(self, call: Call) -> Reply:
        """
        POST /v1/fine_tuning/jobs (supervised method only).
        """
        body = _require(call.body, "model", "training_file")
        if "hyperparameters" in body and "strict-method" in self.config.modes:
            raise ApiError(
                400,
                "The top-level 'hyperparameters' parameter is deprecated; pass them in "
                "method.supervised.hyperparameters instead.",
                param="hyperparameters",
                code="deprecated_parameter",
            )
        method = body.get("method") or {"type": "supervised", "supervised": {}}
        if method.get("type") != "supervised":
            raise ApiError(
                400,
                f"Fine-tuning method {method.get('type')!r} is not supported by this test server "
                "(only 'supervised').",
                param="method.type",
                code="unsupported_value",
            )
        requested = dict((method.get("supervised") or {}).get("hyperparameters") or {})
        if "hyperparameters" in body:
            if requested:
                raise ApiError(
                    400,
                    "Give hyperparameters either at the top level or in method, not both.",
                    param="hyperparameters",
                )
            requested = dict(body["hyperparameters"] or {})
        base = self._base_for_tuning(body["model"])
        self._training_file(body["training_file"], "training_file")
        if body.get("validation_file") is not None:
            self._training_file(body["validation_file"], "validation_file")
        _check_metadata(body.get("metadata"))
        shown = {k: requested.get(k, "auto") for k in ("batch_size", "learning_rate_multiplier", "n_epochs")}
        now = int(time.time())
        seed = body.get("seed")
        job: dict[str, Any] = {
            "object": "fine_tuning.job",
            "id": new_id("ftjob-"),
            "model": base if not str(body["model"]).startswith("ft:") else body["model"],
            "created_at": now,
            "finished_at": None,
            "fine_tuned_model": None,
            "organization_id": ORGANIZATION,
            "result_files": [],
            "status": "validating_files",
            "validation_file": body.get("validation_file"),
            "training_file": body["training_file"],
            "hyperparameters": dict(shown),
            "method": {"type": "supervised", "supervised": {"hyperparameters": dict(shown)}},
            "trained_tokens": None,
            "error": None,
            "integrations": body.get("integrations") or [],
            "seed": seed if isinstance(seed, int) else random.randrange(2**31),
            "estimated_finish": None,
            "metadata": body.get("metadata"),
            "suffix": body.get("suffix"),
            "_base": base,
            "_requested": requested,
            "_polls": 0,
            "_events": [],
            "_checkpoints": [],
            "_metrics": [],
            "_emitted": 0,
        }
        self._event(job, f"Created fine-tuning job: {job['id']}")
        self._event(job, f"Validating training file: {job['training_file']}")
        with self.store.lock:
            self.store.save("jobs", job)
        return Reply(200, public(job))

    def _event(self, job: dict[str, Any], message: str, *, level: str = "info", data: Any = None) -> None:
        job["_events"].append(
            {
                "object": "fine_tuning.job.event",
                "id": new_id("ftevent-"),
                "created_at": int(time.time()),
                "level": level,
                "message": message,
                "type": "metrics" if data else "message",
                "data": data or {},
            }
        )

    def _job(self, job_id: str) -> dict[str, Any]:
        job = self.store.objects["jobs"].get(job_id)
        if job is None:
            raise ApiError(
                404, f"Fine-tuning job {job_id} not found.", param="fine_tuning_job_id", code="not_found"
            )
        return job

    def _read_examples(self, file_id: str) -> tuple[list[Any], str | None]:
        text = self.store.file_content(file_id).decode("utf-8", errors="replace")
        examples, problem = check_training_lines(text.splitlines(), min_examples=self.config.min_examples)
        return examples, None if problem is None else problem.message

    def _validate_job(self, job: dict[str, Any]) -> bool:
        train, problem = self._read_examples(job["training_file"])
        valid: list[Any] = []
        if problem is None and job["validation_file"] is not None:
            valid, problem = self._read_examples(job["validation_file"])
            if problem is not None:
                problem = f"validation file: {problem}"
        if problem is not None:
            job["status"] = "failed"
            job["finished_at"] = int(time.time())
            param = "validation_file" if problem.startswith("validation") else "training_file"
            job["error"] = {"code": f"invalid_{param}", "message": problem, "param": param}
            self._event(
                job, f"The job failed due to an invalid {param.replace('_', ' ')}: {problem}", level="error"
            )
            return False
        hp = resolve_hyperparameters(job["_requested"], len(train))
        shown = {
            "batch_size": hp.batch_size,
            "learning_rate_multiplier": hp.learning_rate_multiplier,
            "n_epochs": hp.n_epochs,
        }
        job["hyperparameters"] = dict(shown)
        job["method"]["supervised"]["hyperparameters"] = dict(shown)
        steps = simulate_training(train, valid, hp, job["seed"])
        job["_metrics"] = [
            {
                "step": s.step,
                "train_loss": s.train_loss,
                "train_accuracy": s.train_accuracy,
                "valid_loss": s.valid_loss,
                "valid_accuracy": s.valid_accuracy,
            }
            for s in steps
        ]
        job["_steps_per_epoch"] = max(1, len(steps) // hp.n_epochs)
        job["_trained_tokens"] = hp.n_epochs * sum(messages_tokens(e["messages"]) - 3 for e in train)
        learned: list[str] = []
        for e in train:
            for m in e["messages"]:
                if m["role"] == "assistant":
                    learned.extend(titles_in(m["content"]))
        job["_learned"] = list(dict.fromkeys(learned))[:500]
        self._event(job, "Files validated, moving job to queued state")
        return True

    def _emit_metrics(self, job: dict[str, Any], upto: int) -> None:
        total = len(job["_metrics"])
        for m in job["_metrics"][job["_emitted"] : upto]:
            text = f"Step {m['step']}/{total}: training loss={m['train_loss']:.2f}"
            data = {
                "step": m["step"],
                "train_loss": m["train_loss"],
                "train_mean_token_accuracy": m["train_accuracy"],
                "total_steps": total,
            }
            if m["valid_loss"] is not None:
                text += f", validation loss={m['valid_loss']:.2f}"
                data["valid_loss"] = m["valid_loss"]
                data["valid_mean_token_accuracy"] = m["valid_accuracy"]
            self._event(job, text, data=data)
        job["_emitted"] = max(job["_emitted"], upto)

    def _succeed(self, job: dict[str, Any]) -> None:
        metrics = job["_metrics"]
        self._emit_metrics(job, len(metrics))
        suffix = job.get("suffix") or ""
        tag = new_id("", 8)
        job["fine_tuned_model"] = f"ft:{job['_base']}:{ORG_NAME}:{suffix}:{tag}"
        epochs = int(job["hyperparameters"]["n_epochs"])
        per_epoch = int(job["_steps_per_epoch"])
        now = int(time.time())
        for epoch in range(max(1, epochs - 2), epochs + 1):
            step = min(len(metrics), per_epoch * epoch)
            m = metrics[step - 1]
            name = (
                job["fine_tuned_model"] if epoch == epochs else f"{job['fine_tuned_model']}:ckpt-step-{step}"
            )
            job["_checkpoints"].append(
                {
                    "object": "fine_tuning.job.checkpoint",
                    "id": new_id("ftckpt_"),
                    "created_at": now,
                    "fine_tuned_model_checkpoint": name,
                    "fine_tuning_job_id": job["id"],
                    "step_number": step,
                    "metrics": {
                        key: value
                        for key, value in {
                            "step": float(step),
                            "train_loss": m["train_loss"],
                            "train_mean_token_accuracy": m["train_accuracy"],
                            "valid_loss": m["valid_loss"],
                            "valid_mean_token_accuracy": m["valid_accuracy"],
                            "full_valid_loss": m["valid_loss"],
                            "full_valid_mean_token_accuracy": m["valid_accuracy"],
                        }.items()
                        if value is not None
                    },
                }
            )
            self._event(job, f"Checkpoint created at step {step}")
        csv = step_metrics_csv(
            [
                StepMetrics(
                    m["step"], m["train_loss"], m["train_accuracy"], m["valid_loss"], m["valid_accuracy"]
                )
                for m in metrics
            ]
        ).encode()
        if "plain-result-files" not in self.config.modes:
            csv = base64.b64encode(csv)  # OpenAI serves result files base64-encoded
        result = self.store.add_file(csv, filename="step_metrics.csv", purpose="fine-tune-results")
        job["result_files"] = [result["id"]]
        job["trained_tokens"] = job["_trained_tokens"]
        job["finished_at"] = now
        job["status"] = "succeeded"
        self._event(job, f"New fine-tuned model created: {job['fine_tuned_model']}")
        self._event(job, "The job has successfully completed")

    def _advance_job(self, job: dict[str, Any]) -> None:
        if job["status"] in _TERMINAL_JOB:
            return
        polls = max(1, self.config.job_polls)
        job["_polls"] += 1
        if job["status"] == "running" and job["_polls"] < polls:
            self._emit_metrics(job, len(job["_metrics"]) * job["_polls"] // polls)
        if job["_polls"] < polls:
            return
        job["_polls"] = 0
        status = job["status"]
        if status == "validating_files":
            if self._validate_job(job):
                job["status"] = "queued"
        elif status == "queued":
            job["status"] = "running"
            job["estimated_finish"] = int(time.time()) + 60
            self._event(job, "Fine-tuning job started")
        elif status == "running":
            self._succeed(job)

    def list_jobs(self, call: Call) -> Reply:
        """
        GET /v1/fine_tuning/jobs (``after``, ``limit``, ``metadata[k]=v`` or ``metadata=null``).
        """
        jobs = self.store.newest_first("jobs")
        wanted = _deep_object(call.query, "metadata")
        if wanted is not None:
            jobs = [j for j in jobs if all((j.get("metadata") or {}).get(k) == v for k, v in wanted.items())]
        elif call.query.get("metadata", [None])[-1] == "null":
            jobs = [j for j in jobs if j.get("metadata") is None]
        page = _page(jobs, call.query, 20)
        del page["first_id"], page["last_id"]
        return Reply(200, page)

    def get_job(self, call: Call) -> Reply:
        """
        GET /v1/fine_tuning/jobs/{id}: every call is one poll and may move the job on.
        """
        with self.store.lock:
            job = self._job(call.params[0])
            self._advance_job(job)
            self.store.save("jobs", job)
            return Reply(200, public(job))

    def cancel_job(self, call: Call) -> Reply:
        """
        POST /v1/fine_tuning/jobs/{id}/cancel.
        """
        with self.store.lock:
            job = self._job(call.params[0])
            if job["status"] in _TERMINAL_JOB:
                raise ApiError(
                    400, f"Job has already {'completed' if job['status'] == 'succeeded' else job['status']}."
                )
            job["status"] = "cancelled"
            job["finished_at"] = int(time.time())
            self._event(job, "Job was cancelled")
            self.store.save("jobs", job)
            return Reply(200, public(job))

    def list_events(self, call: Call) -> Reply:
        """
        GET /v1/fine_tuning/jobs/{id}/events: newest first; ``after`` is an event id, older ones follow.
        """
        job = self._job(call.params[0])
        events = list(reversed(job["_events"]))
        page = _page(events, call.query, 20)
        del page["first_id"], page["last_id"]
        return Reply(200, page)

    def list_checkpoints(self, call: Call) -> Reply:
        """
        GET /v1/fine_tuning/jobs/{id}/checkpoints: newest first.
        """
        job = self._job(call.params[0])
        return Reply(200, _page(list(reversed(job["_checkpoints"])), call.query, 10))

    # ---- batches ------------------------------------------------------------------------------

    def create_batch(self, call: Call) -> Reply:
        """
        POST /v1/batches (endpoint /v1/chat/completions only).
        """
        body = _require(call.body, "input_file_id", "endpoint", "completion_window")
        if body["endpoint"] != "/v1/chat/completions":
            raise ApiError(
                400,
                f"Endpoint {body['endpoint']} is not supported by this test server "
                "(only /v1/chat/completions).",
                param="endpoint",
                code="unsupported_value",
            )
        obj = self.store.objects["files"].get(body["input_file_id"])
        if obj is None:
            raise ApiError(
                400, f"Invalid 'input_file_id': no file {body['input_file_id']}.", param="input_file_id"
            )
        if obj["purpose"] != "batch":
            raise ApiError(
                400,
                f"File {obj['id']} has purpose {obj['purpose']!r}; batches need purpose 'batch'.",
                param="input_file_id",
                code="invalid_file_purpose",
            )
        _check_metadata(body.get("metadata"))
        now = int(time.time())
        batch: dict[str, Any] = {
            "id": new_id("batch_", 32),
            "object": "batch",
            "endpoint": body["endpoint"],
            "errors": None,
            "input_file_id": body["input_file_id"],
            "completion_window": body["completion_window"],
            "status": "validating",
            "output_file_id": None,
            "error_file_id": None,
            "created_at": now,
            "in_progress_at": None,
            "expires_at": now + 24 * 3600,
            "finalizing_at": None,
            "completed_at": None,
            "failed_at": None,
            "expired_at": None,
            "cancelling_at": None,
            "cancelled_at": None,
            "request_counts": {"total": 0, "completed": 0, "failed": 0},
            "metadata": body.get("metadata"),
            "_polls": 0,
        }
        with self.store.lock:
            self.store.save("batches", batch)
        return Reply(200, _batch_view(batch))

    def _batch(self, batch_id: str) -> dict[str, Any]:
        batch = self.store.objects["batches"].get(batch_id)
        if batch is None:
            raise ApiError(404, f"No batch found with id '{batch_id}'.", param="batch_id", code="not_found")
        return batch

    def _batch_line(
        self, request: dict[str, Any], operation: dict[str, Any] | None
    ) -> tuple[int, dict[str, Any]]:
        # (status, body) of one batch request line, as the chat endpoint would answer it
        body = request["body"]
        rules = [r for r in self.config.faults if r.path == "batch"]
        if rules and self._first_attempt("batch " + json.dumps(request, sort_keys=True)):
            for rule in rules:
                if rule.fires("batch"):
                    reply = self._fault_reply(rule)
                    return reply.status, reply.payload
        try:
            if self.spec is not None and operation is not None:
                problem = self.spec.check(body, self.spec.body_schema(operation, "application/json"))
                if problem is not None:
                    raise _problem_error(problem)
            return 200, self._complete(body)
        except ApiError as err:
            return err.status, err.body()

    def _batch_requests(self, batch: dict[str, Any]) -> list[dict[str, Any]]:
        text = self.store.file_content(batch["input_file_id"]).decode("utf-8", errors="replace")
        return check_batch_lines(text.splitlines(), batch["endpoint"])[0]

    def _part_path(self, batch: dict[str, Any], part: int) -> Path:
        return self.store.root / "batches" / f"{batch['id']}.part-{part:06d}.jsonl"

    def _work_batch(self, batch: dict[str, Any]) -> None:
        # answer the next batch_chunk request lines into their own part file (rewritten whole, so a
        # restart in between cannot answer a line twice), and count them in request_counts
        done = int(batch.get("_done", 0))
        if done >= batch["request_counts"]["total"]:
            return
        size = max(1, self.config.batch_chunk)
        chunk = self._batch_requests(batch)[done : done + size]
        operation = self._operation(Call("POST", "/v1/chat/completions", {}, {}, b""), "/chat/completions")
        usage = batch.setdefault("_usage", {"input": 0, "output": 0, "cached": 0, "reasoning": 0})
        lines: list[str] = []
        counts = batch["request_counts"]
        for request in chunk:
            status, body = self._batch_line(request, operation)
            line = {
                "id": new_id("batch_req_", 32),
                "custom_id": request["custom_id"],
                "response": {"status_code": status, "request_id": new_id("req_", 32), "body": body},
                "error": None,
            }
            lines.append(json.dumps({"ok": status == 200, "line": line}, ensure_ascii=False))
            counts["completed" if status == 200 else "failed"] += 1
            if status == 200:
                u = body["usage"]
                usage["input"] += u["prompt_tokens"]
                usage["output"] += u["completion_tokens"]
                usage["cached"] += u["prompt_tokens_details"]["cached_tokens"]
                usage["reasoning"] += u["completion_tokens_details"]["reasoning_tokens"]
        part = self._part_path(batch, done)
        part.write_text("".join(f"{x}\n" for x in lines), encoding="utf-8")
        batch["_done"] = done + len(chunk)

    def _write_batch_outputs(self, batch: dict[str, Any]) -> None:
        # the part files become the output and error files, in shuffled order (OpenAI keeps no order)
        ok: list[str] = []
        failed: list[str] = []
        parts = sorted((self.store.root / "batches").glob(f"{batch['id']}.part-*.jsonl"))
        for part in parts:
            for raw in part.read_text(encoding="utf-8").splitlines():
                entry = json.loads(raw)
                (ok if entry["ok"] else failed).append(json.dumps(entry["line"], ensure_ascii=False))
        rng = random.Random(batch["id"])
        rng.shuffle(ok)
        rng.shuffle(failed)
        for lines, key, name in ((ok, "output_file_id", "output"), (failed, "error_file_id", "error")):
            if lines:
                obj = self.store.add_file(
                    ("\n".join(lines) + "\n").encode(),
                    filename=f"{batch['id']}_{name}.jsonl",
                    purpose="batch_output",
                )
                batch[key] = obj["id"]
        for part in parts:
            part.unlink()
        usage = batch.get("_usage", {"input": 0, "output": 0, "cached": 0, "reasoning": 0})
        batch["usage"] = {
            "input_tokens": usage["input"],
            "input_tokens_details": {"cached_tokens": usage["cached"]},
            "output_tokens": usage["output"],
            "output_tokens_details": {"reasoning_tokens": usage["reasoning"]},
            "total_tokens": usage["input"] + usage["output"],
        }

    def _advance_batch(self, batch: dict[str, Any]) -> None:
        if batch["status"] in _TERMINAL_BATCH:
            return
        now = int(time.time())
        if batch["status"] == "cancelling":
            self._write_batch_outputs(batch)  # what was answered before the cancel is kept
            batch["status"] = "cancelled"
            batch["cancelled_at"] = now
            return
        batch["_polls"] += 1
        status = batch["status"]
        if status == "in_progress":
            self._work_batch(batch)  # every poll answers up to batch_chunk more lines
            if batch.get("_done", 0) < batch["request_counts"]["total"]:
                return
        if batch["_polls"] < max(1, self.config.batch_polls):
            return
        batch["_polls"] = 0
        if status == "validating":
            text = self.store.file_content(batch["input_file_id"]).decode("utf-8", errors="replace")
            requests, problems = check_batch_lines(text.splitlines(), batch["endpoint"])
            if problems:
                batch["status"] = "failed"
                batch["failed_at"] = now
                batch["errors"] = {
                    "object": "list",
                    "data": [
                        {"code": p.code, "message": p.message, "param": p.param, "line": p.line or None}
                        for p in problems[:100]
                    ],
                }
                return
            batch["model"] = requests[0]["body"].get("model")
            batch["request_counts"] = {"total": len(requests), "completed": 0, "failed": 0}
            batch["status"] = "in_progress"
            batch["in_progress_at"] = now
        elif status == "in_progress":
            self._write_batch_outputs(batch)
            batch["status"] = "finalizing"
            batch["finalizing_at"] = now
        elif status == "finalizing":
            batch["status"] = "completed"
            batch["completed_at"] = now

    def list_batches(self, call: Call) -> Reply:
        """
        GET /v1/batches (``after``, ``limit``).
        """
        page = _page(self.store.newest_first("batches"), call.query, 20)
        page["data"] = [_batch_view(b) for b in page["data"]]
        return Reply(200, page)

    def get_batch(self, call: Call) -> Reply:
        """
        GET /v1/batches/{id}: every call is one poll and may move the batch on.
        """
        with self.store.lock:
            batch = self._batch(call.params[0])
            self._advance_batch(batch)
            self.store.save("batches", batch)
            return Reply(200, _batch_view(batch))

    def cancel_batch(self, call: Call) -> Reply:
        """
        POST /v1/batches/{id}/cancel: cancelling now, cancelled at the next poll.
        """
        with self.store.lock:
            batch = self._batch(call.params[0])
            if batch["status"] in _TERMINAL_BATCH or batch["status"] == "finalizing":
                raise ApiError(400, f"Cannot cancel a batch with status {batch['status']}.")
            batch["status"] = "cancelling"
            batch["cancelling_at"] = int(time.time())
            self.store.save("batches", batch)
            return Reply(200, _batch_view(batch))

    # ---- chat ---------------------------------------------------------------------------------

    def _complete(self, body: dict[str, Any]) -> dict[str, Any]:
        model, learned = self._chat_model(body.get("model"))
        modes = self.config.modes
        response_format = body.get("response_format")
        json_schema = isinstance(response_format, dict) and response_format.get("type") == "json_schema"
        if json_schema and "no-json-schema" in modes:
            raise ApiError(
                400,
                "Invalid parameter: 'response_format' of type 'json_schema' is not supported with "
                "this model.",
                param="response_format",
                code="unsupported_parameter",
            )
        wants_json = isinstance(response_format, dict) and response_format.get("type") == "json_object"
        if wants_json and not any("json" in message_text(m).lower() for m in body.get("messages", [])):
            raise ApiError(
                400,
                "'messages' must contain the word 'json' in some form, to use 'response_format' of type "
                "'json_object'.",
                param="messages",
            )
        if body.get("seed") is not None and "no-seed" in modes:
            raise ApiError(
                400,
                "Unsupported parameter: 'seed' is not supported by this server.",
                param="seed",
                code="unsupported_parameter",
            )
        for name in ("n", "max_completion_tokens", "max_tokens"):
            value = body.get(name)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
                raise ApiError(
                    400, f"Invalid '{name}': expected a positive integer.", param=name, code="invalid_value"
                )
        if body.get("logprobs") and ("no-logprobs" in modes or is_reasoning_model(model)):
            raise ApiError(
                400,
                "Unsupported parameter: 'logprobs' is not supported with this model.",
                param="logprobs",
                code="unsupported_parameter",
            )
        if body.get("stream"):
            raise ApiError(400, "This test server does not stream; send stream=false.", param="stream")
        if is_reasoning_model(model):
            for name in ("temperature", "top_p"):
                if body.get(name) is not None:
                    raise ApiError(
                        400,
                        f"Unsupported parameter: '{name}' is not supported with this model.",
                        param=name,
                        code="unsupported_parameter",
                    )
            if body.get("max_tokens") is not None:
                raise ApiError(
                    400,
                    "Unsupported parameter: 'max_tokens' is not supported with this model. "
                    "Use 'max_completion_tokens' instead.",
                    param="max_tokens",
                    code="unsupported_parameter",
                )
        elif body.get("reasoning_effort") is not None:
            raise ApiError(
                400,
                "Unsupported parameter: 'reasoning_effort' is not supported with this model.",
                param="reasoning_effort",
                code="unsupported_parameter",
            )
        if body.get("logprobs") and "logprobs" not in modes:
            body = {**body, "logprobs": False}  # by default answered with null, as some compatible servers do
        return complete_chat(body, model=model, learned=learned, cache=self.cache)

    def chat(self, call: Call) -> Reply:
        """
        POST /v1/chat/completions.
        """
        result = self._complete(_require(call.body, "model", "messages"))
        if self.config.latency_s > 0:
            time.sleep(self.config.latency_s)
        return Reply(200, result)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    timeout = 300
    app: OpenAIServer

    def log_message(self, format: str, *args: Any) -> None:
        if self.app.config.verbose:
            super().log_message(format, *args)

    def _read_body(self) -> bytes:
        if self.headers.get("transfer-encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        length = int(self.headers.get("content-length") or 0)
        return self.rfile.read(length) if length else b""

    def _serve(self) -> None:
        started = time.time()
        request_id = new_id("req_", 32)
        url = urlsplit(self.path)
        raw = self._read_body()
        headers = {k.lower(): v for k, v in self.headers.items()}
        call = Call(
            method=self.command,
            path=url.path,
            query=parse_qs(url.query, keep_blank_values=True),
            headers=headers,
            raw=raw,
            record={
                "t": round(started, 6),
                "method": self.command,
                "path": url.path,
                "query": url.query,
                "request_id": request_id,
                "idempotency_key": headers.get("idempotency-key"),
                "retry_count": headers.get("x-stainless-retry-count"),
                "fault": None,
            },
        )
        try:
            reply = self.app.handle(call)
        except Exception:
            traceback.print_exc(file=sys.stderr)
            err = ApiError(500, "The test server failed; see its stderr.", type_="server_error")
            reply = Reply(500, err.body())
        data = reply.raw if reply.raw is not None else json.dumps(reply.payload, ensure_ascii=False).encode()
        call.record["status"] = reply.status
        call.record["ms"] = round((time.time() - started) * 1000, 1)
        if not call.path.startswith("/_control/"):
            self.app.log(call.record)  # before answering: a client that has the answer finds it logged
        try:
            self.send_response(reply.status)
            self.send_header("content-type", reply.content_type)
            self.send_header("content-length", str(len(data)))
            self.send_header("x-request-id", request_id)
            self.send_header("openai-organization", ORGANIZATION)
            self.send_header("openai-processing-ms", str(int(call.record["ms"])))
            self.send_header("openai-version", "2020-10-01")
            for key, value in reply.headers.items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def do_DELETE(self) -> None:
        self._serve()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256


def make_server(app: OpenAIServer, port: int) -> ThreadingHTTPServer:
    """
    An HTTP server on 127.0.0.1 serving the application (port 0: any free port).
    """
    handler = type("Handler", (_Handler,), {"app": app})
    return _Server(("127.0.0.1", port), handler)
