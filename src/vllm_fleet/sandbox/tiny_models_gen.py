"""Generate tiny random-weight models that real vLLM serves on a CPU. Runs INSIDE the vLLM image.

The vLLM image already has torch, transformers and tokenizers, so the controller needs none of them:
`tiny_models.generate()` pipes this file to `python3 -` in a throw-away container of that image.
Usage: python3 tiny_models_gen.py OUT_DIR WHEELS_DIR   (writes OUT_DIR/tiny-chat, tiny-embed, tiny-rerank,
tiny-chat-lora; WHEELS_DIR holds the pure-Python wheels of PEFT and Accelerate, unpacked here and imported)

- tiny-chat: Qwen2ForCausalLM (hidden 128, 2 layers, 2 heads of dim 64, 1 KV head, vocab 512, bf16),
  a byte-level BPE tokenizer trained on a few sentences, and a ChatML chat template.
- tiny-embed: BertModel (hidden 128, 2 layers, 2 heads, 256 positions), WordPiece tokenizer.
- tiny-rerank: BertForSequenceClassification with num_labels=1 (a cross-encoder), same tokenizer.
- tiny-chat-lora: a LoRA adapter made with PEFT (rank 8, q_proj and v_proj) on tiny-chat, initialised with
  init_lora_weights=False so that its B matrices are not zero (PEFT's default init changes nothing) and greedy
  answers differ from the base model's.
Weights are seeded, so the same image writes the same models.
"""

# ruff: noqa: S106  (eos_token, pad_token... are tokenizer special tokens, not passwords)
import sys
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import (
    BertConfig,
    BertForSequenceClassification,
    BertModel,
    PreTrainedTokenizerFast,
    Qwen2Config,
    Qwen2ForCausalLM,
)

CORPUS = [
    "vLLM serves large language models behind an OpenAI compatible API.",
    "The quick brown fox jumps over the lazy dog.",
    "Hello! How can I help you today? I am a tiny test model.",
    "GPU hosts run containers; each service listens on its own port.",
    "Embeddings map text to vectors; a reranker scores query and document pairs.",
    "What is the capital of France? Paris is the capital of France.",
    "system user assistant tool function call arguments name content",
] * 20

CHATML = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def chat_model(out: Path) -> None:
    special = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(CORPUS, trainers.BpeTrainer(vocab_size=512, special_tokens=special,
                                                        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                   bos_token=None, unk_token=None)
    fast.chat_template = CHATML
    cfg = Qwen2Config(
        vocab_size=512, hidden_size=128, intermediate_size=256, num_hidden_layers=2, num_attention_heads=2,
        num_key_value_heads=1, max_position_embeddings=1024, tie_word_embeddings=True, torch_dtype="bfloat16",
        eos_token_id=fast.convert_tokens_to_ids("<|im_end|>"),
        pad_token_id=fast.convert_tokens_to_ids("<|endoftext|>"), bos_token_id=None,
    )
    model = Qwen2ForCausalLM(cfg).to(torch.bfloat16)
    model.save_pretrained(out, safe_serialization=True)
    fast.save_pretrained(out)


def bert_tokenizer() -> PreTrainedTokenizerFast:
    special = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    tok.train_from_iterator(CORPUS, trainers.WordPieceTrainer(vocab_size=512, special_tokens=special))
    cls_id, sep_id = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)],
    )
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]",
                                   cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]",
                                   model_max_length=256)


def bert_config(vocab: int, **extra) -> BertConfig:
    return BertConfig(vocab_size=vocab, hidden_size=128, intermediate_size=256, num_hidden_layers=2,
                      num_attention_heads=2, max_position_embeddings=256, torch_dtype="float32", **extra)


def embed_model(out: Path) -> None:
    fast = bert_tokenizer()
    BertModel(bert_config(len(fast))).save_pretrained(out, safe_serialization=True)
    fast.save_pretrained(out)


def rerank_model(out: Path) -> None:
    fast = bert_tokenizer()
    model = BertForSequenceClassification(bert_config(len(fast), num_labels=1))
    model.save_pretrained(out, safe_serialization=True)
    fast.save_pretrained(out)


LORA_RANK = 8


def chat_lora(out: Path) -> None:
    """adapter_config.json and adapter_model.safetensors, written by PEFT itself on tiny-chat (written first)."""
    from peft import LoraConfig, get_peft_model

    base = Qwen2ForCausalLM.from_pretrained(str(out.parent / "tiny-chat"))
    config = LoraConfig(r=LORA_RANK, lora_alpha=2 * LORA_RANK, lora_dropout=0.0, target_modules=["q_proj", "v_proj"],
                        init_lora_weights=False, task_type="CAUSAL_LM")
    get_peft_model(base, config).save_pretrained(str(out))


def unpack_wheels(wheels: Path, site: Path) -> None:
    """Pure-Python wheels are zip files laid out for site-packages: unpacked and put first on sys.path."""
    import zipfile

    for wheel in sorted(wheels.glob("*.whl")):
        with zipfile.ZipFile(wheel) as zf:
            zf.extractall(site)
    sys.path.insert(0, str(site))


def main() -> None:
    out = Path(sys.argv[1])
    unpack_wheels(Path(sys.argv[2]), Path("/tmp/peft-site"))
    for name, make in (("tiny-chat", chat_model), ("tiny-embed", embed_model), ("tiny-rerank", rerank_model),
                       ("tiny-chat-lora", chat_lora)):
        torch.manual_seed(0)
        target = out / name
        target.mkdir(parents=True, exist_ok=True)
        make(target)
        print(f"{name}: {sum(f.stat().st_size for f in target.iterdir())} bytes")


if __name__ == "__main__":
    main()
