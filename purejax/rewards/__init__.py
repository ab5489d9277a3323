from purejax.rewards.answers import extract_answer
from purejax.rewards.verifier import VerifierPool, verify, verify_batch
