"""The official `openai` Python client against `seqlab serve`, unchanged but for its base URL.

    python openai_completions.py http://127.0.0.1:PORT

Prints one JSON object per line: what the client saw (the Rust test compares it with `seqlab lm generate`)."""
import json
import sys

import openai

base = sys.argv[1]
client = openai.OpenAI(base_url=base + "/v1", api_key="not-needed")

print(json.dumps({"models": sorted(m.id for m in client.models.list().data)}))

completion = client.completions.create(model="lm", prompt="the ", max_tokens=30, temperature=0.8, seed=7)
choice = completion.choices[0]
print(json.dumps({"text": choice.text, "finish_reason": choice.finish_reason,
                  "completion_tokens": completion.usage.completion_tokens}))

streamed = client.completions.create(model="lm", prompt="the ", max_tokens=30, temperature=0.8, seed=7,
                                     stream=True)
pieces = [chunk.choices[0].text for chunk in streamed]
print(json.dumps({"streamed": "".join(pieces), "chunks": len(pieces)}))

try:
    client.completions.create(model="lm", prompt="the ", temperature=-1)
    print(json.dumps({"error": None}))
except openai.BadRequestError as e:
    print(json.dumps({"error": e.status_code, "message": str(e)}))
