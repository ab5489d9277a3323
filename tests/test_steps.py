"""Step splitting: separator ids from a real (locally built) BPE tokenizer, step ends."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from tokenizers import Tokenizer, models
from transformers import PreTrainedTokenizerFast

import purejax as pj


@pytest.fixture(scope="module")
def tokenizer():
    # BPE merges the separator into ".\n\n", "$$\n\n" and "\n\n\n", as Qwen's vocabulary does.
    vocab = {
        "<eos>": 0,
        "a": 1,
        "b": 2,
        ".": 3,
        "\n": 4,
        "\n\n": 5,
        ".\n\n": 6,
        "$$": 7,
        "$$\n\n": 8,
        "\n\n\n": 9,
        "\n\na": 10,
        "$": 11,
    }
    merges = [("$", "$"), ("\n", "\n"), (".", "\n\n"), ("$$", "\n\n"), ("\n\n", "\n"), ("\n\n", "a")]
    return PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer(models.BPE(vocab=vocab, merges=merges)), eos_token="<eos>"
    )


def test_separator_ids_match_a_naive_scan(tokenizer):
    ids = pj.separator_ids(tokenizer)
    naive = [i for i in range(len(tokenizer)) if tokenizer.decode([i]).endswith("\n\n")]
    np.testing.assert_array_equal(ids, naive)
    np.testing.assert_array_equal(ids, [5, 6, 8, 9])  # "\n\na" does not END with the separator
    assert ids.dtype == np.int32


def test_separator_ids_errors(tokenizer):
    with pytest.raises(ValueError, match="`separator` must be a non-empty string"):
        pj.separator_ids(tokenizer, "")
    with pytest.raises(ValueError, match="no token of this tokenizer"):
        pj.separator_ids(tokenizer, "###")


def test_step_end_mask_on_encoded_text(tokenizer):
    ids = tokenizer("a.\n\nb\n\nb$$\n\nb\n\nab")["input_ids"] + [0]
    # BPE merges: a | .\n\n | b | \n\n | b | $$\n\n | b | \n\na | b | <eos>
    assert ids == [1, 6, 2, 5, 2, 8, 2, 10, 2, 0]
    width = 12
    tokens = np.zeros(width, np.int32)
    tokens[: len(ids)] = ids
    mask = np.arange(width) < len(ids)
    ends = pj.step_end_mask(jnp.array(tokens), jnp.array(mask), pj.separator_ids(tokenizer))
    expected = np.zeros(width, bool)
    expected[[1, 3, 5, len(ids) - 1]] = True  # "\n\na" starts a step, ends none
    np.testing.assert_array_equal(ends, expected)


def test_step_end_mask_truncated_and_empty_rows():
    sep = jnp.array([7, 3])  # unsorted on purpose
    tokens = jnp.array([[1, 3, 2, 2, 2], [1, 7, 2, 0, 0], [3, 3, 0, 0, 0]])
    mask = jnp.array([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0], [0, 0, 0, 0, 0]])
    ends = jax.jit(jax.vmap(pj.step_end_mask, (0, 0, None)))(tokens, mask, sep)
    np.testing.assert_array_equal(ends, [[0, 1, 0, 0, 1], [0, 1, 1, 0, 0], [0, 0, 0, 0, 0]])
    np.testing.assert_array_equal(pj.step_ids(ends[0], mask[0]), [0, 0, 1, 1, 1])


def test_step_end_mask_bad_input():
    with pytest.raises(TypeError, match="`tokens_t` must be an integer array"):
        pj.step_end_mask(jnp.zeros(4), jnp.ones(4), jnp.array([1]))
    with pytest.raises(ValueError, match="`separator_ids` is empty"):
        pj.step_end_mask(jnp.zeros(4, jnp.int32), jnp.ones(4), jnp.zeros(0, jnp.int32))
    with pytest.raises(ValueError, match="`tokens_t` \\(4,\\), `mask_t` \\(3,\\)"):
        pj.step_end_mask(jnp.zeros(4, jnp.int32), jnp.ones(3), jnp.array([1]))
