"""The fapo external-pipeline protocol loop, standard library only.

Copy this file beside your program and call serve(handler): fapo starts the
program once, writes one JSON request per line on stdin and reads one JSON
answer per line on stdout (the protocol is engine/pipeline/protocol.schema.json
in fapo's repository). Print logs to stderr, never to stdout.

    import fapo_pipeline

    def handle(case):
        question = case.inputs["question"]
        text = case.chat("answer", [{"role": "user", "content": case.prompts["answer"].format(question=question)}])
        return text

    fapo_pipeline.serve(handle)
"""

import json
import sys
import time
import urllib.error
import urllib.request

PROTOCOL = 1


class ModelError(Exception):
    """A model call that got no answer: the case is errored, not scored."""


class Case:
    """One request: the case's inputs and the variant's prompts and params."""

    def __init__(self, req):
        self.id = req["id"]
        self.token = req.get("case_token", "")
        self.inputs = req.get("inputs") or {}
        self.prompts = req.get("prompts") or {}
        self.system_prompts = req.get("system_prompts") or {}
        self.params = req.get("params") or {}
        self.switches = req.get("switches") or {}
        self.override = req.get("override")
        self.model = req.get("model") or {}
        self.steps = []

    def overridden(self, step_id):
        """The value fapo replays for step_id (oracle replay), or None."""
        if self.override and self.override.get("step") == step_id:
            return self.override
        return None

    def step(self, step_id, kind, input=None, output=None, **extra):
        """Record a step of this case; extra may hold error, retrieved, tokens, latency_ms."""
        s = {"id": step_id, "kind": kind, "input": input, "output": output}
        s.update({k: v for k, v in extra.items() if v is not None})
        self.steps.append(s)
        return output

    def chat(self, step_id, messages, **params):
        """One chat completion through fapo's endpoint; returns the text.

        fapo caches, retries, rate-limits and prices the call and puts its
        messages and tokens in the step's trace. The step's own params
        (temperature, max_tokens, …) apply unless params overrides them.
        """
        body = {k: v for k, v in self.params.get(step_id, {}).items() if k in ("temperature", "top_p", "max_tokens", "seed", "stop")}
        body.update(params)
        body["model"] = self.params.get(step_id, {}).get("model", self.model.get("name", "default"))
        body["messages"] = messages
        req = urllib.request.Request(
            self.model["base_url"] + "/chat/completions",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json", "Authorization": "Bearer " + self.model["api_key"], "X-Fapo-Step": step_id},
        )
        started = time.monotonic()
        try:
            with urllib.request.urlopen(req, timeout=300) as resp:
                answer = json.load(resp)
        except urllib.error.HTTPError as e:
            detail = e.read().decode(errors="replace")
            if e.code == 400:
                raise ValueError(f"model call of step {step_id} refused: {detail}")
            raise ModelError(f"model call of step {step_id}: HTTP {e.code}: {detail}")
        except OSError as e:
            raise ModelError(f"model call of step {step_id}: {e}")
        choice = answer["choices"][0]
        text = choice["message"].get("content") or ""
        self.step(step_id, "llm", input=messages[-1]["content"], output=text,
                  finish_reason=choice.get("finish_reason"), latency_ms=(time.monotonic() - started) * 1000)
        return text


def serve(handler, stdin=sys.stdin, stdout=sys.stdout):
    """Answer requests until stdin closes. handler(case) returns the output."""
    for line in stdin:
        if not line.strip():
            continue
        req = json.loads(line)
        case = Case(req)
        answer = {"id": case.id}
        if req.get("protocol") != PROTOCOL:
            answer["error"] = f"this program speaks protocol {PROTOCOL}, not {req.get('protocol')}"
            answer["infrastructure"] = True
        else:
            try:
                answer["output"] = handler(case)
            except ModelError as e:
                answer["error"] = str(e)
                answer["infrastructure"] = True
            except Exception as e:  # the variant's failure: scored, not errored
                answer["error"] = f"{type(e).__name__}: {e}"
        answer["steps"] = case.steps
        stdout.write(json.dumps(answer) + "\n")
        stdout.flush()
