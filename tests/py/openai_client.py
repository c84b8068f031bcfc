"""Drives a running slotgate with the official `openai` Python SDK.

Usage: openai_client.py BASE_URL LOADING_MODEL
Prints one line per check; exits non-zero on the first failure.
"""
import sys

import openai

base, loading_model = sys.argv[1], sys.argv[2]
client = openai.OpenAI(base_url=base, api_key="unused", max_retries=0, timeout=20)

ids = sorted(m.id for m in client.models.list())
assert "m1" in ids and "e1" in ids, ids
print("models.list ok", ids)

r = client.chat.completions.create(model="m1", messages=[{"role": "user", "content": "hi"}])
assert r.choices[0].message.content == "tok0 tok1 tok2 ", r
assert r.model == "m1"
print("chat ok")

parts = []
stream = client.chat.completions.create(
    model="m1", messages=[{"role": "user", "content": "hi"}], stream=True
)
for chunk in stream:
    if chunk.choices and chunk.choices[0].delta.content:
        parts.append(chunk.choices[0].delta.content)
assert parts == ["tok0 ", "tok1 ", "tok2 "], parts
print("chat stream ok")

e = client.embeddings.create(model="e1", input="hello")
assert len(e.data) == 1 and len(e.data[0].embedding) > 0, e
print("embeddings ok")

try:
    client.chat.completions.create(model=loading_model, messages=[{"role": "user", "content": "x"}])
    raise SystemExit("expected a 503 for the loading slot")
except openai.APIStatusError as err:
    assert err.status_code == 503, err.status_code
    body = err.body if isinstance(err.body, dict) else {}
    code = body.get("code") or (body.get("error") or {}).get("code")
    assert code == "slot.loading", err.body
    assert err.response.headers.get("retry-after"), err.response.headers
    print("slot.loading ok", code)
print("all ok")
