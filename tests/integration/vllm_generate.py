"""Greedy completions from real vLLM (CPU build) for a model directory.

Run as a script (vLLM's engine needs a `__main__` guard):
    python vllm_generate.py MODEL_DIR PROMPTS_JSON  -> prints a JSON list of completions
"""

import json
import sys

if __name__ == "__main__":
    from vllm import LLM, SamplingParams

    llm = LLM(model=sys.argv[1], dtype="float32", enforce_eager=True,
              kv_cache_memory_bytes=64 * 1024 * 1024, max_model_len=128, max_num_seqs=16)
    prompts = json.loads(sys.argv[2])
    outputs = llm.generate(prompts, SamplingParams(temperature=0, max_tokens=12))
    print("COMPLETIONS=" + json.dumps([output.outputs[0].text for output in outputs]), flush=True)
