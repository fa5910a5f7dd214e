"""The OpenAI-compatible HTTP API (FastAPI): ``GET /v1/models``, ``POST /v1/chat/completions``
(streamed as server-sent events or not), ``GET /health``.

Each served name is a run (or the base model) with the template it was trained with; the
prompt is that template's render, and the calls in a reply are read back by the same
template. Requests share one :class:`~agentsft.inference.batching.Batcher`: each joins the
running batch and leaves it when done; a client that goes away leaves at the next step.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.exceptions import HTTPException

from agentsft import __version__
from agentsft.data.schema import DataError, loads
from agentsft.errors import AgentsftError
from agentsft.inference.batching import Batcher, Job
from agentsft.inference.calls import call_tags
from agentsft.inference.engine import Generation, Generator, Sampling
from agentsft.serving.replies import ReplyReader, call_dict, finish_reason, read_reply
from agentsft.serving.requests import ApiError, ChatRequest, bad, chat_request


@dataclass
class Served:
    """One name the server answers to: a generator, and the PEFT adapter that answers
    (None: the model as loaded)."""

    name: str
    generator: Generator
    adapter: str | None = None

    def reader(self) -> ReplyReader:
        marker, close = call_tags(self.generator.template)
        return ReplyReader(self.generator.template, marker, close)


class Server:
    """The served models and their shared batcher."""

    def __init__(self, served: list[Served], api_key: str | None = None, max_rows: int = 16):
        self.models = {s.name: s for s in served}
        self.api_key = api_key
        self.created = int(time.time())
        self.batcher = Batcher(served[0].generator, max_rows,
                               adapters=any(s.adapter is not None for s in served))
        for s in served:  # built now, not while the first request with tools holds the loop
            if s.generator.constrain:
                s.generator.grammar_tokenizer  # noqa: B018

    def model(self, name: str) -> Served:
        if name not in self.models:
            raise ApiError(404, f"the model {name!r} is not served here; served: "
                                f"{', '.join(self.models)}", "model", "model_not_found")
        return self.models[name]

    def check_key(self, request: Request) -> None:
        if self.api_key is None:
            return
        given = request.headers.get("authorization", "")
        if not given.lower().startswith("bearer "):
            raise ApiError(401, "no API key given: send it as 'Authorization: Bearer KEY'",
                           None, "invalid_api_key")
        if not hmac.compare_digest(given[7:].strip().encode(), self.api_key.encode()):
            raise ApiError(401, "incorrect API key", None, "invalid_api_key")


@dataclass
class Prepared:
    """A checked request turned into a job for the batcher."""

    request: ChatRequest
    served: Served
    job: Job
    events: asyncio.Queue


def prepare(server: Server, req: ChatRequest, loop: asyncio.AbstractEventLoop) -> Prepared:
    served = server.model(req.model)
    gen = served.generator
    try:
        row = gen.encode(gen.template.prompt(req.conversation))
        rules = gen.call_rules(req.conversation.tools, req.tool_choice)
    except DataError as e:
        raise bad(f"{e.problem}. Fix: {e.fix}" if e.fix else e.problem, e.field or "messages") from None
    except AgentsftError as e:
        raise bad(str(e), "tool_choice") from None
    context = gen.context
    wanted = req.max_tokens or context - len(row)
    if len(row) >= context or len(row) + wanted > context:
        asked = f" plus {req.max_tokens} to write" if req.max_tokens else ""
        raise bad(f"this model's context is {context} tokens; the messages take {len(row)}{asked}. "
                  f"Fix: shorten the messages or lower max_tokens", "messages", "context_length_exceeded")
    temperature, top_p = req.temperature, req.top_p
    if top_p == 0:  # only the likeliest token
        temperature, top_p = 0.0, 1.0
    stops = tuple(req.stop)
    close = call_tags(gen.template)[1]
    if not req.parallel_tool_calls and close and req.conversation.tools:
        stops += (close,)  # the first call is the last
    events: asyncio.Queue = asyncio.Queue()

    def send(*item: Any) -> None:
        loop.call_soon_threadsafe(events.put_nowait, item)

    job = Job(gen, row, Sampling(wanted, temperature, top_p),
              on_text=lambda text: send("text", text),
              on_done=lambda generation, why: send("done", generation, why),
              on_error=lambda message: send("error", message),
              stops=stops, rules=rules, adapter=served.adapter, seed=req.seed)
    return Prepared(req, served, job, events)


def usage(job: Job, generation: Generation) -> dict[str, int]:
    return {"prompt_tokens": len(job.row), "completion_tokens": generation.tokens,
            "total_tokens": len(job.row) + generation.tokens}


def create_app(server: Server) -> FastAPI:
    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        server.batcher.close(timeout=10)

    app = FastAPI(title="agentsft", version=__version__, lifespan=lifespan,
                  docs_url=None, redoc_url=None, openapi_url=None)

    @app.exception_handler(ApiError)
    async def api_error(request: Request, e: ApiError) -> JSONResponse:
        return JSONResponse(e.body(), status_code=e.status)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, e: HTTPException) -> JSONResponse:
        message = f"{request.method} {request.url.path}: {e.detail}"
        return JSONResponse(ApiError(e.status_code, message).body(), status_code=e.status_code)

    @app.exception_handler(Exception)
    async def server_error(request: Request, e: Exception) -> JSONResponse:
        return JSONResponse(ApiError(500, f"internal error ({type(e).__name__})").body(), status_code=500)

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "models": list(server.models), "running": server.batcher.running}

    @app.get("/v1/models")
    async def models(request: Request) -> dict[str, Any]:
        server.check_key(request)
        return {"object": "list", "data": [model_entry(server, name) for name in server.models]}

    @app.get("/v1/models/{name:path}")
    async def model(name: str, request: Request) -> dict[str, Any]:
        server.check_key(request)
        return model_entry(server, server.model(name).name)

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> Any:
        server.check_key(request)
        raw = await request.body()
        try:
            body = loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as e:
            raise bad(f"the request body is not valid JSON ({getattr(e, 'msg', e)})", None) from None
        prepared = prepare(server, chat_request(body), asyncio.get_running_loop())
        server.batcher.submit(prepared.job)
        if prepared.request.stream:
            return StreamingResponse(streamed(prepared), media_type="text/event-stream",
                                     headers={"Cache-Control": "no-cache"})
        return await whole(prepared, request)

    return app


def model_entry(server: Server, name: str) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": server.created, "owned_by": "agentsft"}


async def whole(p: Prepared, request: Request) -> JSONResponse:
    """The reply in one response; a client that leaves cancels the job."""
    while True:
        try:
            item = await asyncio.wait_for(p.events.get(), 1.0)
        except asyncio.TimeoutError:
            if await request.is_disconnected():
                p.job.cancel()
                return JSONResponse({}, status_code=499)
            continue
        if item[0] == "error":
            raise ApiError(500, item[1])
        if item[0] == "done":
            break
    generation, why = item[1], item[2]
    content, calls = read_reply(p.served.reader(), generation.text)
    message: dict[str, Any] = {"role": "assistant", "content": content or (None if calls else ""),
                               "refusal": None}
    if calls:
        message["tool_calls"] = [call_dict(c) for c in calls]
    return JSONResponse({
        "id": completion_id(), "object": "chat.completion", "created": int(time.time()),
        "model": p.served.name, "system_fingerprint": f"agentsft-{__version__}",
        "choices": [{"index": 0, "message": message, "logprobs": None,
                     "finish_reason": finish_reason(why == "length", calls)}],
        "usage": usage(p.job, generation)})


def completion_id() -> str:
    return "chatcmpl-" + uuid.uuid4().hex


async def streamed(p: Prepared) -> AsyncIterator[str]:
    """Server-sent events: content deltas as written, each call as OpenAI's delta chunks
    once written (id and name, then its arguments), the finish reason, usage if asked."""
    cid, created, reader = completion_id(), int(time.time()), p.served.reader()
    extra = {"usage": None} if p.request.include_usage else {}
    sent = [0]  # calls sent so far: the next one's index

    def chunk(delta: dict[str, Any], finish: str | None = None) -> str:
        body = {"id": cid, "object": "chat.completion.chunk", "created": created,
                "model": p.served.name, "system_fingerprint": f"agentsft-{__version__}",
                "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
                **extra}
        return f"data: {json.dumps(body, ensure_ascii=False)}\n\n"

    def pieces(items: list) -> list[str]:
        out = []
        for piece in items:
            if piece.call is None:
                out.append(chunk({"content": piece.text}))
                continue
            index, sent[0] = sent[0], sent[0] + 1
            d = call_dict(piece.call)
            out.append(chunk({"tool_calls": [{"index": index, "id": d["id"], "type": "function",
                                              "function": {"name": d["function"]["name"], "arguments": ""}}]}))
            out.append(chunk({"tool_calls": [{"index": index,
                                              "function": {"arguments": d["function"]["arguments"]}}]}))
        return out

    try:
        yield chunk({"role": "assistant", "content": ""})
        while True:
            item = await p.events.get()
            if item[0] == "text":
                for line in pieces(reader.feed(item[1])):
                    yield line
            elif item[0] == "error":
                yield f"data: {json.dumps(ApiError(500, item[1]).body())}\n\n"
                return
            else:
                generation, why = item[1], item[2]
                for line in pieces(reader.finish()):
                    yield line
                yield chunk({}, finish_reason(why == "length", reader.calls))
                if p.request.include_usage:
                    body = {"id": cid, "object": "chat.completion.chunk", "created": created,
                            "model": p.served.name, "system_fingerprint": f"agentsft-{__version__}",
                            "choices": [], "usage": usage(p.job, generation)}
                    yield f"data: {json.dumps(body)}\n\n"
                yield "data: [DONE]\n\n"
                return
    finally:
        p.job.cancel()  # a client that left: its row leaves the batch (done jobs: no effect)
