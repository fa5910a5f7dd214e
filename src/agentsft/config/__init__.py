"""Training configuration: small typed option groups, loaded from YAML or JSON.

    options.py          the groups (model, lora, quantization, data, training, eval)
    values.py           nested dicts -> Config, every key checked, every value converted
    loading.py          files, flags and --set overrides; saving a resolved config
    agent_framework.py  the agent-framework model_configs.json layout, mapped
    aliases.py          Hugging Face's names for our keys (TrainingArguments, LoraConfig...)
    secrets.py          the hub token (read, never written) and redaction

Pure: nothing here loads a model or a tokenizer.
"""

from agentsft.config.agent_framework import from_agent_framework, is_agent_framework
from agentsft.config.loading import load, parse_override, read_file, save
from agentsft.config.options import (
    DEFAULT_MODEL, GROUPS, Config, ConfigError, DataOptions, EvalOptions, LoraOptions,
    ModelOptions, QuantizationOptions, TrainingOptions,
)
from agentsft.config.secrets import hf_token, redact
from agentsft.config.values import convert, from_dict

__all__ = ["DEFAULT_MODEL", "GROUPS", "Config", "ConfigError", "DataOptions", "EvalOptions",
           "LoraOptions", "ModelOptions", "QuantizationOptions", "TrainingOptions", "convert",
           "from_agent_framework", "from_dict", "hf_token", "is_agent_framework", "load",
           "parse_override", "read_file", "redact", "save"]
