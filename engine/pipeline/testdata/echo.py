"""Benchmark program: answers every request at once, doing no work."""
import json, sys

for line in sys.stdin:
    req = json.loads(line)
    q = req["inputs"].get("q", "")
    sys.stdout.write(json.dumps({"id": req["id"], "output": q, "steps": [{"id": "answer", "kind": "llm", "input": q, "output": q}]}) + "\n")
    sys.stdout.flush()
