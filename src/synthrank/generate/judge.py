"""``synthrank judge``: an LLM grades (query, passage) pairs on the levels' scale.

Pairs come from a BEIR folder's qrels: for human-judged data (e.g. TREC DL 2019) the result
is the model's agreement with the human grades; for a generated folder it is a check of the
generator, and ``--relabel`` / ``--keep-agreeing`` write qrels to relabel or filter it.
"""

from __future__ import annotations

import json
import random
import re
import time
from collections import Counter
from pathlib import Path

from synthrank.data import load_beir, write_qrels
from synthrank.generate.backends.base import Backend, ChatRequest
from synthrank.generate.levels import Level, default_levels, load_levels
from synthrank.generate.progress import Progress
from synthrank.generate.prompts import load_template, render
from synthrank.utils import atomic_write


def judge_messages(query: str, passage: str, levels: list[Level], template: str, system: str,
                   max_passage_words: int = 250) -> list[dict]:
    words = passage.split()
    if len(words) > max_passage_words:
        passage = " ".join(words[:max_passage_words]) + " ..."
    scale = "\n".join(f"{lv.grade} = {lv.name}: {lv.description}" for lv in levels)
    grades = [lv.grade for lv in levels]
    user = render(template, query=query, passage=passage, levels=scale, min_grade=min(grades), max_grade=max(grades))
    return ([{"role": "system", "content": system.strip()}] if system.strip() else []) + [{"role": "user", "content": user}]


def parse_grade(text: str, grades: list[int]) -> int | None:
    """The first number in the answer that is a grade of the scale."""
    for match in re.finditer(r"\d+", text):
        value = int(match.group())
        if value in grades:
            return value
    return None


def cohen_kappa(a: list[int], b: list[int]) -> float:
    n = len(a)
    if n == 0:
        return float("nan")
    observed = sum(x == y for x, y in zip(a, b)) / n
    ca, cb = Counter(a), Counter(b)
    expected = sum(ca[k] * cb[k] for k in set(ca) | set(cb)) / (n * n)
    return (observed - expected) / (1 - expected) if expected < 1 else 1.0


def agreement(labels: list[int], judged: list[int | None], binary_threshold: int = 2) -> dict:
    n = len(labels)
    parsed = [(x, y) for x, y in zip(labels, judged) if y is not None]
    exact = sum(x == y for x, y in parsed)
    binary = sum((x >= binary_threshold) == (y >= binary_threshold) for x, y in parsed)
    return {
        "pairs": n,
        "parsed": len(parsed),
        "exact": exact / n if n else float("nan"),
        "binary": binary / n if n else float("nan"),
        "exact_of_parsed": exact / len(parsed) if parsed else float("nan"),
        "binary_of_parsed": binary / len(parsed) if parsed else float("nan"),
        "binary_threshold": binary_threshold,
        "kappa": cohen_kappa([x for x, _ in parsed], [y for _, y in parsed]) if parsed else float("nan"),
        "mean_absolute_error": sum(abs(x - y) for x, y in parsed) / len(parsed) if parsed else float("nan"),
    }


def judge(pairs: str | Path, output: str | Path, *, split: str = "test", backend: str | None = None,
          model: str | None = None, sample: int | None = None, limit: int | None = None, seed: int = 0,
          levels: int = 4, levels_file: str | Path | None = None, prompt: str | Path | None = None,
          system_prompt: str | Path | None = None, concurrency: int | None = None,
          relabel: str | Path | None = None, keep_agreeing: str | Path | None = None, progress: bool = True,
          backend_options: dict | None = None, backend_instance: Backend | None = None,
          binary_threshold: int = 2) -> dict:
    from synthrank.generate.api import build_backend
    from synthrank.data import resolve_dataset

    folder = Path(pairs)
    if not folder.exists():
        folder = resolve_dataset(str(pairs), download=False)
    dataset = load_beir(folder, split=split)
    corpus = dataset.corpus
    texts = dict(zip(corpus.ids, corpus.documents()))
    all_pairs = [(qid, pid, grade) for qid, judged in dataset.qrels.items() for pid, grade in judged.items()
                 if qid in dataset.queries and pid in texts]
    if sample is not None and sample < len(all_pairs):
        chosen = set(random.Random(seed).sample(range(len(all_pairs)), sample))
        all_pairs = [p for i, p in enumerate(all_pairs) if i in chosen]
    if limit is not None:
        all_pairs = all_pairs[:limit]
    level_list = load_levels(levels_file) if levels_file else default_levels(levels)
    grades = [lv.grade for lv in level_list]
    template = load_template(prompt, "judge")
    system = load_template(system_prompt, "judge_system")
    requests = [ChatRequest(judge_messages(dataset.queries[q], texts[p], level_list, template, system),
                            max_tokens=4, temperature=0.0, top_p=1.0, seed=seed, choices=[str(g) for g in grades])
                for q, p, _ in all_pairs]
    owned = backend_instance is None
    engine = backend_instance or build_backend(backend, model, concurrency, **(backend_options or {}))
    judged: list[int | None] = [None] * len(requests)
    raw: list[str] = [""] * len(requests)
    errors: list[str | None] = [None] * len(requests)
    tokens_in = tokens_out = 0
    bar = Progress(len(requests), enabled=progress, desc=f"judge [{engine.name}]", unit="pair")
    started = time.perf_counter()
    try:
        for index, completion in engine.generate(requests):
            raw[index], errors[index] = completion.text, completion.error
            judged[index] = parse_grade(completion.text, grades) if completion.ok else None
            tokens_in += completion.tokens_in
            tokens_out += completion.tokens_out
            bar.update(1, 0, completion.tokens_out)
    finally:
        bar.close()
        seconds = time.perf_counter() - started
        identity = engine.identity()
        if owned:
            engine.close()
    labels = [g for _, _, g in all_pairs]
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    with atomic_write(output / "judgments.jsonl") as handle:
        for (qid, pid, label), grade, text, error in zip(all_pairs, judged, raw, errors):
            handle.write(json.dumps({"query_id": qid, "corpus_id": pid, "label": label, "judge": grade,
                                     "answer": text, "error": error}, ensure_ascii=False) + "\n")
    confusion = {str(a): {str(b): 0 for b in grades + ["none"]} for a in grades}
    for label, grade in zip(labels, judged):
        if str(label) in confusion:
            confusion[str(label)][str(grade) if grade is not None else "none"] += 1
    summary = {
        "source": str(folder), "split": split, "pairs": len(all_pairs), "sample": sample, "seed": seed,
        "unparsed": sum(g is None for g in judged), "errors": sum(e is not None for e in errors),
        "backend": identity, "prompt": template, "levels": [lv.to_dict() for lv in level_list],
        "agreement": agreement(labels, judged, binary_threshold),
        "label_distribution": {str(k): v for k, v in sorted(Counter(labels).items())},
        "judge_distribution": {str(k): v for k, v in sorted(Counter(g for g in judged if g is not None).items())},
        "confusion_label_by_judge": confusion, "seconds": round(seconds, 2), "tokens_in": tokens_in,
        "tokens_out": tokens_out,
    }
    with atomic_write(output / "summary.json") as handle:
        json.dump(summary, handle, indent=2)
        handle.write("\n")
    if relabel is not None:
        qrels: dict[str, dict[str, int]] = {}
        for (qid, pid, _), grade in zip(all_pairs, judged):
            if grade is not None:
                qrels.setdefault(qid, {})[pid] = grade
        write_qrels(relabel, qrels)
    if keep_agreeing is not None:
        qrels = {}
        for (qid, pid, label), grade in zip(all_pairs, judged):
            if grade == label:
                qrels.setdefault(qid, {})[pid] = label
        write_qrels(keep_agreeing, qrels)
    return summary
