"""Tasks: where a run's models, tokenizer, prompts and scorers come from.

    task = purejax.tasks.build_task(config)

`builtin:` paths give the arithmetic miniature of PURE (its tokenizer, a scripted PRM with
the paper's documented weaknesses, the cached SFT warm-start policy); anything else loads
local Hugging Face checkpoints and data files (`purejax.tasks.hf`). Only this package and
experiments/ import it: the core of purejax never names a task (tests/test_layering.py).
Importing it registers the `scripted_prm` reward source.
"""

from purejax.tasks.arith import (
    FILLER_PHRASES,
    PROMPT_TEMPLATE,
    STEP_LABELS,
    TRACE_KINDS,
    ArithSpec,
    Grade,
    Problem,
    grade,
    label_step,
    make_problems,
    parse_equation,
    render_trace,
    split_of,
    split_steps,
    trace_mix,
)
from purejax.tasks import builtin, hf
from purejax.tasks.scripted_prm import (
    ScriptedPRM,
    ScriptedPRMScores,
    ScriptedStepRewards,
    score_text,
    step_scores,
)
from purejax.tasks.tokenizer import build_tokenizer
from purejax.tasks.warmstart import WarmStart, evaluate, load_sft_config, warm_start


def build_task(config, show_progress: bool = True):
    """The `purejax.task.Task` named by the config: the built-in miniature or local HF files."""
    if config.policy.path.startswith(builtin.PREFIX):
        return builtin.build_task(config, show_progress=show_progress)
    return hf.build_task(config)
