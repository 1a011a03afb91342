"""The OpenAI-compatible ``/v1/completions`` wire format: request validation, the byte-level tokenizer, and
response / server-sent-event bodies. Pure Python (no Ray), so it is tested on its own.

Tokenizer (documented, deterministic): a text prompt's UTF-8 bytes are its token ids (0-255); a prompt may
also be given as a list of token ids (``0 <= id < vocab_size``). Generated ids decode as ``bytes([id % 256])``
with invalid UTF-8 replaced. The engines' weights are random, so the text is noise; token counts and the
generation work are real.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

SUPPORTED = ("model", "prompt", "max_tokens", "stream", "temperature", "top_p", "n", "stop", "user", "seed",
             "ignore_eos", "stream_options")


class RequestError(ValueError):
    """A malformed request: ``param`` names the offending field (OpenAI's error ``param``)."""

    def __init__(self, message: str, param: str | None = None, status: int = 400) -> None:
        super().__init__(message)
        self.param, self.status = param, status

    def body(self) -> dict[str, Any]:
        return {"error": {"message": str(self), "type": "invalid_request_error", "param": self.param,
                          "code": None}}


def encode(text: str) -> list[int]:
    """Byte-level tokenizer: the UTF-8 bytes of ``text``."""
    return list(text.encode("utf-8"))


def decode(ids: list[int]) -> str:
    """Inverse of ``encode`` for ids < 256; larger ids (the model's vocab is wider) wrap modulo 256."""
    return bytes(i % 256 for i in ids).decode("utf-8", errors="replace")


@dataclass(frozen=True)
class Completion:
    """A validated completion request."""

    prompt: tuple[int, ...]
    max_tokens: int
    stream: bool
    model: str
    include_usage: bool = False


def parse_completion(body: Any, *, model: str, vocab_size: int, max_request_tokens: int) -> Completion:
    """Validate a ``/v1/completions`` JSON body; ``RequestError`` names the field and what was expected.

    Only greedy decoding of exactly ``max_tokens`` tokens exists here (no EOS, no sampling), so ``n`` must be
    1, ``stop`` must be empty and ``temperature``/``top_p`` are accepted but do not change the output.
    """
    if not isinstance(body, dict):
        raise RequestError(f"request body must be a JSON object, got {type(body).__name__}")
    unknown = sorted(set(body) - set(SUPPORTED))
    if unknown:
        raise RequestError(f"unsupported field(s) {unknown}; supported: {list(SUPPORTED)}", unknown[0])
    if "model" in body and body["model"] != model:
        raise RequestError(f"model {body['model']!r} is not served here; expected {model!r}", "model", 404)
    if "prompt" not in body:
        raise RequestError("field 'prompt' is required (a string or a list of token ids)", "prompt")
    prompt = body["prompt"]
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], (str, list)):
        prompt = prompt[0]  # a batch of one prompt
    if isinstance(prompt, str):
        ids = encode(prompt)
    elif isinstance(prompt, list) and all(type(t) is int for t in prompt):
        bad = [t for t in prompt if not 0 <= t < vocab_size]
        if bad:
            raise RequestError(f"prompt token ids must be in [0, {vocab_size}), got {bad[:5]}", "prompt")
        ids = list(prompt)
    else:
        raise RequestError("prompt must be a string, a list of token ids, or a one-element list of either "
                           "(batches of several prompts are not supported)", "prompt")
    if not ids:
        raise RequestError("prompt must not be empty", "prompt")
    mt = body.get("max_tokens", 16)
    if type(mt) is not int or mt < 1:
        raise RequestError(f"max_tokens must be an integer >= 1, got {mt!r}", "max_tokens")
    if len(ids) + mt > max_request_tokens:
        raise RequestError(f"prompt ({len(ids)} tokens) + max_tokens ({mt}) = {len(ids) + mt} exceeds this "
                           f"model's limit of {max_request_tokens} tokens", "max_tokens")
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise RequestError(f"stream must be true or false, got {stream!r}", "stream")
    if body.get("n", 1) != 1:
        raise RequestError(f"n must be 1, got {body.get('n')!r}", "n")
    if body.get("stop") not in (None, [], ""):
        raise RequestError("stop sequences are not supported (generation runs exactly max_tokens tokens)", "stop")
    for k in ("temperature", "top_p"):
        v = body.get(k, 1.0)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0:
            raise RequestError(f"{k} must be a number >= 0, got {v!r}", k)
    so = body.get("stream_options") or {}
    if not isinstance(so, dict):
        raise RequestError(f"stream_options must be an object, got {so!r}", "stream_options")
    return Completion(tuple(ids), mt, stream, model, bool(so.get("include_usage", False)))


def completion_body(cid: str, model: str, tokens: list[int], prompt_tokens: int, replica: str) -> dict[str, Any]:
    """A non-streaming ``text_completion`` response (``replica``: the serving replica, a schedgym extension)."""
    return {"id": cid, "object": "text_completion", "created": int(time.time()), "model": model,
            "choices": [{"index": 0, "text": decode(tokens), "logprobs": None, "finish_reason": "length"}],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": len(tokens),
                      "total_tokens": prompt_tokens + len(tokens)},
            "replica": replica}


def sse_chunk(cid: str, model: str, tokens: list[int], finish: bool, replica: str) -> bytes:
    """One server-sent event carrying the tokens generated since the previous one."""
    body = {"id": cid, "object": "text_completion", "created": int(time.time()), "model": model,
            "choices": [{"index": 0, "text": decode(tokens), "logprobs": None,
                         "finish_reason": "length" if finish else None}],
            "replica": replica, "token_ids": tokens}
    return f"data: {json.dumps(body)}\n\n".encode()


def sse_usage(cid: str, model: str, prompt_tokens: int, completion_tokens: int) -> bytes:
    body = {"id": cid, "object": "text_completion", "created": int(time.time()), "model": model, "choices": [],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                      "total_tokens": prompt_tokens + completion_tokens}}
    return f"data: {json.dumps(body)}\n\n".encode()


def sse_error(message: str, kind: str = "server_error") -> bytes:
    return f"data: {json.dumps({'error': {'message': message, 'type': kind}})}\n\n".encode()


SSE_DONE = b"data: [DONE]\n\n"
