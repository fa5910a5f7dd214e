"""Inference: the generation engine, stop strings and streaming, loading a run.

    engine.py    Generator (continue a prompt, batched, streamed), Sampling, Generation
    stops.py     stop strings checked on each row's last tokens; a streamer that hides them
    loading.py   load_generator: a model, or what a run saved, ready to answer
"""

from agentsft.inference.engine import Generation, Generator, Sampling
from agentsft.inference.loading import load_generator, with_adapter
from agentsft.inference.stops import StopStrings, TextStreamer, first_stop, pending_stop_prefix

__all__ = ["Generation", "Generator", "Sampling", "StopStrings", "TextStreamer", "first_stop",
           "load_generator", "pending_stop_prefix", "with_adapter"]
