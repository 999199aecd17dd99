#!/usr/bin/env python3
"""Convert sentence-transformers all-MiniLM-L6-v2 (safetensors + tokenizer.json) to a GGUF that
llama.cpp loads as a BERT embedding model with mean pooling.

Only numpy and the `gguf` package are needed (no torch). Tensor names and metadata follow llama.cpp's
own BERT converter: WordPiece vocabulary in "phantom space" form, mean pooling, non-causal attention.
Usage: convert_minilm.py MODEL_DIR OUT.gguf
"""
import json
import struct
import sys
from pathlib import Path

import numpy as np
import gguf

DTYPES = {"F32": np.float32, "F16": np.float16, "I64": np.int64}


def read_safetensors(path: Path) -> dict:
    """Parse a safetensors file: 8-byte little-endian header length, a JSON header, then raw data."""
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    base = 8 + n
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        start, end = info["data_offsets"]
        arr = np.frombuffer(raw[base + start : base + end], dtype=DTYPES[info["dtype"]])
        out[name.removeprefix("bert.")] = arr.reshape(info["shape"])
    return out


def tensor_map(n_layers: int) -> dict:
    m = {
        "embeddings.word_embeddings.weight": "token_embd.weight",
        "embeddings.token_type_embeddings.weight": "token_types.weight",
        "embeddings.position_embeddings.weight": "position_embd.weight",
        "embeddings.LayerNorm.weight": "token_embd_norm.weight",
        "embeddings.LayerNorm.bias": "token_embd_norm.bias",
    }
    parts = {
        "attention.self.query": "attn_q",
        "attention.self.key": "attn_k",
        "attention.self.value": "attn_v",
        "attention.output.dense": "attn_output",
        "attention.output.LayerNorm": "attn_output_norm",
        "intermediate.dense": "ffn_up",
        "output.dense": "ffn_down",
        "output.LayerNorm": "layer_output_norm",
    }
    for i in range(n_layers):
        for hf, gg in parts.items():
            for kind in ("weight", "bias"):
                m[f"encoder.layer.{i}.{hf}.{kind}"] = f"blk.{i}.{gg}.{kind}"
    return m


def phantom(tok: str) -> str:
    if tok.startswith("[") and tok.endswith("]"):
        return tok
    if tok.startswith("##"):
        return tok[2:]
    return "\u2581" + tok


def main() -> None:
    model_dir, out = Path(sys.argv[1]), sys.argv[2]
    cfg = json.loads((model_dir / "config.json").read_text())
    tok = json.loads((model_dir / "tokenizer.json").read_text())
    vocab = tok["model"]["vocab"]
    tokens = [t for t, _ in sorted(vocab.items(), key=lambda kv: kv[1])]
    special = {t["content"] for t in tok.get("added_tokens", []) if t.get("special")}

    w = gguf.GGUFWriter(out, "bert")
    w.add_name("all-MiniLM-L6-v2")
    w.add_context_length(cfg["max_position_embeddings"])
    w.add_embedding_length(cfg["hidden_size"])
    w.add_feed_forward_length(cfg["intermediate_size"])
    w.add_block_count(cfg["num_hidden_layers"])
    w.add_head_count(cfg["num_attention_heads"])
    w.add_layer_norm_eps(cfg["layer_norm_eps"])
    w.add_causal_attention(False)
    w.add_pooling_type(gguf.PoolingType.MEAN)
    w.add_file_type(gguf.LlamaFileType.MOSTLY_F16)

    w.add_tokenizer_model("bert")
    w.add_tokenizer_pre("default")
    w.add_token_list([phantom(t) for t in tokens])
    w.add_token_types([gguf.TokenType.CONTROL if t in special else gguf.TokenType.NORMAL for t in tokens])
    w.add_token_type_count(cfg["type_vocab_size"])
    ids = {t: vocab[t] for t in ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")}
    w.add_pad_token_id(ids["[PAD]"])
    w.add_unk_token_id(ids["[UNK]"])
    w.add_bos_token_id(ids["[CLS]"])  # llama.cpp treats BERT's [CLS] as its BOS
    w.add_sep_token_id(ids["[SEP]"])
    w.add_mask_token_id(ids["[MASK]"])

    weights = read_safetensors(model_dir / "model.safetensors")
    names = tensor_map(cfg["num_hidden_layers"])
    for hf, gg in names.items():
        arr = weights[hf].astype(np.float32)
        # 1-D tensors (norms, biases) stay f32; matrices become f16, as llama.cpp's converter does.
        # token_types stays f32 too: llama.cpp adds its first row to the activations directly, and
        # its CPU add has no f32 + f16 form.
        keep_f32 = arr.ndim == 1 or gg == "token_types.weight"
        w.add_tensor(gg, arr if keep_f32 else arr.astype(np.float16))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


if __name__ == "__main__":
    main()
