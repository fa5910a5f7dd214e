"""The example data of agentsft (the "Marlo" agent), installed as ``agentsft.examples``:
persona.jsonl, tools.jsonl, msagent.jsonl and the real tools in tools.py."""
