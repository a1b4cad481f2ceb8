"""Build a tiny, deterministic Llama that real serving engines can load.

    python build_tiny_model.py --out DIR

Writes into DIR:
  hf/      an HF Llama checkpoint (config.json, model.safetensors, tokenizer.json,
           tokenizer_config.json with a ChatML chat template, generation_config.json)
  tiny-llama.gguf   the same weights and tokenizer as a GGUF file for llama.cpp (F32)
  info.json         sizes, special-token ids, sha256 of the outputs

Needs only numpy, tokenizers, safetensors and gguf (no torch). Everything is seeded: the
training text, the BPE, and the weights are identical on every run.

Shape: hidden 128, 2 layers, 2 attention heads (head_dim 64), 1 KV head, intermediate 256,
vocab ~2k from a byte-level BPE trained on text generated here. The output-head rows of every
token except plain words (" word") are zero and the word rows are large, so greedy *and*
sampled output is a readable stream of words and never an end-of-turn token: generation runs
to max_tokens, which makes output lengths exact.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import re
import shutil
import sys
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np

SEED = 20251125
HIDDEN = 128
LAYERS = 2
HEADS = 2
KV_HEADS = 1
HEAD_DIM = HIDDEN // HEADS  # 64: vLLM's CPU attention accepts only some head sizes
INTERMEDIATE = 256
VOCAB_TARGET = 2048
CTX = 4096
RMS_EPS = 1e-5
ROPE_THETA = 10000.0
MODEL_NAME = "tiny-llama"

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

_COMMON_WORDS_TEXT = """
the of and to in is it you that he was for on are with as his they be at one have this from or
had by word but what some we can out other were all there when up use your how said an each she
which do their time if will way about many then them write would like so these her long make thing
see him two has look more day could go come did number sound no most people my over know water than
call first who may down side been now find any new work part take get place made live where after
back little only round man year came show every good me give our under name very through just form
sentence great think say help low line differ turn cause much mean before move right boy old too same
tell does set three want air well also play small end put home read hand port large spell add even
land here must big high such follow act why ask men change went light kind off need house picture try
us again animal point mother world near build self earth father head stand own page should country
found answer school grow study still learn plant cover food sun four between state keep eye never
last let thought city tree cross farm hard start might story saw far sea draw left late run while
press close night real life few north open seem together next white children begin got walk example
ease paper group always music those both mark often letter until mile river car feet care second
book carry took science eat room friend began idea fish mountain stop once base hear horse cut sure
watch color face wood main enough plain girl usual young ready above ever red list though feel talk
bird soon body dog family direct pose leave song measure door product black short numeral class wind
question happen complete ship area half rock order fire south problem piece told knew pass since top
whole king space heard best hour better true during hundred five remember step early hold west ground
interest reach fast verb sing listen six table travel less morning ten simple several vowel toward war
lay against pattern slow center love person money serve appear road map rain rule govern pull cold
notice voice unit power town fine certain fly fall lead cry dark machine note wait plan figure star
box noun field rest correct able pound done beauty drive stood contain front teach week final gave
green quick develop ocean warm free minute strong special mind behind clear tail produce fact street
inch multiply nothing course stay wheel full force blue object decide surface deep moon island foot
system busy test record boat common gold possible plane stead dry wonder laugh thousand ago ran check
game shape equate hot miss brought heat snow tire bring yes distant fill east paint language among
"""
COMMON_WORDS = _COMMON_WORDS_TEXT.split()

SYLLABLES = (  # noqa: SIM905
    "ba be bi bo bu da de di do du ka ke ki ko ku la le li lo lu ma me mi mo mu na ne ni no nu "
    "pa pe pi po pu ra re ri ro ru sa se si so su ta te ti to tu va ve vi vo vu za ze zi zo zu"
).split()


def make_words(rng: random.Random) -> list[str]:
    words = list(dict.fromkeys(COMMON_WORDS))
    seen = set(words)
    while len(words) < 1400:
        w = "".join(rng.choice(SYLLABLES) for _ in range(rng.randint(2, 4)))
        if w not in seen:
            seen.add(w)
            words.append(w)
    return words


def make_corpus(rng: random.Random, words: list[str], n_sentences: int = 30000) -> list[str]:
    # Zipf-like weights so common words merge first; digits and punctuation appear too.
    weights = [1.0 / (i + 10) ** 0.8 for i in range(len(words))]
    lines = []
    for _ in range(n_sentences):
        n = rng.randint(4, 16)
        ws = rng.choices(words, weights=weights, k=n)
        if rng.random() < 0.2:
            ws.insert(rng.randrange(len(ws)), str(rng.randint(0, 999)))
        if rng.random() < 0.3:
            ws[0] = ws[0].capitalize()
        sep = rng.choice([". ", "? ", "! ", ", ", ". "])
        lines.append(" ".join(ws) + sep.strip())
    return lines


def train_tokenizer(lines: list[str]):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_TARGET,
        min_frequency=2,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(lines, trainer=trainer, length=len(lines))
    return tok


def plain_word_ids(vocab: dict[str, int]) -> list[int]:
    # Byte-level form: "Ġ" is a leading space. A plain word is " " + 2 or more lowercase letters.
    pat = re.compile(r"^Ġ[a-z]{2,}$")
    return sorted(i for t, i in vocab.items() if pat.match(t))


def make_weights(vocab_size: int, word_ids: list[int]) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(SEED)
    std = 0.02

    def normal(*shape, s=std):
        return (rng.standard_normal(shape) * s).astype(np.float32)

    w: dict[str, np.ndarray] = {}
    w["model.embed_tokens.weight"] = normal(vocab_size, HIDDEN, s=1.0)
    for i in range(LAYERS):
        p = f"model.layers.{i}."
        w[p + "input_layernorm.weight"] = np.ones(HIDDEN, dtype=np.float32)
        w[p + "self_attn.q_proj.weight"] = normal(HEADS * HEAD_DIM, HIDDEN, s=0.1)
        w[p + "self_attn.k_proj.weight"] = normal(KV_HEADS * HEAD_DIM, HIDDEN, s=0.1)
        w[p + "self_attn.v_proj.weight"] = normal(KV_HEADS * HEAD_DIM, HIDDEN, s=0.1)
        w[p + "self_attn.o_proj.weight"] = normal(HIDDEN, HEADS * HEAD_DIM, s=0.1)
        w[p + "post_attention_layernorm.weight"] = np.ones(HIDDEN, dtype=np.float32)
        w[p + "mlp.gate_proj.weight"] = normal(INTERMEDIATE, HIDDEN, s=0.1)
        w[p + "mlp.up_proj.weight"] = normal(INTERMEDIATE, HIDDEN, s=0.1)
        w[p + "mlp.down_proj.weight"] = normal(HIDDEN, INTERMEDIATE, s=0.1)
    w["model.norm.weight"] = np.ones(HIDDEN, dtype=np.float32)
    # After the final RMSNorm |h| ~ sqrt(128) ~ 11, so word logits ~ N(0, 11^2): the best word
    # scores ~ +35 while every non-word token scores exactly 0 (probability ~ e^-35).
    head = np.zeros((vocab_size, HIDDEN), dtype=np.float32)
    head[word_ids] = normal(len(word_ids), HIDDEN, s=1.0)
    w["lm_head.weight"] = head
    return w


def write_hf(out: Path, tok, weights: dict[str, np.ndarray], ids: dict[str, int], vocab_size: int) -> None:
    from safetensors.numpy import save_file

    out.mkdir(parents=True, exist_ok=True)
    save_file(weights, str(out / "model.safetensors"), metadata={"format": "pt"})
    tok.save(str(out / "tokenizer.json"))
    config = {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": HIDDEN,
        "intermediate_size": INTERMEDIATE,
        "num_hidden_layers": LAYERS,
        "num_attention_heads": HEADS,
        "num_key_value_heads": KV_HEADS,
        "head_dim": HEAD_DIM,
        "hidden_act": "silu",
        "max_position_embeddings": CTX,
        "rms_norm_eps": RMS_EPS,
        "rope_theta": ROPE_THETA,
        "rope_scaling": None,
        "attention_bias": False,
        "attention_dropout": 0.0,
        "mlp_bias": False,
        "initializer_range": 0.02,
        "pretraining_tp": 1,
        "use_cache": True,
        "vocab_size": vocab_size,
        "tie_word_embeddings": False,
        "torch_dtype": "float32",
        "bos_token_id": ids["<|endoftext|>"],
        "eos_token_id": ids["<|im_end|>"],
        "pad_token_id": ids["<|endoftext|>"],
    }
    (out / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    gen = {
        "bos_token_id": ids["<|endoftext|>"],
        "eos_token_id": ids["<|im_end|>"],
        "pad_token_id": ids["<|endoftext|>"],
    }
    (out / "generation_config.json").write_text(json.dumps(gen, indent=2, sort_keys=True) + "\n")
    added = {
        str(ids[t]): {
            "content": t,
            "lstrip": False,
            "normalized": False,
            "rstrip": False,
            "single_word": False,
            "special": True,
        }
        for t in SPECIAL_TOKENS
    }
    tcfg = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "model_max_length": CTX,
        "model_input_names": ["input_ids", "attention_mask"],
        "bos_token": None,
        "eos_token": "<|im_end|>",
        "pad_token": "<|endoftext|>",
        "unk_token": None,
        "add_bos_token": False,
        "add_eos_token": False,
        "clean_up_tokenization_spaces": False,
        "added_tokens_decoder": added,
        "chat_template": CHAT_TEMPLATE,
    }
    (out / "tokenizer_config.json").write_text(json.dumps(tcfg, indent=2, sort_keys=True) + "\n")
    stm = {"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>"}
    (out / "special_tokens_map.json").write_text(json.dumps(stm, indent=2, sort_keys=True) + "\n")


def _permute_rope(w: np.ndarray, n_head: int) -> np.ndarray:
    # HF Llama uses the rotate-half (NeoX) layout; llama.cpp's "llama" arch expects the
    # interleaved one. Same permutation as llama.cpp's convert_hf_to_gguf.py.
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def write_gguf(path: Path, tok, weights: dict[str, np.ndarray], ids: dict[str, int], vocab_size: int) -> None:
    import gguf

    tj = json.loads(tok.to_str())
    vocab: dict[str, int] = tj["model"]["vocab"]
    for t in tj["added_tokens"]:
        vocab[t["content"]] = t["id"]
    tokens = [""] * vocab_size
    for t, i in vocab.items():
        tokens[i] = t
    assert all(tokens), "vocab ids are not dense"
    specials = {ids[t] for t in SPECIAL_TOKENS}
    types = [gguf.TokenType.CONTROL if i in specials else gguf.TokenType.NORMAL for i in range(vocab_size)]
    merges = [m if isinstance(m, str) else " ".join(m) for m in tj["model"]["merges"]]

    wr = gguf.GGUFWriter(str(path), arch="llama")
    wr.add_name(MODEL_NAME)
    wr.add_context_length(CTX)
    wr.add_embedding_length(HIDDEN)
    wr.add_block_count(LAYERS)
    wr.add_feed_forward_length(INTERMEDIATE)
    wr.add_head_count(HEADS)
    wr.add_head_count_kv(KV_HEADS)
    wr.add_rope_dimension_count(HEAD_DIM)
    wr.add_rope_freq_base(ROPE_THETA)
    wr.add_layer_norm_rms_eps(RMS_EPS)
    wr.add_vocab_size(vocab_size)
    wr.add_file_type(gguf.LlamaFileType.ALL_F32)
    wr.add_tokenizer_model("gpt2")
    wr.add_tokenizer_pre("gpt-2")
    wr.add_token_list(tokens)
    wr.add_token_types(types)
    wr.add_token_merges(merges)
    wr.add_bos_token_id(ids["<|endoftext|>"])
    wr.add_eos_token_id(ids["<|im_end|>"])
    wr.add_pad_token_id(ids["<|endoftext|>"])
    wr.add_add_bos_token(False)
    wr.add_add_eos_token(False)
    wr.add_chat_template(CHAT_TEMPLATE)

    names = {
        "model.embed_tokens.weight": "token_embd.weight",
        "model.norm.weight": "output_norm.weight",
        "lm_head.weight": "output.weight",
    }
    per_layer = {
        "input_layernorm.weight": "attn_norm.weight",
        "self_attn.q_proj.weight": "attn_q.weight",
        "self_attn.k_proj.weight": "attn_k.weight",
        "self_attn.v_proj.weight": "attn_v.weight",
        "self_attn.o_proj.weight": "attn_output.weight",
        "post_attention_layernorm.weight": "ffn_norm.weight",
        "mlp.gate_proj.weight": "ffn_gate.weight",
        "mlp.up_proj.weight": "ffn_up.weight",
        "mlp.down_proj.weight": "ffn_down.weight",
    }
    for i in range(LAYERS):
        for k, v in per_layer.items():
            names[f"model.layers.{i}.{k}"] = f"blk.{i}.{v}"
    for hf_name, arr in weights.items():
        if hf_name.endswith("q_proj.weight"):
            arr = _permute_rope(arr, HEADS)
        elif hf_name.endswith("k_proj.weight"):
            arr = _permute_rope(arr, KV_HEADS)
        # numpy [out, in] (HF layout); the writer stores it as ggml ne = [in, out]
        wr.add_tensor(names[hf_name], np.ascontiguousarray(arr, dtype=np.float32))
    wr.write_header_to_file()
    wr.write_kv_data_to_file()
    wr.write_tensors_to_file()
    wr.close()


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True, type=Path)
    args = ap.parse_args(argv)
    out: Path = args.out
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)

    rng = random.Random(SEED)
    words = make_words(rng)
    lines = make_corpus(rng, words)
    tok = train_tokenizer(lines)
    vocab = tok.get_vocab(with_added_tokens=True)
    vocab_size = len(vocab)
    ids = {t: tok.token_to_id(t) for t in SPECIAL_TOKENS}
    word_ids = plain_word_ids(vocab)
    if len(word_ids) < 200:
        print(f"too few plain-word tokens: {len(word_ids)}", file=sys.stderr)
        return 1
    weights = make_weights(vocab_size, word_ids)

    write_hf(tmp / "hf", tok, weights, ids, vocab_size)
    gguf_path = tmp / f"{MODEL_NAME}.gguf"
    write_gguf(gguf_path, tok, weights, ids, vocab_size)

    info = {
        "name": MODEL_NAME,
        "seed": SEED,
        "vocab_size": vocab_size,
        "plain_word_tokens": len(word_ids),
        "special_token_ids": ids,
        "hidden": HIDDEN,
        "layers": LAYERS,
        "heads": HEADS,
        "kv_heads": KV_HEADS,
        "head_dim": HEAD_DIM,
        "context": CTX,
        "sha256": {
            "hf/model.safetensors": sha256(tmp / "hf" / "model.safetensors"),
            "hf/tokenizer.json": sha256(tmp / "hf" / "tokenizer.json"),
            f"{MODEL_NAME}.gguf": sha256(gguf_path),
        },
    }
    (tmp / "info.json").write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    print(json.dumps(info, indent=2, sort_keys=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
