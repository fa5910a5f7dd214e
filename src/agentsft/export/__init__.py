"""Export: what a run trained, for other engines.

    chat_template.py   the run's agent template as a Jinja chat template, exact
"""

from agentsft.export.chat_template import chat_template

__all__ = ["chat_template"]
