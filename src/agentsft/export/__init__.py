"""Export: what a run trained, for other engines.

    chat_template.py   the run's agent template as a Jinja chat template, exact
    hf.py              a merged transformers folder (safetensors, tokenizer, template)
    gguf.py            llama.cpp's GGUF (f16, bf16, q8_0) and an Ollama Modelfile
    card.py            the model card written with each
"""

from agentsft.export.chat_template import chat_template

__all__ = ["chat_template"]
