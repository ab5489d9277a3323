"""The experiment scripts' command line: `--config.KEY VALUE` as well as `--config.KEY=VALUE`,
`--config=FILE.py:ARG`, `--help` listing the config keys, and purejax's validation after."""

import os

import pytest

from purejax import cli
from purejax import config as config_lib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMOKE = os.path.join(ROOT, "configs", "smoke.py")


def _parse(argv):
    from experiments import train

    return train.parse(argv)


def test_space_and_equals_overrides_give_the_same_config():
    _, a = _parse(["--config", SMOKE, "--workdir", "w", "--config.optim.lr", "0.5", "--config.seed=3"])
    _, b = _parse(["--config", SMOKE, "--workdir", "w", "--config.optim.lr=0.5", "--config.seed", "3"])
    assert a == b == ["config.optim.lr=0.5", "config.seed=3"]
    config = config_lib.load(SMOKE, a)
    assert config.optim.lr == 0.5 and config.seed == 3
    # A negative number is a value, not a flag.
    _, c = _parse(["--config", SMOKE, "--workdir", "w", "--config.advantage.temperature", "-1"])
    with pytest.raises(config_lib.ConfigError, match="advantage.temperature"):
        config_lib.load(SMOKE, c)


def test_a_missing_value_and_a_stray_argument_are_usage_errors(capsys):
    for argv in (["--config.optim.lr"], ["--config.optim.lr", "--quiet"], ["--lr=1"]):
        with pytest.raises(SystemExit):
            _parse(["--config", SMOKE, "--workdir", "w", *argv])
    assert "overrides look like" in capsys.readouterr().err


def test_config_file_argument_is_passed_to_get_config(tmp_path):
    path = tmp_path / "with_arg.py"
    path.write_text(
        "from purejax import config as C\n"
        "def get_config(arg='0.1'):\n"
        "    c = C.defaults()\n"
        "    c.advantage.temperature = float(arg)\n"
        "    c.rewards.vr = C.reward_source('verifiable', applies_to='with_answer')\n"
        "    return c\n"
    )
    assert config_lib.load(f"{path}:0.01").advantage.temperature == 0.01
    assert config_lib.load(str(path)).advantage.temperature == 0.1
    with pytest.raises(config_lib.ConfigError, match="takes no argument"):
        config_lib.load(f"{SMOKE}:x")


def test_help_lists_every_section_and_key(capsys):
    with pytest.raises(SystemExit):
        _parse(["--help"])
    text = capsys.readouterr().out
    defaults = config_lib.defaults()
    for section, value in defaults.items():
        assert section in text
        if hasattr(value, "items"):
            for key in value.keys():
                assert key in text, key
    assert "--config.KEY VALUE" in text and "Configuration reference" in text


def test_misspelt_keys_keep_the_suggestion():
    _, overrides = cli.parse(cli.parser("x"), ["--config.advantage.temprature", "0.1"])
    with pytest.raises(config_lib.ConfigError, match="temprature.*Did you mean 'temperature'"):
        config_lib.load(SMOKE, overrides)
