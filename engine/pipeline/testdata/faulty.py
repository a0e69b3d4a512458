"""A test program: inputs.mode picks how it answers (or fails to)."""
import json, sys, time

for line in sys.stdin:
    req = json.loads(line)
    mode = req["inputs"].get("mode", "ok")
    ans = {"id": req["id"], "output": req["inputs"].get("q", "").upper(),
           "steps": [{"id": "answer", "kind": "llm", "input": req["inputs"].get("q"), "output": req["inputs"].get("q", "").upper()}]}
    if mode == "exit":
        sys.stderr.write("boom: simulated crash\n")
        sys.exit(3)
    if mode == "leak":
        sys.stderr.write("processing input: " + req["inputs"].get("secret", "") + "\n")
        sys.stderr.flush()
    if mode == "hang":
        time.sleep(60)
    if mode == "deaf":  # answers, then never reads stdin again
        print(json.dumps(ans), flush=True)
        time.sleep(60)
    if mode == "garbage":
        print("Traceback? not JSON at all", flush=True)
        continue
    if mode == "badstep":
        ans["steps"] = [{"id": "answer", "kind": "thinking"}]
    if mode == "echo_prompts":
        ans["output"] = json.dumps({"prompts": req["prompts"], "params": req["params"], "switches": req["switches"], "token": req["case_token"], "override": req.get("override")})
    print(json.dumps(ans), flush=True)
