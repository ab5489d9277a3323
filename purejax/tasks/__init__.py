"""Built-in tasks: the multi-step arithmetic miniature of PURE, its tokenizer, a scripted PRM
with the paper's documented weaknesses, and the cached SFT warm-start policy."""

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
from purejax.tasks.scripted_prm import ScriptedPRM, ScriptedPRMScores, score_text, step_scores
from purejax.tasks.tokenizer import build_tokenizer
from purejax.tasks.warmstart import WarmStart, evaluate, load_sft_config, warm_start
