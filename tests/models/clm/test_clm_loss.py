"""The causal LM's loss against its formula: the fused output layer + cross-entropy equals
``F.cross_entropy`` of the full logits (values and gradients, any chunk size), the model's loss equals
``GPT2LMHeadModel(labels=...)``'s, and the packing loses no token and predicts each one once."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from transformers import GPT2LMHeadModel

from hfssl.data.token_rows import TokenRowCollator
from hfssl.losses.causal_lm import linear_cross_entropy
from hfssl.models.clm import CLMConfig, CLMForPreTraining
from hfssl.models.clm.data import InputBuilder, pack_causal_rows

from tiny_clm import TINY_GPT2, packed_rows


@pytest.mark.parametrize("chunk_size", [None, 1, 7, 1000])
@pytest.mark.parametrize("with_bias", [False, True])
def test_fused_linear_cross_entropy_equals_the_formula(chunk_size, with_bias):
    generator = torch.Generator().manual_seed(0)
    hidden = torch.randn(23, 8, generator=generator, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(11, 8, generator=generator, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(11, generator=generator, dtype=torch.float64, requires_grad=True) if with_bias else None
    targets = torch.randint(0, 11, (23,), generator=generator)
    loss, hits = linear_cross_entropy(hidden, weight, bias, targets, chunk_size)
    (3.0 * loss).backward()
    grads = [hidden.grad.clone(), weight.grad.clone()] + ([bias.grad.clone()] if with_bias else [])
    for tensor in [hidden, weight] + ([bias] if with_bias else []):
        tensor.grad = None
    logits = hidden @ weight.T + (bias if with_bias else 0.0)
    expected = F.cross_entropy(logits, targets, reduction="sum")
    (3.0 * expected).backward()
    expected_grads = [hidden.grad, weight.grad] + ([bias.grad] if with_bias else [])
    torch.testing.assert_close(loss, expected, rtol=1e-12, atol=1e-12)
    assert int(hits) == int((logits.argmax(-1) == targets).sum())
    for actual, reference in zip(grads, expected_grads):
        torch.testing.assert_close(actual, reference, rtol=1e-10, atol=1e-12)
    # A closed form: uniform logits cost log(V) per token.
    zero, _ = linear_cross_entropy(torch.zeros(5, 8), torch.zeros(11, 8), None, torch.arange(5))
    torch.testing.assert_close(zero, torch.tensor(5 * torch.log(torch.tensor(11.0)).item()))


@pytest.mark.parametrize("loss_chunk_size", [None, 5])
def test_the_model_loss_equals_transformers_gpt2_with_labels(loss_chunk_size):
    torch.manual_seed(0)
    model = CLMForPreTraining(CLMConfig(decoder_config=TINY_GPT2, vocab_size=100, max_seq_length=16,
                                        loss_chunk_size=loss_chunk_size)).double().eval()
    assert isinstance(model.language_model, GPT2LMHeadModel)
    inputs = packed_rows(generator=torch.Generator().manual_seed(1))
    labels = inputs["input_ids"].masked_fill(inputs["attention_mask"] == 0, -100)
    output = model(**inputs)
    # transformers' own loss (it computes in float32) ...
    hf_loss = model.language_model(input_ids=inputs["input_ids"], labels=labels).loss
    torch.testing.assert_close(output.loss.float(), hf_loss, rtol=1e-6, atol=1e-6)
    # ... and its formula in float64: mean cross-entropy of the full logits over the real next tokens.
    output.loss.backward()
    ours = {name: parameter.grad.clone() for name, parameter in model.language_model.named_parameters()}
    model.zero_grad()
    logits = model.language_model(input_ids=inputs["input_ids"]).logits
    expected = F.cross_entropy(logits[:, :-1].reshape(-1, 100), labels[:, 1:].reshape(-1), ignore_index=-100)
    torch.testing.assert_close(output.loss, expected, rtol=1e-12, atol=1e-12)
    expected.backward()
    for name, parameter in model.language_model.named_parameters():
        torch.testing.assert_close(ours[name], parameter.grad, rtol=1e-9, atol=1e-11, msg=name)


def test_dropout_is_seeded_per_micro_batch():
    model = CLMForPreTraining(CLMConfig(decoder_config=TINY_GPT2, vocab_size=100, max_seq_length=16)).train()
    batch = TokenRowCollator(0)([{"input_ids": list(range(1, 17)), "length": 16}, {"input_ids": list(range(3, 19)), "length": 12}])
    make_inputs = InputBuilder()
    first = make_inputs(batch, torch.Generator().manual_seed(5))
    again = make_inputs(batch, torch.Generator().manual_seed(5))
    assert first["dropout_seed"] == again["dropout_seed"]
    torch.manual_seed(1)
    a = model(**first).loss
    torch.manual_seed(2)  # the global generator does not matter
    b = model(**again).loss
    assert torch.equal(a, b)
    other = make_inputs(batch, torch.Generator().manual_seed(6))
    assert not torch.equal(a, model(**other).loss)


def test_packing_predicts_every_token_once_and_loses_none():
    documents = [[5, 6, 7], [], [8, 9, 10, 11, 12, 13, 14], [15]]
    rows, lengths = pack_causal_rows(documents, eos_id=0, pad_id=99, length=4)
    stream = [0, 5, 6, 7, 0, 8, 9, 10, 11, 12, 13, 14, 0, 15, 0]
    assert all(len(row) == 4 for row in rows)
    targets = [token for row, length in zip(rows, lengths) for token in row[1:length]]
    assert targets == stream[1:]  # every token after the leading end-of-text is a target, once, in order
    assert [row[:length] for row, length in zip(rows, lengths)][0] == stream[:4]
    assert rows[-1][lengths[-1]:] == [99] * (4 - lengths[-1])


def test_config_rejects_bad_values_naming_them():
    with pytest.raises(ValueError, match="unknown model.decoder_config preset 'gpt9'"):
        CLMConfig(decoder_config="gpt9")
    with pytest.raises(ValueError, match="max_seq_length 4096 is above"):
        CLMConfig(decoder_config="gpt2-tiny", max_seq_length=4096)
    with pytest.raises(ValueError, match="AutoModelForCausalLM cannot build"):
        CLMConfig(decoder_config={"model_type": "vit"})
    with pytest.raises(ValueError, match="eos_token_id 500 is outside the vocabulary"):
        CLMConfig(decoder_config=TINY_GPT2, vocab_size=100, eos_token_id=500)


def test_continued_pretraining_starts_from_a_causal_lm_folder_with_its_tokenizer(tmp_path):
    from transformers import GPT2Config

    from hfssl.models.clm.data import load_tokenizer, train_byte_level_bpe

    texts = ["The cat sat on the mat.", "Über naïve café, 3.14 €!"] * 20
    tokenizer = train_byte_level_bpe(iter(texts), 300)
    assert tokenizer.eos_token == "<|endoftext|>" and tokenizer.eos_token_id == 0
    for text in texts[:2]:  # byte-level: every text round-trips, no unknown token
        assert tokenizer.decode(tokenizer(text)["input_ids"]) == text
    start = GPT2LMHeadModel(GPT2Config(vocab_size=len(tokenizer), n_embd=32, n_layer=2, n_head=2, n_positions=64,
                                       eos_token_id=0, bos_token_id=0))
    start.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    config = CLMConfig(backbone_name_or_path=str(tmp_path), max_seq_length=32)
    assert config.vocab_size == len(tokenizer) and config.eos_token_id == 0
    model = CLMForPreTraining(config)
    assert model.load_pretrained_weights() == [str(tmp_path)]
    for name, value in start.state_dict().items():
        assert torch.equal(model.language_model.state_dict()[name], value), name
    assert load_tokenizer(str(tmp_path)).pad_token == "<|endoftext|>"
    with pytest.raises(ValueError, match="differs from the .* embeddings"):
        CLMConfig(backbone_name_or_path=str(tmp_path), vocab_size=999)
