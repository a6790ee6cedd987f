"""Write ``liveact-18b.json``: the public checkpoint's keys and shapes, derived from the published
architecture (liveact-method.md section 5), independently of the model code.

Run: python tests/manifests/make_liveact_18b.py
"""

from __future__ import annotations

import json
from pathlib import Path

D, FFN, LAYERS, TEXT_DIM, FREQ, CLIP = 5120, 13824, 40, 4096, 256, 1280
IN_DIM, OUT_DIM, PATCH = 36, 16, (1, 2, 2)
AUDIO_OUT, AUDIO_MID, AUDIO_TOKENS = 768, 512, 32
AUDIO_FIRST_IN = 5 * 12 * 768  # 5 taps x 12 layers x 768
AUDIO_LATER_IN = 8 * 12 * 768  # 8 taps


def linear(name: str, out: int, inp: int) -> dict[str, list[int]]:
    return {f"{name}.weight": [out, inp], f"{name}.bias": [out]}


def norm(name: str, dim: int, bias: bool = True) -> dict[str, list[int]]:
    return {f"{name}.weight": [dim], **({f"{name}.bias": [dim]} if bias else {})}


def manifest() -> dict[str, list[int]]:
    keys: dict[str, list[int]] = {
        "patch_embedding.weight": [D, IN_DIM, *PATCH],
        "patch_embedding.bias": [D],
        **linear("text_embedding.0", D, TEXT_DIM),
        **linear("text_embedding.2", D, D),
        **linear("time_embedding.0", D, FREQ),
        **linear("time_embedding.2", D, D),
        **linear("time_projection.1", 6 * D, D),
        **norm("img_emb.proj.0", CLIP),
        **linear("img_emb.proj.1", CLIP, CLIP),
        **linear("img_emb.proj.3", D, CLIP),
        **norm("img_emb.proj.4", D),
        **linear("head.head", 4 * OUT_DIM, D),
        "head.modulation": [1, 2, D],
        **linear("audio_proj.proj1", AUDIO_MID, AUDIO_FIRST_IN),
        **linear("audio_proj.proj1_vf", AUDIO_MID, AUDIO_LATER_IN),
        **linear("audio_proj.proj2", AUDIO_MID, AUDIO_MID),
        **linear("audio_proj.proj3", AUDIO_TOKENS * AUDIO_OUT, AUDIO_MID),
        **norm("audio_proj.norm", AUDIO_OUT),
    }
    for n in range(LAYERS):
        b = f"blocks.{n}"
        for lin in ("q", "k", "v", "o"):
            keys |= linear(f"{b}.self_attn.{lin}", D, D)
        keys |= norm(f"{b}.self_attn.norm_q", D, bias=False) | norm(f"{b}.self_attn.norm_k", D, bias=False)
        keys[f"{b}.self_attn.memory_proj_k.weight"] = [D, 1, 5]
        keys[f"{b}.self_attn.memory_proj_v.weight"] = [D, 1, 5]
        keys |= norm(f"{b}.norm3", D)
        for lin in ("q", "k", "v", "o", "k_img", "v_img"):
            keys |= linear(f"{b}.cross_attn.{lin}", D, D)
        for nm in ("norm_q", "norm_k", "norm_k_img"):
            keys |= norm(f"{b}.cross_attn.{nm}", D, bias=False)
        keys |= linear(f"{b}.ffn.0", FFN, D) | linear(f"{b}.ffn.2", D, FFN)
        keys[f"{b}.modulation"] = [1, 6, D]
        keys |= linear(f"{b}.audio_cross_attn.q_linear", D, D)
        keys |= linear(f"{b}.audio_cross_attn.kv_linear", 2 * D, AUDIO_OUT)
        keys |= linear(f"{b}.audio_cross_attn.proj", D, D)
        keys |= norm(f"{b}.norm_x", D)
    return dict(sorted(keys.items()))


if __name__ == "__main__":
    out = Path(__file__).with_name("liveact-18b.json")
    out.write_text(json.dumps(manifest(), indent=0, separators=(",", ":")) + "\n")
    print(f"wrote {out} ({len(manifest())} keys)")
