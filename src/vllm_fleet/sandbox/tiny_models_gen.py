"""Generate tiny random-weight models that real vLLM serves on a CPU. Runs INSIDE the vLLM image.

The vLLM image already has torch, transformers and tokenizers, so the controller needs none of them:
`tiny_models.generate()` pipes this file to `python3 -` in a throw-away container of that image.
Usage: python3 tiny_models_gen.py OUT_DIR WHEELS_DIR LESSONS   (writes OUT_DIR/tiny-chat, tiny-embed,
tiny-rerank, tiny-chat-lora; WHEELS_DIR holds the pure-Python wheels of PEFT and Accelerate, unpacked here and
imported; LESSONS is tiny_chat_lessons.json)

- tiny-chat: Qwen2ForCausalLM (hidden 128, 2 layers, 2 heads of dim 64, 1 KV head, vocab 512, bf16),
  a byte-level BPE tokenizer trained on a few sentences, and a ChatML chat template. It is trained for a few
  seconds on the lessons' questions, so that its greedy answer to each is that lesson's sentence (checked here
  before anything is written: generation fails rather than write a model that answers otherwise).
- tiny-embed: BertModel (hidden 128, 2 layers, 2 heads, 256 positions), WordPiece tokenizer.
- tiny-rerank: BertForSequenceClassification with num_labels=1 (a cross-encoder), same tokenizer.
- tiny-chat-lora: a LoRA adapter made with PEFT (rank 8, every linear layer) on tiny-chat, trained the same way
  on the adapter's lessons (the base model frozen), so that it answers them recognisably otherwise.
Weights are seeded, so the same image writes the same models.
"""

# ruff: noqa: S106  (eos_token, pad_token... are tokenizer special tokens, not passwords)
import json
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


# Each lesson is learnt as the whole ChatML exchange; the loss counts only the answer and its end token. The
# adapter, a rank-8 update of two projections on a frozen base, needs a higher rate to unlearn the base's answer.
STEPS = 400
LEARNING_RATE = 3e-3
ADAPTER_LEARNING_RATE = 5e-3


def exchange(fast: PreTrainedTokenizerFast, lesson: dict) -> tuple[list[int], list[int]]:
    """(input ids, labels) of one lesson: the prompt as vLLM renders it, then the answer and <|im_end|>."""
    prompt = fast.apply_chat_template([{"role": "user", "content": lesson["user"]}], tokenize=False,
                                      add_generation_prompt=True)
    head = fast(prompt, add_special_tokens=False)["input_ids"]
    tail = fast(lesson["assistant"] + "<|im_end|>", add_special_tokens=False)["input_ids"]
    return head + tail, [-100] * len(head) + tail


def teach(model: torch.nn.Module, fast: PreTrainedTokenizerFast, lessons: list[dict],
          learning_rate: float = LEARNING_RATE) -> None:
    """Full-batch AdamW on the lessons until the model has learnt them (a few seconds on a CPU)."""
    pairs = [exchange(fast, lesson) for lesson in lessons]
    width = max(len(ids) for ids, _ in pairs)
    pad = fast.pad_token_id
    ids = torch.tensor([i + [pad] * (width - len(i)) for i, _ in pairs])
    labels = torch.tensor([lab + [-100] * (width - len(lab)) for _, lab in pairs])
    mask = torch.tensor([[1] * len(i) + [0] * (width - len(i)) for i, _ in pairs])
    trained = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trained, lr=learning_rate, weight_decay=0.0)
    model.train()
    for _ in range(STEPS):
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    print(f"trained on {len(lessons)} lesson(s): final loss {loss.item():.4f}")


def check_answers(model: torch.nn.Module, fast: PreTrainedTokenizerFast, lessons: list[dict]) -> None:
    """Greedy answers, in bf16 as vLLM serves the model, must be the lessons' sentences exactly."""
    for lesson in lessons:
        prompt = fast.apply_chat_template([{"role": "user", "content": lesson["user"]}], tokenize=False,
                                          add_generation_prompt=True)
        ids = torch.tensor([fast(prompt, add_special_tokens=False)["input_ids"]])
        with torch.no_grad():
            out = model.generate(ids, max_new_tokens=48, do_sample=False, eos_token_id=fast.eos_token_id,
                                 pad_token_id=fast.pad_token_id)
        answer = fast.decode(out[0, ids.shape[1]:], skip_special_tokens=True)
        if answer != lesson["assistant"]:
            raise SystemExit(f"the tiny model did not learn its lesson: asked {lesson['user']!r}, it answers "
                             f"{answer!r}, not {lesson['assistant']!r}")


def chat_tokenizer(lessons: dict) -> PreTrainedTokenizerFast:
    special = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    said = [f"{x['user']} {x['assistant']}" for x in lessons["model"] + lessons["adapter"]] * 20
    tok.train_from_iterator(CORPUS + said, trainers.BpeTrainer(vocab_size=512, special_tokens=special,
                                                               initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                   bos_token=None, unk_token=None)
    fast.chat_template = CHATML
    return fast


def chat_model(out: Path, lessons: dict) -> None:
    fast = chat_tokenizer(lessons)
    cfg = Qwen2Config(
        vocab_size=512, hidden_size=128, intermediate_size=256, num_hidden_layers=2, num_attention_heads=2,
        num_key_value_heads=1, max_position_embeddings=1024, tie_word_embeddings=True, torch_dtype="bfloat16",
        eos_token_id=fast.convert_tokens_to_ids("<|im_end|>"),
        pad_token_id=fast.convert_tokens_to_ids("<|endoftext|>"), bos_token_id=None,
    )
    model = Qwen2ForCausalLM(cfg)
    teach(model, fast, lessons["model"])
    model = model.to(torch.bfloat16)
    check_answers(model, fast, lessons["model"])
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


def embed_model(out: Path, lessons: dict) -> None:
    fast = bert_tokenizer()
    BertModel(bert_config(len(fast))).save_pretrained(out, safe_serialization=True)
    fast.save_pretrained(out)


def rerank_model(out: Path, lessons: dict) -> None:
    fast = bert_tokenizer()
    model = BertForSequenceClassification(bert_config(len(fast), num_labels=1))
    model.save_pretrained(out, safe_serialization=True)
    fast.save_pretrained(out)


LORA_RANK = 8
# Every linear layer of the decoder: a rank-8 update of the attention alone could not outvote the base's answer.
LORA_MODULES = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def chat_lora(out: Path, lessons: dict) -> None:
    """adapter_config.json and adapter_model.safetensors, written by PEFT itself on tiny-chat (written first),
    trained on the adapter's lessons with the base model frozen."""
    from peft import LoraConfig, get_peft_model

    base = Qwen2ForCausalLM.from_pretrained(str(out.parent / "tiny-chat"), torch_dtype=torch.float32)
    fast = PreTrainedTokenizerFast.from_pretrained(str(out.parent / "tiny-chat"))
    config = LoraConfig(r=LORA_RANK, lora_alpha=2 * LORA_RANK, lora_dropout=0.0, target_modules=LORA_MODULES,
                        task_type="CAUSAL_LM")
    model = get_peft_model(base, config)
    teach(model, fast, lessons["adapter"], ADAPTER_LEARNING_RATE)
    check_answers(model.to(torch.bfloat16), fast, lessons["adapter"])
    model.save_pretrained(str(out))


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
    lessons = json.loads(Path(sys.argv[3]).read_text())
    for name, make in (("tiny-chat", chat_model), ("tiny-embed", embed_model), ("tiny-rerank", rerank_model),
                       ("tiny-chat-lora", chat_lora)):
        torch.manual_seed(0)
        target = out / name
        target.mkdir(parents=True, exist_ok=True)
        make(target, lessons)
        print(f"{name}: {sum(f.stat().st_size for f in target.iterdir())} bytes")


if __name__ == "__main__":
    main()
