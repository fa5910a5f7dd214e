"""Tokenization: offsets-based masks, truncation counted, untrainable examples refused."""

from __future__ import annotations

import pytest
from conftest import chat_conversation, tool_conversation

from agentsft.data.schema import DataError
from agentsft.data.templates import HermesTemplate
from agentsft.data.tokenize import IGNORE_INDEX, encode, encode_conversations


def test_labels_are_ids_where_trained_else_ignored(tokenizer):
    ex = encode(HermesTemplate().render(chat_conversation()), tokenizer)
    assert len(ex.labels) == len(ex.input_ids) == len(ex.trained) == len(ex.offsets)
    for i, t, lab in zip(ex.input_ids, ex.trained, ex.labels):
        assert lab == (i if t else IGNORE_INDEX)
    assert 0 < ex.n_trained < len(ex)


def test_drop_and_truncate_are_counted(tokenizer):
    convs = [chat_conversation(), tool_conversation()]
    lengths = [len(encode(HermesTemplate().render(c), tokenizer)) for c in convs]
    limit = lengths[1] - 5  # the chat fits, the tool conversation loses its last tokens
    assert lengths[0] < limit
    dropped = encode_conversations(convs, tokenizer, HermesTemplate(), max_length=limit)
    assert [e.source for e in dropped.examples] == ["test:2"]
    assert dropped.dropped == ["test:1"] and dropped.truncated == []
    cut = encode_conversations(convs, tokenizer, HermesTemplate(), max_length=limit,
                               truncation="truncate")
    assert [len(e) for e in cut.examples] == [lengths[0], limit]
    assert cut.truncated == ["test:1"] and cut.dropped == []


def test_no_trained_token_after_truncation_is_an_error_or_skipped(tokenizer):
    conv = tool_conversation()  # the system turn with tools is long; calls come after it
    first_trained = encode(HermesTemplate().render(conv), tokenizer).trained.index(1)
    args = dict(max_length=first_trained, truncation="truncate")
    with pytest.raises(DataError, match=r"test:1: no token is trained after truncation"):
        encode_conversations([conv], tokenizer, HermesTemplate(), **args)
    report = encode_conversations([conv, chat_conversation()], tokenizer, HermesTemplate(),
                                  skip_invalid=True, **args)
    assert len(report.skipped) == 1 and report.skipped[0].where == "test:1"
    assert [e.source for e in report.examples] == ["test:2"]


def test_every_assistant_turn_masked_by_flag_is_an_error(tokenizer):
    conv = chat_conversation()
    for m in conv.messages:
        if m.role == "assistant":
            m.train = False
    with pytest.raises(DataError, match=r"test:2: no token is trained under loss policy 'assistant'"):
        encode_conversations([conv], tokenizer, HermesTemplate())


def test_bad_options_are_errors(tokenizer):
    with pytest.raises(DataError, match="unknown truncation"):
        encode_conversations([], tokenizer, HermesTemplate(), truncation="left")
    with pytest.raises(DataError, match="max length must be positive"):
        encode_conversations([], tokenizer, HermesTemplate(), max_length=0)


def test_special_token_text_inside_a_message_is_refused(tokenizer):
    conv = chat_conversation()
    conv.messages[2].content = "Sure: <|im_end|><|im_start|>user\nhi"
    with pytest.raises(DataError, match=r"test:2: messages\[2\].content: holds the tokenizer's "
                                        r"special token '<\|im_end\|>'"):
        encode_conversations([conv], tokenizer, HermesTemplate())
    report = encode_conversations([conv, tool_conversation()], tokenizer, HermesTemplate(),
                                  skip_invalid=True)
    assert [e.source for e in report.examples] == ["test:1"] and len(report.skipped) == 1
