"""Build a tiny, deterministic cross-encoder reranker that real rerank servers can load.

    python build_tiny_reranker.py --out DIR

Writes into DIR:
  hf/                 an HF ``BertForSequenceClassification`` checkpoint (one relevance logit), with a
                      WordPiece tokenizer (tokenizer.json, vocab.txt): what infinity and sentence-transformers load
  tiny-reranker.gguf  the same weights for llama.cpp (arch bert, pooling rank: its /v1/rerank)
  info.json           sizes and sha256 of the outputs

Needs only numpy, tokenizers, safetensors and gguf (no torch), like build_tiny_model.py. Seeded random
weights of a real architecture: scores mean nothing, the work per document is a real BERT's.

Shape: hidden 64, 2 layers, 2 heads, intermediate 128, 512 positions, 2 token types; the vocabulary is
BERT's specials, letters and digits (each also as a ``##`` continuation) and common English words.
The HF pooler (dense + tanh) is the GGUF's ``cls`` and the classifier its ``cls.output``, which is how
llama.cpp computes a BERT reranker's score, so both engines run the same network.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import string
import sys
from pathlib import Path

import numpy as np

SEED = 20261203
HIDDEN, LAYERS, HEADS, INTERMEDIATE, POSITIONS = 64, 2, 2, 128, 512
EPS = 1e-12
MODEL_NAME = "tiny-reranker"
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
WORDS = [  # common English words (one token each in most vocabularies) and a few of servewise's own
    "the", "of", "and", "to", "in", "is", "that", "for", "it", "as", "was", "with", "be", "by", "on", "not",
    "he", "this", "are", "or", "his", "from", "at", "which", "but", "have", "an", "they", "you", "were",
    "her", "she", "there", "been", "one", "all", "we", "their", "has", "would", "when", "what", "if",
    "will", "more", "no", "out", "so", "said", "can", "who", "about", "do", "time", "up", "them", "some",
    "could", "him", "into", "its", "then", "two", "may", "only", "first", "over", "new", "like", "our",
    "other", "such", "most", "word", "query", "document", "answer", "model", "server", "request", "token",
    "cache", "fast", "slow", "red", "fox", "dog", "cat"
]  # fmt: skip


def vocabulary() -> list[str]:
    chars = list(string.ascii_lowercase + string.digits + string.punctuation)
    return SPECIALS + chars + ["##" + c for c in chars] + sorted(set(WORDS) - set(chars))


def make_tokenizer(vocab: list[str]):
    from tokenizers import Tokenizer, decoders, normalizers, pre_tokenizers, processors
    from tokenizers.models import WordPiece

    tok = Tokenizer(
        WordPiece({t: i for i, t in enumerate(vocab)}, unk_token="[UNK]", max_input_chars_per_word=100)
    )
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.BertProcessing(
        ("[SEP]", vocab.index("[SEP]")), ("[CLS]", vocab.index("[CLS]"))
    )
    tok.decoder = decoders.WordPiece()
    return tok


def make_weights(vocab_size: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(SEED)

    def normal(*shape: int) -> np.ndarray:
        return (rng.standard_normal(shape) * 0.02).astype(np.float32)

    def zeros(n: int) -> np.ndarray:
        return np.zeros(n, dtype=np.float32)

    def ones(n: int) -> np.ndarray:
        return np.ones(n, dtype=np.float32)

    w = {
        "bert.embeddings.word_embeddings.weight": normal(vocab_size, HIDDEN),
        "bert.embeddings.position_embeddings.weight": normal(POSITIONS, HIDDEN),
        "bert.embeddings.token_type_embeddings.weight": normal(2, HIDDEN),
        "bert.embeddings.LayerNorm.weight": ones(HIDDEN),
        "bert.embeddings.LayerNorm.bias": zeros(HIDDEN),
    }
    for i in range(LAYERS):
        p = f"bert.encoder.layer.{i}."
        for name in (
            "attention.self.query",
            "attention.self.key",
            "attention.self.value",
            "attention.output.dense",
        ):
            w[p + name + ".weight"], w[p + name + ".bias"] = normal(HIDDEN, HIDDEN), zeros(HIDDEN)
        w[p + "attention.output.LayerNorm.weight"], w[p + "attention.output.LayerNorm.bias"] = (
            ones(HIDDEN),
            zeros(HIDDEN),
        )
        w[p + "intermediate.dense.weight"], w[p + "intermediate.dense.bias"] = (
            normal(INTERMEDIATE, HIDDEN),
            zeros(INTERMEDIATE),
        )
        w[p + "output.dense.weight"], w[p + "output.dense.bias"] = normal(HIDDEN, INTERMEDIATE), zeros(HIDDEN)
        w[p + "output.LayerNorm.weight"], w[p + "output.LayerNorm.bias"] = ones(HIDDEN), zeros(HIDDEN)
    w["bert.pooler.dense.weight"], w["bert.pooler.dense.bias"] = normal(HIDDEN, HIDDEN), zeros(HIDDEN)
    w["classifier.weight"], w["classifier.bias"] = (
        (rng.standard_normal((1, HIDDEN)) * 0.5).astype(np.float32),
        zeros(1),
    )
    return w


def write_hf(out: Path, tok, vocab: list[str], weights: dict[str, np.ndarray]) -> None:
    from safetensors.numpy import save_file

    out.mkdir(parents=True)
    config = {
        "architectures": ["BertForSequenceClassification"], "model_type": "bert", "vocab_size": len(vocab),
        "hidden_size": HIDDEN, "num_hidden_layers": LAYERS, "num_attention_heads": HEADS,
        "intermediate_size": INTERMEDIATE, "hidden_act": "gelu", "max_position_embeddings": POSITIONS,
        "type_vocab_size": 2, "layer_norm_eps": EPS, "pad_token_id": 0, "num_labels": 1,
        "id2label": {"0": "LABEL_0"}, "label2id": {"LABEL_0": 0}, "torch_dtype": "float32",
        "hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0,
    }  # fmt: skip
    (out / "config.json").write_text(json.dumps(config, indent=2))
    save_file(weights, str(out / "model.safetensors"), metadata={"format": "pt"})
    tok.save(str(out / "tokenizer.json"))
    (out / "vocab.txt").write_text("\n".join(vocab) + "\n")
    specials = {
        "unk_token": "[UNK]",
        "sep_token": "[SEP]",
        "pad_token": "[PAD]",
        "cls_token": "[CLS]",
        "mask_token": "[MASK]",
    }
    (out / "special_tokens_map.json").write_text(json.dumps(specials))
    tok_config = {
        "tokenizer_class": "BertTokenizerFast",
        "do_lower_case": True,
        "model_max_length": POSITIONS,
        **specials,
    }
    (out / "tokenizer_config.json").write_text(json.dumps(tok_config, indent=2))


def write_gguf(path: Path, vocab: list[str], weights: dict[str, np.ndarray]) -> None:
    import gguf

    control = {vocab.index(t) for t in SPECIALS}
    # llama.cpp's BERT vocabulary: a word-start token carries U+2581, a continuation drops its "##"
    tokens = [
        t if i in control else t[2:] if t.startswith("##") else "\u2581" + t for i, t in enumerate(vocab)
    ]
    types = [gguf.TokenType.CONTROL if i in control else gguf.TokenType.NORMAL for i in range(len(vocab))]
    wr = gguf.GGUFWriter(str(path), arch="bert")
    wr.add_name(MODEL_NAME)
    wr.add_context_length(POSITIONS)
    wr.add_embedding_length(HIDDEN)
    wr.add_block_count(LAYERS)
    wr.add_feed_forward_length(INTERMEDIATE)
    wr.add_head_count(HEADS)
    wr.add_layer_norm_eps(EPS)
    wr.add_causal_attention(False)
    wr.add_pooling_type(gguf.PoolingType.RANK)
    wr.add_file_type(gguf.LlamaFileType.ALL_F32)
    wr.add_tokenizer_model("bert")
    wr.add_tokenizer_pre("default")
    wr.add_token_list(tokens)
    wr.add_token_types(types)
    wr.add_token_type_count(2)
    wr.add_bos_token_id(vocab.index("[CLS]"))  # BERT: a pair is [CLS] query [SEP] document [SEP]
    wr.add_eos_token_id(vocab.index("[SEP]"))
    wr.add_sep_token_id(vocab.index("[SEP]"))
    wr.add_pad_token_id(vocab.index("[PAD]"))
    wr.add_unk_token_id(vocab.index("[UNK]"))
    wr.add_mask_token_id(vocab.index("[MASK]"))
    wr.add_add_bos_token(True)
    wr.add_add_eos_token(True)
    names = {
        "bert.embeddings.word_embeddings.weight": "token_embd.weight",
        "bert.embeddings.position_embeddings.weight": "position_embd.weight",
        "bert.embeddings.token_type_embeddings.weight": "token_types.weight",
        "bert.embeddings.LayerNorm.weight": "token_embd_norm.weight",
        "bert.embeddings.LayerNorm.bias": "token_embd_norm.bias",
        "bert.pooler.dense.weight": "cls.weight",
        "bert.pooler.dense.bias": "cls.bias",
        "classifier.weight": "cls.output.weight",
        "classifier.bias": "cls.output.bias",
    }
    per_layer = {
        "attention.self.query": "attn_q", "attention.self.key": "attn_k", "attention.self.value": "attn_v",
        "attention.output.dense": "attn_output", "attention.output.LayerNorm": "attn_output_norm",
        "intermediate.dense": "ffn_up", "output.dense": "ffn_down", "output.LayerNorm": "layer_output_norm",
    }  # fmt: skip
    for i in range(LAYERS):
        for hf, gg in per_layer.items():
            for kind in ("weight", "bias"):
                names[f"bert.encoder.layer.{i}.{hf}.{kind}"] = f"blk.{i}.{gg}.{kind}"
    for hf_name, arr in weights.items():
        wr.add_tensor(names[hf_name], np.ascontiguousarray(arr, dtype=np.float32))  # [out, in], as HF
    wr.write_header_to_file()
    wr.write_kv_data_to_file()
    wr.write_tensors_to_file()
    wr.close()


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    out = parser.parse_args(argv).out
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    vocab = vocabulary()
    weights = make_weights(len(vocab))
    write_hf(tmp / "hf", make_tokenizer(vocab), vocab, weights)
    write_gguf(tmp / f"{MODEL_NAME}.gguf", vocab, weights)
    info = {"name": MODEL_NAME, "vocab_size": len(vocab), "hidden": HIDDEN, "layers": LAYERS,
            "sha256": {n: sha256(tmp / n) for n in (f"{MODEL_NAME}.gguf", "hf/model.safetensors")}}  # fmt: skip
    (tmp / "info.json").write_text(json.dumps(info, indent=2))
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    print(json.dumps(info))
    return 0


if __name__ == "__main__":
    sys.exit(main())
