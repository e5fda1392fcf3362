"""gradprobe.networks.gpt: GPT-2's parameter count, tied weights, init scales, and the same
function as Hugging Face's GPT2LMHeadModel with the same weights."""
import math

import pytest
import torch

from gradprobe.networks.gpt import from_hf_state_dict, gpt, gpt_parameter_count


def test_gpt2_small_has_gpt2s_parameter_count():
    with torch.device("meta"):
        model = gpt()
    assert sum(p.numel() for p in model.parameters()) == 124_439_808 == gpt_parameter_count()
    assert model.lm_head.weight is model.transformer.wte.weight


def test_initialization_scales_and_causality():
    model = gpt(n_layer=8, n_head=4, n_embd=128, vocab_size=300, block_size=32,
                generator=torch.Generator().manual_seed(0))
    assert float(model.transformer.h[0].attn.c_attn.weight.std()) == pytest.approx(0.02, rel=0.05)
    assert float(model.transformer.h[0].mlp.c_proj.weight.std()) == pytest.approx(0.02 / math.sqrt(16), rel=0.05)
    idx = torch.randint(0, 300, (2, 10))
    changed = idx.clone()
    changed[:, 7] = (changed[:, 7] + 1) % 300
    with torch.no_grad():
        a, b = model(idx), model(changed)
    assert torch.allclose(a[:, :7], b[:, :7]) and not torch.allclose(a[:, 7:], b[:, 7:])   # causal
    with pytest.raises(ValueError, match="divisible"):
        gpt(n_head=5, n_embd=64)


def test_same_function_as_hugging_face_gpt2():
    transformers = pytest.importorskip("transformers")
    config = transformers.GPT2Config(n_layer=2, n_embd=64, n_head=4, vocab_size=97, n_positions=32)
    torch.manual_seed(0)
    hf = transformers.GPT2LMHeadModel(config).eval()
    ours = gpt(n_layer=2, n_head=4, n_embd=64, vocab_size=97, block_size=32).eval()
    ours.load_state_dict(from_hf_state_dict(hf.state_dict()), strict=True)
    idx = torch.randint(0, 97, (3, 20), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.allclose(ours(idx), hf(input_ids=idx).logits, atol=1e-5)
