"""The official openai SDK through slotgate against a real llama-cpp-python server.

Usage: real_llama.py BASE_URL MODEL. Prints one JSON line of figures; exits non-zero on a failed
check.
"""
import json
import sys
import time

import openai

base, model = sys.argv[1], sys.argv[2]
client = openai.OpenAI(base_url=base, api_key="none", max_retries=0, timeout=120)
msgs = [{"role": "user", "content": "Count from one to twenty in words."}]

# A streamed chat completion: several content deltas, spread over time.
t0 = time.monotonic()
stamps, text = [], ""
for chunk in client.chat.completions.create(model=model, messages=msgs, stream=True, max_tokens=48, temperature=0):
    if chunk.choices and chunk.choices[0].delta.content:
        stamps.append(time.monotonic())
        text += chunk.choices[0].delta.content
assert len(stamps) >= 5, f"only {len(stamps)} deltas: {text!r}"
ttft_ms = (stamps[0] - t0) * 1000
spread_ms = (stamps[-1] - stamps[0]) * 1000
assert spread_ms > 0, "deltas arrived all at once"

# A plain completion with usage.
r = client.chat.completions.create(model=model, messages=msgs, max_tokens=16, temperature=0)
assert r.choices[0].message.content, r
assert r.usage and r.usage.completion_tokens > 0 and r.usage.prompt_tokens > 0, r.usage

# A client that cancels mid-stream, then a request that succeeds on the same server.
s = client.chat.completions.create(model=model, messages=msgs, stream=True, max_tokens=200)
seen = 0
for chunk in s:
    seen += 1
    if seen >= 3:
        break
s.close()
r = client.chat.completions.create(model=model, messages=[{"role": "user", "content": "Say hi."}], max_tokens=8)
assert r.choices[0].message.content is not None

print(json.dumps({
    "deltas": len(stamps),
    "ttft_ms": round(ttft_ms, 1),
    "spread_ms": round(spread_ms, 1),
    "text": text,
    "usage": {"prompt": r.usage.prompt_tokens, "completion": r.usage.completion_tokens},
}))
