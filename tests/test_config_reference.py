"""The README's configuration reference is generated from the schema and stays true."""

import os

from purejax import config_reference

README = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "README.md")


def test_every_field_is_documented():
    assert config_reference.undocumented() == []


def test_readme_reference_matches_the_code():
    with open(README, encoding="utf-8") as f:
        text = f.read()
    assert config_reference.update_readme(text) == text, (
        "README's configuration reference is stale: run python -m experiments.config_reference --write README.md"
    )


def test_reference_lists_every_source_type():
    text = config_reference.markdown()
    for name in ("prm", "verifiable", "reasoning_pattern", "repetition", "length", "format", "noise"):
        assert f"| `{name}` |" in text
