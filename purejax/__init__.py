"""purejax: PURE (min-form credit assignment for PRM-based RL of LLM reasoning) in JAX.

The public, jittable maths is re-exported here; functions take one sequence
([T]) and are batched with `jax.vmap`, except the group baselines ([K, T]).
"""

from purejax.advantages import (
    dr_grpo_advantages,
    gae_advantages,
    grpo_advantages,
    rloo_advantages,
    step_lengths,
    step_mean_rewards,
    token_mean_advantages,
    token_rate_rewards,
)
from purejax.credit import (
    CREDIT_MODES,
    all_token_min_returns,
    discounted_reverse_cumsum,
    min_form_returns,
    returns,
    soft_min_returns,
    soft_min_rewards,
    soft_min_weights,
    sum_form_returns,
    worst_step_returns,
)
from purejax.losses import (
    KL_ESTIMATORS,
    clipped_surrogate_loss,
    clipped_value_loss,
    entropy_from_logits,
    kl_k1,
    kl_k2,
    kl_k3,
    kl_penalty,
    ratio_clipped,
)
from purejax.pure import BASELINES, AdvantageConfig, Advantages, pure_advantages
from purejax.reductions import (
    LOSS_AGGREGATIONS,
    SumCount,
    aggregate_loss,
    masked_mean,
    masked_sum,
    masked_var,
    masked_whiten,
    masked_whiten_nonzero,
)
from purejax.steps import separator_ids, step_end_mask, step_end_mask_bt, step_ids

# Models, sampling, rewards and data: the rest of the public API.
from purejax.data import Prompt, format_prompt, load_benchmark, load_train_prompts
from purejax.models import (
    Decoder,
    DecoderConfig,
    init_model,
    load_config,
    load_pretrained,
    save_pretrained,
    token_logprobs,
)
from purejax.rewards import (
    SOURCE_TYPES,
    ComposedRewards,
    PRMScorer,
    TokenBatch,
    compose_rewards,
    extract_answer,
    prm_step_rewards,
    register_source,
    repetition_score,
    reward_metrics,
    verify,
    verify_batch,
)
from purejax.engine import sample_continuous
from purejax.sampling import SampleOutput, sample

__version__ = "0.1.0"
