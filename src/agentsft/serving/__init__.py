"""Serving: the OpenAI-compatible HTTP server over the generation engine.

    requests.py  chat-completion requests read and checked (errors in OpenAI's shape)
    replies.py   a reply read into content and tool calls as it streams, by the run's template
    app.py       the FastAPI app: /v1/models, /v1/chat/completions (SSE streams), /health
"""

from agentsft.serving.app import Served, Server, create_app
from agentsft.serving.requests import ApiError, ChatRequest, chat_request

__all__ = ["ApiError", "ChatRequest", "Served", "Server", "chat_request", "create_app"]
