"""HotpotQA-style pipeline in plain Python: retrieve → reason → answer.

Model calls go through fapo's endpoint (fapo_pipeline.Case.chat, urllib);
the prompts and parameters are the variant's, so fapo can optimize them.
"""

import re

import fapo_pipeline


def words(text):
    return set(re.findall(r"[a-z0-9]+", text.lower()))


def passages(ctx):
    """HotpotQA paragraphs as {title, text}: [title, [sentences]] or {title, sentences}."""
    out = []
    for p in ctx.get("paragraphs", []):
        if isinstance(p, list):
            title, sents = p[0], p[1]
        else:
            title, sents = p.get("title", ""), p.get("sentences", [p.get("text", "")])
        out.append({"id": title, "title": title, "text": " ".join(sents)})
    return out


def retrieve(case, question):
    ov = case.overridden("retrieve")
    if ov is not None:
        docs = ov.get("retrieved") or []
        return case.step("retrieve", "retrieve", input=question, output=ov["output"], retrieved=docs), docs
    k = case.params.get("retrieve", {}).get("k", 4)
    q = words(question)
    scored = sorted(passages(case.inputs), key=lambda d: -len(q & words(d["title"] + " " + d["text"])))
    docs = [dict(d, score=float(len(q & words(d["text"])))) for d in scored[:k]]
    text = "\n\n".join(f"[{d['title']}] {d['text']}" for d in docs)
    return case.step("retrieve", "retrieve", input=question, output=text, retrieved=docs), docs


def handle(case):
    question = case.inputs["question"]
    text, _ = retrieve(case, question)
    facts = case.chat("reason", [{"role": "user", "content": case.prompts["reason"].format(question=question, passages=text)}])
    msgs = [{"role": "user", "content": case.prompts["answer"].format(question=question, facts=facts)}]
    if "answer" in case.system_prompts:
        msgs.insert(0, {"role": "system", "content": case.system_prompts["answer"]})
    answer = case.chat("answer", msgs)
    if case.switches.get("reflect"):
        answer = case.chat("reflect", [{"role": "user", "content": f"Question: {question}\nDraft: {answer}\nRewrite the draft as 'Answer: <answer>'."}])
    m = re.search(r"(?i)answer:\s*(.+)", answer)
    final = m.group(1).strip() if m else answer.strip()
    return case.step("final", "parse", input=answer, output=final)


if __name__ == "__main__":
    fapo_pipeline.serve(handle)
