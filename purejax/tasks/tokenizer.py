"""A small byte-level BPE tokenizer for the arithmetic task, built locally and deterministically.

It is a miniature of Qwen2.5's tokenizer, so the project's code meets the same
cases it meets on real models:

- the same pre-tokenizer regex: digits are split one per token (arithmetic on
  digit tokens is learnable), and punctuation is merged with the newlines after
  it, so BPE learns separator tokens such as ".\\n\\n" next to a bare "\\n\\n"
  (`purejax.steps.separator_ids` must find both);
- byte-level BPE ("Ġ" for a space, "Ċ" for a newline) with a ByteLevel decoder;
- special tokens <pad> (0), <eos> (1) and <unk> (2); characters outside the
  alphabet map to <unk>.

The merges are learned by `tokenizers`' BpeTrainer on a fixed corpus (prompts
and every trace kind of `purejax.tasks.arith`, from a fixed seed), whose result
depends only on that corpus: the same vocabulary on every machine and run.
Saved in HF format, it loads with `transformers.AutoTokenizer.from_pretrained`.
"""

from __future__ import annotations

import numpy as np
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from purejax.tasks import arith

PAD, EOS, UNK = "<pad>", "<eos>", "<unk>"
SPECIAL_TOKENS = (PAD, EOS, UNK)  # ids 0, 1, 2
# Qwen2.5's pre-tokenizer pattern (its tokenizer.json), verbatim.
QWEN_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+"
    r"[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
# Every character the task can print, so the alphabet does not depend on the corpus sample.
ALPHABET = "0123456789+-*=()[]{}.,:;!?'\"\\/ \nabcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
DEFAULT_VOCAB_SIZE = 192


def _corpus(n_problems: int, seed: int, spec: arith.ArithSpec) -> list[str]:
    """Prompts + responses of every trace kind for train problems (a fixed sample)."""
    problems = arith.make_problems("train", n_problems, seed=seed, spec=spec)
    rng = np.random.default_rng([seed, 11])
    texts = []
    for p in problems:
        texts.append(p.prompt)
        texts.extend(arith.render_trace(p, kind, rng) for kind in arith.TOKENIZER_TRACE_KINDS)
    return texts


def build_tokenizer(
    vocab_size: int = DEFAULT_VOCAB_SIZE,
    n_problems: int = 1000,
    seed: int = 0,
    spec: arith.ArithSpec = arith.ArithSpec(),
) -> PreTrainedTokenizerFast:
    """Trains the task's BPE tokenizer; the same arguments give the same vocabulary.

    Args:
      vocab_size: total size including the special tokens and the byte-level
        alphabet (~57 symbols); 120-300 is sensible for this task.
      n_problems: problems in the training corpus.
      seed: corpus seed.
      spec: the problems of the corpus.

    Returns:
      A PreTrainedTokenizerFast with pad/eos/unk set; `save_pretrained(dir)` it.
    """
    byte_alphabet = sorted(set(_byte_level(ALPHABET)))
    if not isinstance(vocab_size, int) or vocab_size < len(byte_alphabet) + len(SPECIAL_TOKENS):
        raise ValueError(
            f"build_tokenizer: vocab_size must be an int >= "
            f"{len(byte_alphabet) + len(SPECIAL_TOKENS)} (specials + alphabet), "
            f"got {vocab_size!r}."
        )
    tok = Tokenizer(models.BPE(unk_token=UNK))
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(QWEN_PATTERN), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=byte_alphabet,
        limit_alphabet=len(byte_alphabet),
        show_progress=False,
    )
    tok.train_from_iterator(_corpus(n_problems, seed, spec), trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token=PAD, eos_token=EOS, unk_token=UNK, clean_up_tokenization_spaces=False
    )


def _byte_level(text: str) -> str:
    """`text` in ByteLevel's printable alphabet (" " -> "Ġ", "\\n" -> "Ċ")."""
    table = _bytes_to_unicode()
    return "".join(table[b] for b in text.encode("utf-8"))


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable character map (what ByteLevel uses)."""
    printable = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    chars, extra = list(printable), 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + extra)
            extra += 1
    return dict(zip(printable, (chr(c) for c in chars)))
