"""A large real-text corpus for the Label Studio benchmarks (up to ~150,000 distinct texts).

No single shared dataset holds 100,000 texts, so :func:`source_corpus` pools every JSON Lines
file of ``shared/data`` (train, dev and test splits) and labels each text with the corpus it
comes from: ``sentiment`` (SST-2), ``question`` (TREC), ``sms`` (SMS spam), ``news`` (AG News),
``reuters`` (Reuters-21578) and ``newsgroups`` (20 Newsgroups) - a real 6-class "which source"
task. Whole records come first (70,695 distinct texts); when more are asked for, the
paragraphs (blank-line separated, >= 40 characters) of the Reuters and 20 Newsgroups documents
follow (79,426 more). Texts are whitespace-normalised and cut at ``max_chars``, duplicates
dropped; the order is a seeded shuffle, so any prefix mixes every source.
"""
from __future__ import annotations

import json
import random
import re
from pathlib import Path

SOURCES = {"sst2": "sentiment", "trec": "question", "sms_spam": "sms", "ag_news": "news",
           "reuters21578": "reuters", "20newsgroups": "newsgroups"}
PARAGRAPH_SOURCES = ("reuters21578", "20newsgroups")


def _records(data_dir: Path):
    for path in sorted(Path(data_dir).glob("*.jsonl")):
        source = SOURCES.get(path.name.split(".")[0])
        if source is None:
            continue
        with open(path) as fh:
            for line in fh:
                yield path.name.split(".")[0], source, json.loads(line)["text"]


def source_corpus(n: int, data_dir: Path, seed: int = 0, max_chars: int = 1000) -> list[dict]:
    """``n`` records ``{"text", "label"}`` (label = source corpus); raises ``ValueError`` when
    the shared data holds fewer distinct texts."""
    seen: set[str] = set()
    whole, paragraphs = [], []
    for _name, source, text in _records(data_dir):
        norm = " ".join(text.split())[:max_chars]
        if norm and norm not in seen:
            seen.add(norm)
            whole.append({"text": norm, "label": source})
    for name, source, text in _records(data_dir):
        if name not in PARAGRAPH_SOURCES:
            continue
        for para in re.split(r"\n\s*\n", text):
            norm = " ".join(para.split())[:max_chars]
            if len(norm) >= 40 and norm not in seen:
                seen.add(norm)
                paragraphs.append({"text": norm, "label": source})
    rng = random.Random(seed)
    rng.shuffle(whole)
    rng.shuffle(paragraphs)
    pool = whole + paragraphs
    if n > len(pool):
        raise ValueError(f"asked for {n} texts; {data_dir} holds {len(pool)} distinct ones")
    out = pool[:n]
    rng.shuffle(out)
    return out
