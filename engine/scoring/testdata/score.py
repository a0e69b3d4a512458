#!/usr/bin/env python3
"""A command scorer speaking fapo's JSON protocol (see ../command-protocol.md).

It grades an answer 100 when it equals expected.answer (case-insensitively),
50 when it contains it, 0 otherwise, and reports whether the retrieve step
found the answer. The --fault flag makes it misbehave for the Go tests.
"""
import json
import os
import subprocess
import sys
import time


def validate(case):
    answer = case.get("expected", {}).get("answer")
    if not isinstance(answer, str) or not answer.strip():
        return {"error": "expected.answer must be a non-empty string"}
    return {}


def score(item):
    problem = validate(item["case"])
    if problem:
        return problem
    answer = item["case"]["expected"]["answer"].strip().lower()
    output = item["output"].strip().lower()
    exact = 100 if output == answer else 0
    contains = 100 if answer in output else 0
    breakdown = {"exact": exact, "contains": contains}
    retrieve = item.get("steps", {}).get("retrieve")
    if retrieve is not None:
        breakdown["retrieval"] = 100 if answer in retrieve["output"].lower() else 0
    composite = exact or contains / 2
    return {"composite_score": composite, "score_breakdown": breakdown,
            "reason": "exact" if exact else ("contains" if contains else "missing")}


def main():
    fault = sys.argv[sys.argv.index("--fault") + 1] if "--fault" in sys.argv else ""
    pids = os.environ.get("SCORE_PY_PIDS")
    if pids:
        with open(pids, "a") as f:
            f.write(f"{os.getpid()}\n")

    request = json.load(sys.stdin)
    if request["mode"] == "validate":
        results = [validate(item["case"]) for item in request["items"]]
    else:
        results = [score(item) for item in request["items"]]

    if fault == "crash":
        raise ValueError("scorer bug: cannot grade")
    if fault == "badjson":
        print("graded everything, all good")
        return
    if fault == "noresults":
        print(json.dumps({"ok": True}))
        return
    if fault == "count":
        results = results[:-1]
    if fault == "range":
        results[2]["composite_score"] = 140
    if fault == "breakdown":
        results[0]["score_breakdown"]["exact"] = -5
    if fault == "missing":
        del results[0]["composite_score"]
    if fault == "notobject":
        results[0] = "100"
    if fault == "hang":
        # A child that would outlive us unless the whole group is killed.
        child = subprocess.Popen(["sleep", "60"])
        with open(os.environ["SCORE_PY_CHILD"], "w") as f:
            f.write(str(child.pid))
        print("working...", file=sys.stderr, flush=True)
        time.sleep(60)
    json.dump({"results": results}, sys.stdout)


if __name__ == "__main__":
    main()
