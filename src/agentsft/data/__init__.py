"""Conversations: the schema, readers for common formats, agent templates, tokenization."""
