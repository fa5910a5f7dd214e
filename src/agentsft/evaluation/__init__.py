"""Evaluation: generate the assistant's steps, score them, report.

    steps.py     the steps to predict (stepwise) or the user turns (agent mode)
    metrics.py   call decision, tool name, arguments, valid JSON, ROUGE-L, perplexity
    evaluate.py  predict and score: batched stepwise generation, agent turns, perplexity
    report.py    report.json, predictions.jsonl, the tables printed
"""

from agentsft.evaluation.evaluate import MODES, MakeAgent, evaluate, gold_perplexity, score
from agentsft.evaluation.report import markdown_table, per_tool_table, write_outputs
from agentsft.evaluation.steps import Step, agent_steps, stepwise_steps

__all__ = ["MODES", "MakeAgent", "Step", "agent_steps", "evaluate", "gold_perplexity",
           "markdown_table", "per_tool_table", "score", "stepwise_steps", "write_outputs"]
