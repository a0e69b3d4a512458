// A minimal external pipeline in Node (no packages): one llm step through
// fapo's OpenAI-compatible endpoint. In tenant.toml:
//   [pipeline]
//   command = ["node", "pipeline/pipeline.js"]
// and in chain.toml one step: id = "answer", kind = "llm", prompt = "prompts/answer.md"
// (the prompt may contain {question}). Protocol: engine/pipeline/protocol.schema.json.
// model.api_key is valid only during the run that sent it: do not keep it.
const readline = require("node:readline");

async function answer(req) {
  const prompt = req.prompts.answer.replaceAll("{question}", req.inputs.question);
  const params = req.params.answer || {};
  const started = Date.now();
  const res = await fetch(req.model.base_url + "/chat/completions", {
    method: "POST",
    headers: { "Content-Type": "application/json", Authorization: "Bearer " + req.model.api_key, "X-Fapo-Step": "answer" },
    body: JSON.stringify({ model: req.model.name, messages: [{ role: "user", content: prompt }], temperature: params.temperature, max_tokens: params.max_tokens }),
  });
  if (!res.ok) {
    // 400: the variant's request was wrong (scored); else no answer (errored).
    return { id: req.id, error: `model call: HTTP ${res.status}`, infrastructure: res.status !== 400, steps: [] };
  }
  const body = await res.json();
  const text = body.choices[0].message.content;
  return { id: req.id, output: text.trim(), steps: [{ id: "answer", kind: "llm", input: prompt, output: text, latency_ms: Date.now() - started }] };
}

// Requests are answered one at a time, in order, as the protocol asks.
const rl = readline.createInterface({ input: process.stdin });
let queue = Promise.resolve();
rl.on("line", (line) => {
  if (!line.trim()) return;
  queue = queue.then(async () => {
    const req = JSON.parse(line);
    let out;
    try {
      // A request of another protocol version is not one this program can
      // answer: the case is errored, not scored.
      out = req.protocol === 1 ? await answer(req) : { id: req.id, error: `this program speaks protocol 1, not ${req.protocol}`, infrastructure: true, steps: [] };
    } catch (e) {
      out = { id: req.id, error: String(e), infrastructure: true, steps: [] };
    }
    process.stdout.write(JSON.stringify(out) + "\n");
  });
});
