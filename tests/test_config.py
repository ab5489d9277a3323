"""Config schema: the paper configs load; every bad field is refused by name."""

import pytest

from purejax import config as config_lib

CONFIGS = [f"qwen25_math_7b_{run}" for run in ("prm", "vr", "prm_vr", "sum_prm")]


def test_paper_settings_per_config():
    load = lambda n: config_lib.load(f"configs.{n}")
    prm, vr, both, sum_form = (load(n) for n in CONFIGS)
    assert list(prm.rewards) == ["prm"] and prm.optim.lr == 5e-7
    assert prm.advantage.credit == "soft_min" and sum_form.advantage.credit == "sum"
    assert list(vr.rewards) == ["vr"] and vr.rewards.vr.applies_to == "with_answer"
    assert set(both.rewards) == {"prm", "vr"} and both.rewards.vr.baseline == "rloo"
    assert both.rewards.prm.level == "step" and both.rewards.vr.type == "verifiable"


def test_overrides_as_strings_and_mapping():
    c = config_lib.load(
        "configs.qwen25_math_7b_prm_vr", overrides=["config.rewards.vr.weight=2", "advantage.credit=min"]
    )
    assert c.rewards.vr.weight == 2.0 and isinstance(c.rewards.vr.weight, float)
    assert c.advantage.credit == "min"
    c = config_lib.load("configs.qwen25_math_7b_prm_vr", overrides={"rewards.vr.fraction": 0.5})
    assert c.rewards.vr.fraction == 0.5


@pytest.mark.parametrize(
    "override, field, allowed",
    [
        ({"rewards.vr.wieght": 2.0}, "config.rewards.vr.wieght", "Did you mean 'weight'"),
        ({"rewards.vr.weight": -1.0}, "config.rewards.vr.weight", "[0, inf)"),
        ({"rewards.vr.fraction": 1.5}, "config.rewards.vr.fraction", "[0, 1]"),
        ({"rewards.vr.fraction": -0.1}, "config.rewards.vr.fraction", "[0, 1]"),
        ({"advantage.temperature": 0.0}, "config.advantage.temperature", "(0, inf)"),
        ({"rollout.temperature": -1.0}, "config.rollout.temperature", "(0, inf)"),
        ({"rewards.vr.type": "verifyable"}, "config.rewards.vr.type", "Did you mean 'verifiable'"),
        ({"advantage.credit": "mni"}, "config.advantage.credit", "Did you mean 'min'"),
        ({"advantage.baseline": "rlo"}, "config.advantage.baseline", "Did you mean 'rloo'"),
        ({"rewards.vr.baseline": "token_mean"}, "config.rewards.vr.baseline", "'shared', 'rloo'"),
        ({"rewards.vr.applies_to": "all"}, "config.rewards.vr.applies_to", "'with_answer'"),
        ({"rewards.prm.baseline": "rloo"}, "config.rewards.prm.baseline", "'shared'"),
        ({"rewards.prm.level": "sequence"}, "config.rewards.prm.level", "'step'"),
        ({"ppo.dual_clip": 0.5}, "config.ppo.dual_clip", "or 0 (off)"),
        ({"ppo.kl_estimator": "k4"}, "config.ppo.kl_estimator", "'k3'"),
        ({"ppo.loss_agg": "mean"}, "config.ppo.loss_agg", "'token-mean'"),
        ({"rollout.top_p": 0.0}, "config.rollout.top_p", "(0, 1]"),
        ({"optim.schedule": "linear"}, "config.optim.schedule", "'cosine'"),
        ({"rollout.samples_per_prompt": 0}, "config.rollout.samples_per_prompt", "(0, inf)"),
        ({"rolout.temperature": 1.0}, "config.rolout", "Did you mean 'rollout'"),
        ({"rewards.vr.correct": -1.0}, "config.rewards.vr.correct", "must be > wrong"),
        ({"data.eval_names": ("a", "b", "c", "d", "a")}, "config.data.eval_names[4]", "repeats 'a'"),
        ({"data.eval_names": ("a", "b/c", "c", "d", "e")}, "config.data.eval_names[1]", "without '/'"),
        ({"data.question_key": " problem"}, "config.data.question_key", "column name"),
        ({"data.chat_template": "yes"}, "config.data.chat_template", "must be a bool"),
    ],
)
def test_bad_values_give_one_message_naming_the_field(override, field, allowed):
    with pytest.raises(config_lib.ConfigError) as err:
        config_lib.load("configs.qwen25_math_7b_prm_vr", overrides=override)
    message = str(err.value)
    assert message.startswith(field + ":"), message
    assert allowed in message, message
    assert "\n" not in message


def test_wrong_type_is_refused():
    with pytest.raises(config_lib.ConfigError, match=r"config.rewards.vr.weight: must be a float"):
        config_lib.load("configs.qwen25_math_7b_prm_vr", overrides={"rewards.vr.weight": "heavy"})


def test_zero_step_ends_is_a_validated_bool():
    c = config_lib.load("configs.qwen25_math_7b_prm_vr", overrides=["advantage.zero_step_ends=True"])
    assert c.advantage.zero_step_ends is True
    assert config_lib.load("configs.qwen25_math_7b_prm_vr").advantage.zero_step_ends is False
    with pytest.raises(config_lib.ConfigError, match=r"^config.advantage.zero_step_ends: must be a bool"):
        config_lib.load("configs.qwen25_math_7b_prm_vr", overrides={"advantage.zero_step_ends": "on"})


def _edited_config(edit):
    c = config_lib.defaults()
    c.rewards.prm = config_lib.reward_source("prm")
    edit(c)
    return c


def test_unknown_keys_written_in_a_config_file_are_caught(tmp_path):
    def add_unknown(c):
        c.advantage.tempreature = 0.1

    with pytest.raises(
        config_lib.ConfigError,
        match=r"^config.advantage.tempreature: unknown "
        r"key.*Did you mean 'temperature'",
    ):
        config_lib.validate(_edited_config(add_unknown))

    def add_source_key(c):
        c.rewards.prm.treshold = 0.2

    with pytest.raises(config_lib.ConfigError, match=r"^config.rewards.prm.treshold: unknown key"):
        config_lib.validate(_edited_config(add_source_key))

    # The same through load() on a file, as a user would write it.
    path = tmp_path / "configs" / "mine.py"
    path.parent.mkdir()
    path.write_text(
        "from purejax import config as C\n"
        "def get_config():\n"
        "    c = C.defaults()\n"
        "    c.rewards.vr = C.reward_source('verifiable', applies_to='with_answer')\n"
        "    c.rewards.vr.wieght = 2.0\n"
        "    return c\n"
    )
    with pytest.raises(config_lib.ConfigError, match="config.rewards.vr.wieght: unknown key"):
        config_lib.load(str(path))


def test_missing_rewards_and_missing_keys():
    with pytest.raises(config_lib.ConfigError, match="^config.rewards: no reward source"):
        config_lib.validate(config_lib.defaults())

    def drop(c):
        del c.ppo["kl_beta"]

    with pytest.raises(config_lib.ConfigError, match="^config.ppo.kl_beta: missing key"):
        config_lib.validate(_edited_config(drop))


def test_every_source_type_validates_with_its_defaults():
    from purejax.rewards import SOURCE_TYPES

    for kind in SOURCE_TYPES:
        c = config_lib.defaults()
        applies = "with_answer" if kind == "verifiable" else "all"
        c.rewards.x = config_lib.reward_source(kind, applies_to=applies)
        config_lib.validate(c)
    c = config_lib.defaults()
    c.rewards.noisy = config_lib.reward_source("noise", inner="prm")
    with pytest.raises(config_lib.ConfigError, match="^config.rewards.noisy.inner: must name a host"):
        config_lib.validate(c)


def test_reward_source_helper_refuses_unknown_type_and_key():
    with pytest.raises(config_lib.ConfigError, match="Did you mean 'format'"):
        config_lib.reward_source("formt")
    with pytest.raises(config_lib.ConfigError, match="Did you mean 'weight'"):
        config_lib.reward_source("format", wieght=1.0)


@pytest.mark.parametrize(
    "override, field, problem",
    [
        # ConfigDict turns True into 1.0 in a float field; the override must refuse it first.
        (["optim.lr=True"], "config.optim.lr", "must be a float, got bool True"),
        (["optim.lr=1e400"], "config.optim.lr", "finite number"),
        (["optim.lr=1e39"], "config.optim.lr", "float32 range"),  # inf once in float32
        (["ppo.kl_beta=-1e400"], "config.ppo.kl_beta", "finite number"),
        (["seed=-1"], "config.seed", "[0, inf)"),
        (["rewards.vr.timeout_s=1e400"], "config.rewards.vr.timeout_s", "finite number"),
        (["rewards.vr.timeout_s=1e5"], "config.rewards.vr.timeout_s", "(0, 3600.0]"),
        (["data.prompt_template='{question}{foo}'"], "config.data.prompt_template", "found {foo}"),
        (["data.prompt_template='{question} {'"], "config.data.prompt_template", "not a valid format"),
        (["data.prompt_template='Solve it.'"], "config.data.prompt_template", "{question}"),
        (["rollout.samples_per_prompt=1"], "config.advantage.baseline", "samples_per_prompt >= 2"),
        (
            ["rollout.samples_per_prompt=1", "advantage.baseline=none"],
            "config.rewards.vr.baseline",
            "rewards.vr.baseline='shared'",
        ),
    ],
)
def test_non_finite_bool_and_late_failing_values_are_refused_by_name(override, field, problem):
    with pytest.raises(config_lib.ConfigError) as err:
        config_lib.load("configs.qwen25_math_7b_prm_vr", overrides=override)
    message = str(err.value)
    assert message.startswith(field + ":"), message
    assert problem in message, message


@pytest.mark.parametrize(
    "edit, field",
    [
        (lambda c: c.rewards.prm.update(weight=float("inf")), "config.rewards.prm.weight"),
        (lambda c: c.ppo.update(kl_beta=float("nan")), "config.ppo.kl_beta"),
        (
            lambda c: c.rewards.update(
                vr=config_lib.reward_source("verifiable", applies_to="with_answer", wrong=float("-inf"))
            ),
            "config.rewards.vr.wrong",
        ),
    ],
)
def test_non_finite_values_in_a_config_file_are_refused(edit, field):
    with pytest.raises(config_lib.ConfigError, match=f"^{field}: must be a finite number"):
        config_lib.validate(_edited_config(edit))


def test_one_sample_per_prompt_without_group_baselines_validates():
    config_lib.load(
        "configs.qwen25_math_7b_prm",
        overrides=["rollout.samples_per_prompt=1", "advantage.baseline=none"],
    )
    config_lib.load("configs.qwen25_math_7b_prm", overrides=["data.prompt_template='{{x}} {question}'"])
