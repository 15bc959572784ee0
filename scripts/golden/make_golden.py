#!/usr/bin/env python3
"""Golden logits for moeserve's CPU engine, from Hugging Face transformers (the reference).

For a tiny random Qwen3MoeForCausalLM, Qwen3ForCausalLM and Qwen3NextForCausalLM this script
  1. builds the config and a byte-level BPE tokenizer in code (no network, nothing downloaded),
  2. randomises EVERY parameter (norms 1 +- 0.5, a decisive router, peaked output logits) and
     rounds it to float16,
  3. computes in float32 on the GPU (TF32 off) the logits of a fixed prompt (37 tokens; 150 for
     Qwen3-Next: two delta-net chunks of 64 and an odd 22) and of 5 greedy decode steps that
     use the KV cache,
  4. saves the checkpoint as float16 safetensors, sharded (max_shard_size="2MB"), with config.json,
     tokenizer.json, tokenizer_config.json and generation_config.json, plus logits.bin,
     tokens.json and README.md,
  5. reloads the checkpoint from disk and checks that it holds the same parameters and reproduces
     the same logits (catches save/load layout surprises, e.g. fused expert tensors).
Any mismatch or ambiguity (near-tied argmax, near-tied routing) stops the script with an error.

Usage (GPU machine with PyTorch 2.11 and transformers 5.17):
    python3 scripts/golden/make_golden.py tests/data/golden [--only qwen3next]
writes tests/data/golden/qwen3moe-tiny/, qwen3-tiny/ and qwen3next-tiny/.
"""
import argparse
import json
import os
import random
import struct
import sys

import torch
import transformers
from transformers import Qwen3Config, Qwen3ForCausalLM, Qwen3MoeConfig, Qwen3MoeForCausalLM

try:
    from transformers import Qwen3NextConfig, Qwen3NextForCausalLM
except ImportError:  # older transformers: qwen3next goldens cannot be made
    Qwen3NextConfig = Qwen3NextForCausalLM = None

SEED = 20261126
N_PROMPT, N_DECODE = 37, 5
N_PROMPT_BY_KIND = {"qwen3next": 150}  # > two delta-net chunks of 64, odd remainder
CLASSES = {"qwen3moe": lambda: Qwen3MoeForCausalLM, "qwen3": lambda: Qwen3ForCausalLM,
           "qwen3next": lambda: Qwen3NextForCausalLM}
VOCAB, N_BPE = 320, 312          # ids 0..255 bytes, 256..311 merges, 312..316 added tokens, 317..319 unused
SPECIALS = [("<|endoftext|>", True), ("<|im_start|>", True), ("<|im_end|>", True), ("<think>", False), ("</think>", False)]
CHAT_TEMPLATE = ("{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + "
                 "'<|im_end|>' + '\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")
MAX_FILE_BYTES = 4 * 1024 * 1024


def die(msg):
    print(f"make_golden: ERROR: {msg}", file=sys.stderr)
    sys.exit(1)


# ---------------------------------------------------------------------------------------------
# Tokenizer: GPT-2 byte alphabet + merges learned here by a tiny deterministic BPE.

def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


TRAIN_TEXT = ("the quick brown fox jumps over the lazy dog. she sells sea shells by the sea shore. "
              "in the beginning there was the word, and the word was with the model. hello world! "
              "experts route tokens; the router picks the top two experts for every token. ") * 4


def train_merges(n_merges):
    enc = bytes_to_unicode()
    words = {}
    for w in TRAIN_TEXT.split(" "):
        key = tuple(enc[b] for b in (" " + w).encode("utf-8"))
        words[key] = words.get(key, 0) + 1
    merges = []
    for _ in range(n_merges):
        pairs = {}
        for w, c in words.items():
            for a, b in zip(w, w[1:]):
                pairs[(a, b)] = pairs.get((a, b), 0) + c
        if not pairs:
            die("training text too small for the requested merges")
        best = max(pairs.items(), key=lambda kv: (kv[1], [-ord(ch) for ch in kv[0][0] + kv[0][1]]))[0]
        merges.append(best)
        new_words = {}
        for w, c in words.items():
            out, i = [], 0
            while i < len(w):
                if i + 1 < len(w) and (w[i], w[i + 1]) == best:
                    out.append(w[i] + w[i + 1])
                    i += 2
                else:
                    out.append(w[i])
                    i += 1
            new_words[tuple(out)] = new_words.get(tuple(out), 0) + c
        words = new_words
    return merges


def write_tokenizer(out_dir, config):
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers
    enc = bytes_to_unicode()
    vocab = {enc[b]: b for b in range(256)}
    merges = train_merges(N_BPE - 256)
    for a, b in merges:
        if a + b in vocab:
            die(f"merge {a!r} {b!r} produced an existing token")
        vocab[a + b] = len(vocab)
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, fuse_unk=False, byte_fallback=False))
    qwen2_split = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(qwen2_split), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    for text, special in SPECIALS:
        if special:
            tok.add_special_tokens([AddedToken(text, special=True, normalized=False)])
        else:
            tok.add_tokens([AddedToken(text, special=False, normalized=False)])
    for i, (text, _) in enumerate(SPECIALS):
        if tok.token_to_id(text) != N_BPE + i:
            die(f"added token {text} got id {tok.token_to_id(text)}, expected {N_BPE + i}")
    tok.save(os.path.join(out_dir, "tokenizer.json"))
    with open(os.path.join(out_dir, "tokenizer_config.json"), "w") as f:
        json.dump({"bos_token": None, "eos_token": "<|im_end|>", "pad_token": "<|endoftext|>", "add_bos_token": False,
                   "model_max_length": config.max_position_embeddings, "chat_template": CHAT_TEMPLATE,
                   "tokenizer_class": "PreTrainedTokenizerFast"}, f, indent=2)


# ---------------------------------------------------------------------------------------------
# Model.

def common_config_kwargs(rope_style, theta=1e6, layers=2, **rope_extra):
    # transformers 5 takes rope_parameters; older versions took rope_theta. make_config checks
    # which one took effect.
    rope = ({"rope_parameters": {"rope_type": "default", "rope_theta": theta, **rope_extra}} if rope_style == "parameters"
            else {"rope_theta": theta})
    return dict(vocab_size=VOCAB, hidden_size=256, num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2,
                head_dim=64, max_position_embeddings=4096, rms_norm_eps=1e-6, **rope, attention_bias=False,
                use_sliding_window=False, hidden_act="silu", bos_token_id=N_BPE, eos_token_id=N_BPE + 2,
                pad_token_id=N_BPE, attn_implementation="eager")


def make_config(kind):
    theta = 1e7 if kind == "qwen3next" else 1e6
    for rope_style in ("parameters", "theta"):
        if kind == "qwen3next":
            if Qwen3NextConfig is None:
                die("this transformers has no Qwen3NextConfig")
            # The real ratios: 3 delta-nets : 1 attention, 2 value heads per key head, GQA 2,
            # a quarter of each head rotated, a shared expert; widths multiples of 256 where
            # they are row lengths (hidden 256, value dim 256, expert ff 256).
            cfg = Qwen3NextConfig(**common_config_kwargs(rope_style, theta, 4, partial_rotary_factor=0.25),
                                  partial_rotary_factor=0.25, intermediate_size=512, num_experts=8,
                                  num_experts_per_tok=2, moe_intermediate_size=256,
                                  shared_expert_intermediate_size=256, norm_topk_prob=True, decoder_sparse_step=1,
                                  mlp_only_layers=[], full_attention_interval=4, linear_conv_kernel_dim=4,
                                  linear_key_head_dim=64, linear_value_head_dim=64, linear_num_key_heads=2,
                                  linear_num_value_heads=4, tie_word_embeddings=False)
        elif kind == "qwen3moe":
            cfg = Qwen3MoeConfig(**common_config_kwargs(rope_style), intermediate_size=512, num_experts=4,
                                 num_experts_per_tok=2, moe_intermediate_size=256, norm_topk_prob=True,
                                 decoder_sparse_step=1, mlp_only_layers=[], tie_word_embeddings=False)
        else:
            cfg = Qwen3Config(**common_config_kwargs(rope_style), intermediate_size=512, tie_word_embeddings=True)
        rp = getattr(cfg, "rope_parameters", None) or {}
        got = rp.get("rope_theta", getattr(cfg, "rope_theta", None))
        if got == theta:
            break
    else:
        die(f"{kind}: rope_theta {theta} did not take (rope_parameters={rp}); adapt make_config to this transformers version")
    if kind == "qwen3next":
        prf = rp.get("partial_rotary_factor", getattr(cfg, "partial_rotary_factor", None))
        if prf != 0.25:
            die(f"qwen3next: partial_rotary_factor 0.25 did not take ({prf})")
        types = getattr(cfg, "layer_types", None)
        if types and list(types) != ["linear_attention"] * 3 + ["full_attention"]:
            die(f"qwen3next: unexpected layer_types {types}")
    if cfg.tie_word_embeddings != (kind == "qwen3"):
        die(f"{kind}: tie_word_embeddings did not take")
    return cfg


def randomise(model, hidden):
    """Every parameter, deterministically; then rounded to float16 values (kept in float32)."""
    g = torch.Generator().manual_seed(SEED)
    zero_centred = model.config.model_type == "qwen3_next"  # Qwen3NextRMSNorm computes x * (1 + w)
    with torch.no_grad():
        for name, p in sorted(model.named_parameters(), key=lambda kv: kv[0]):
            if name.endswith("linear_attn.norm.weight"):
                v = 1.0 + (torch.rand(p.shape, generator=g) - 0.5)            # gated norm: plain weight
            elif name.endswith("norm.weight") and zero_centred:
                v = torch.rand(p.shape, generator=g) - 0.5                    # applied as 1 + w: 1 +- 0.5
            elif name.endswith("norm.weight"):
                v = 1.0 + (torch.rand(p.shape, generator=g) - 0.5)            # 1 +- 0.5
            elif name.endswith("A_log"):
                v = torch.log(1.0 + 15.0 * torch.rand(p.shape, generator=g))  # A in [1, 16], as HF's init
            elif name.endswith("dt_bias"):
                v = -6.9 + 4.65 * torch.rand(p.shape, generator=g)            # softplus^-1 of dt in [0.001, 0.1]
            elif name.endswith("conv1d.weight"):
                v = torch.randn(p.shape, generator=g) * 0.5
            elif name.endswith("mlp.gate.weight"):
                v = torch.randn(p.shape, generator=g) * (4.0 / hidden ** 0.5)  # router logits ~N(0, 4)
            elif name in ("lm_head.weight",) or (name == "model.embed_tokens.weight" and model.config.tie_word_embeddings):
                v = torch.randn(p.shape, generator=g) * (4.0 / hidden ** 0.5)  # output logits ~N(0, 4)
            else:
                v = torch.randn(p.shape, generator=g) / p.shape[-1] ** 0.5     # fan_in = contiguous dim
            p.copy_(v.half().float())
    n_params = sum(1 for _ in model.parameters())
    print(f"  randomised {n_params} parameter tensors")


@torch.no_grad()
def run_reference(model, prompt, device):
    """Logits for the prompt (one forward) and N_DECODE greedy steps through the KV cache."""
    moe = model.config.model_type in ("qwen3_moe", "qwen3_next")
    extra = {"output_router_logits": True} if moe else {}
    out = model(input_ids=torch.tensor([prompt], device=device), use_cache=True, **extra)
    rows = [out.logits[0].float().cpu()]
    check_routing(model, out)
    past = out.past_key_values
    nxt = pick(rows[-1][-1])
    decoded = []
    for _ in range(N_DECODE):
        decoded.append(nxt)
        out = model(input_ids=torch.tensor([[nxt]], device=device), past_key_values=past, use_cache=True, **extra)
        check_routing(model, out)
        past = out.past_key_values
        rows.append(out.logits[0].float().cpu())
        nxt = pick(rows[-1][-1])
    logits = torch.cat(rows, 0)
    if tuple(logits.shape) != (len(prompt) + N_DECODE, VOCAB):
        die(f"logits shape {tuple(logits.shape)}")
    # The cached path must agree with one uncached forward over the whole sequence.
    full = model(input_ids=torch.tensor([prompt + decoded], device=device), use_cache=False).logits[0].float().cpu()
    diff = (full - logits).abs().max().item()
    if diff > 1e-3:
        die(f"KV-cache decode disagrees with the full forward by {diff}")
    return logits, decoded, nxt, diff


def pick(row):
    top = torch.topk(row, 2).values
    if (top[0] - top[1]).item() < 1e-2:
        die(f"greedy choice is ambiguous (top-2 logits {top.tolist()}); change SEED")
    return int(torch.argmax(row).item())


def check_routing(model, out):
    router = getattr(out, "router_logits", None)
    if model.config.model_type not in ("qwen3_moe", "qwen3_next"):
        return
    if not router:
        die("no router_logits returned; cannot check that routing is decisive")
    for layer, r in enumerate(router):
        r = r.reshape(-1, r.shape[-1]).float()
        s = torch.sort(r, dim=-1, descending=True).values
        gap = (s[:, 1] - s[:, 2]).min().item()
        if gap < 1e-3:
            die(f"layer {layer}: 2nd and 3rd router logits within {gap}: routing ambiguous; change SEED")


def expert_layout(out_dir):
    with open(os.path.join(out_dir, "model.safetensors.index.json")) as f:
        names = json.load(f)["weight_map"].keys()
    if any(".mlp.experts.gate_up_proj" in n for n in names):
        return "fused (mlp.experts.gate_up_proj / down_proj)"
    if any(".mlp.experts.0.gate_proj.weight" in n for n in names):
        return "per-expert (mlp.experts.E.{gate,up,down}_proj.weight)"
    return "dense (no experts)"


def build(kind, root, device):
    out_dir = os.path.join(root, f"{kind}-tiny")
    os.makedirs(out_dir, exist_ok=True)
    print(f"== {kind} -> {out_dir}")
    cfg = make_config(kind)
    torch.manual_seed(SEED)
    model = CLASSES[kind]()(cfg)
    randomise(model, cfg.hidden_size)
    model = model.float().to(device).eval()
    reference = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}

    rng = random.Random(SEED)
    n_prompt = N_PROMPT_BY_KIND.get(kind, N_PROMPT)
    prompt = [N_BPE + 1] + [rng.randrange(0, N_BPE) for _ in range(n_prompt - 2)] + [N_BPE + 2]
    logits, decoded, next_token, cache_diff = run_reference(model, prompt, device)

    model.to(torch.float16).save_pretrained(out_dir, max_shard_size="2MB")
    write_tokenizer(out_dir, cfg)
    for name in sorted(os.listdir(out_dir)):
        size = os.path.getsize(os.path.join(out_dir, name))
        if size > MAX_FILE_BYTES:
            die(f"{name} is {size} bytes (limit {MAX_FILE_BYTES})")
    if not os.path.exists(os.path.join(out_dir, "model.safetensors.index.json")):
        die("checkpoint was not sharded; lower max_shard_size")
    layout = expert_layout(out_dir)

    # Reload from disk: same parameters, same logits.
    cls = CLASSES[kind]()
    again = cls.from_pretrained(out_dir, dtype=torch.float32, attn_implementation="eager").to(device).eval()
    state = {k: v.detach().cpu() for k, v in again.state_dict().items()}
    if state.keys() != reference.keys():
        die(f"reloaded parameters differ: {sorted(state.keys() ^ reference.keys())[:8]}")
    for k, v in reference.items():
        if not torch.equal(state[k], v):
            die(f"reloaded parameter {k} differs (max {(state[k] - v).abs().max().item()})")
    logits2, decoded2, _, _ = run_reference(again, prompt, device)
    if decoded2 != decoded or (logits2 - logits).abs().max().item() > 1e-6:
        die(f"reloaded checkpoint gives different logits ({(logits2 - logits).abs().max().item()}) or tokens")

    with open(os.path.join(out_dir, "logits.bin"), "wb") as f:
        f.write(struct.pack(f"<{logits.numel()}f", *logits.flatten().tolist()))
    with open(os.path.join(out_dir, "tokens.json"), "w") as f:
        json.dump({"prompt": prompt, "decoded": decoded, "next_after_decode": next_token,
                   "logits_rows": n_prompt + N_DECODE, "vocab_size": VOCAB}, f, indent=1)
    write_readme(out_dir, kind, layout, cache_diff, n_prompt)
    print(f"  prompt {len(prompt)} tokens, decoded {decoded}, expert layout: {layout}, cache diff {cache_diff:.2e}")


DESCRIPTIONS = {
    "qwen3moe": "Qwen3MoeForCausalLM (4 experts, 2 used, moe_intermediate_size 256, untied lm_head); n_embd 256, "
                "2 layers, 4 heads / 2 KV heads, head_dim 64, vocab 320, rope_theta 1e6, rms eps 1e-6",
    "qwen3": "Qwen3ForCausalLM (intermediate_size 512, tied embeddings); n_embd 256, 2 layers, 4 heads / 2 KV "
             "heads, head_dim 64, vocab 320, rope_theta 1e6, rms eps 1e-6",
    "qwen3next": "Qwen3NextForCausalLM (4 layers: 3 gated delta-nets (2 key heads, 4 value heads of 64, conv "
                 "kernel 4) and 1 gated attention (4 heads / 2 KV heads, head_dim 64, partial_rotary_factor "
                 "0.25); 8 experts, 2 used, moe_intermediate_size 256, shared expert 256, untied lm_head); "
                 "n_embd 256, vocab 320, rope_theta 1e7, rms eps 1e-6. Zero-centred norms get w in +-0.5 "
                 "(applied as 1 + w), the gated norm 1 +- 0.5, A = exp(A_log) in [1, 16], dt_bias in "
                 "[-6.9, -2.25], conv taps N(0, 0.25)",
}


def write_readme(out_dir, kind, layout, cache_diff, n_prompt):
    text = f"""# {kind}-tiny golden data

Made by `scripts/golden/make_golden.py` (seed {SEED}) with torch {torch.__version__}, transformers
{transformers.__version__}, on {torch.cuda.get_device_name() if torch.cuda.is_available() else 'CPU'}.

* Checkpoint: a random {DESCRIPTIONS[kind]}.
  Every parameter random: norm weights 1 +- 0.5, router and output scaled to N(0, 4) logits, other
  weights N(0, 1/fan_in); all rounded to float16 and saved as float16 safetensors in 2 MB shards
  (expert layout as saved by this transformers: {layout}).
  Tokenizer: byte-level BPE built in code (256 bytes + 56 merges, ChatML specials at 312..316).
* `logits.bin`: float32 little-endian [{n_prompt + N_DECODE}][{VOCAB}], computed in float32 on the GPU with TF32 off
  and eager attention. Rows 0..{n_prompt - 1}: logits after each prompt token (one forward of the
  prompt). Rows {n_prompt}..{n_prompt + N_DECODE - 1}: logits after feeding `decoded[k]` through the KV cache.
* `tokens.json`: `prompt` ({n_prompt} ids), `decoded` (the {N_DECODE} greedy tokens fed back: decoded[0] is the
  argmax of row {n_prompt - 1}, decoded[k] of row {n_prompt - 1}+k), `next_after_decode` (argmax of the last row).
* Checks done when it was made: reloading the checkpoint reproduces every parameter and the
  logits exactly; the cached decode matches one uncached forward (max diff {cache_diff:.1e});
  greedy choices have a top-2 gap >= 0.01; {'no router.' if kind == 'qwen3' else 'router top-2/3rd gaps >= 1e-3.'}

Compare: `moeserve convert {kind}-tiny -o {kind}-tiny-f32.gguf --type f32`, run the prompt, compare logits.
"""
    with open(os.path.join(out_dir, "README.md"), "w") as f:
        f.write(text)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("output_root")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--only", choices=sorted(CLASSES), help="make one model's goldens only")
    args = ap.parse_args()
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        die("CUDA is not available (use --device cpu only for a dry run; goldens must come from the GPU)")
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.set_float32_matmul_precision("highest")
    print(f"torch {torch.__version__}, transformers {transformers.__version__}")
    for kind in ([args.only] if args.only else ["qwen3moe", "qwen3", "qwen3next"]):
        build(kind, args.output_root, torch.device(args.device))


if __name__ == "__main__":
    main()
