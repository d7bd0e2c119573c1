"""Neural benchmarks (issue 7): embedding throughput, cached retrain time, fine-tuning time per
round, and accuracy after 100/200/500 random labels -- MiniLM features + logistic regression
versus TF-IDF + linear SVM -- on TREC and AG News.

Run (2 threads, results in ``benchmarks/results/neural.json``)::

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/bench_neural.py all
    .venv/bin/python benchmarks/bench_neural.py accuracy --seeds 5

Sections: ``throughput``, ``accuracy``, ``retrain``, ``finetune`` (or ``all``). Embeddings
are cached on disk in ``--cache-dir`` (default ``$TMPDIR/studio-al-embedding-cache``), so a second
run re-embeds nothing; ``throughput`` always encodes without the cache.
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
from _common import DATA as SHARED_DATA
from _common import RESULTS, machine, write_results

DATA = Path(os.environ.get("STUDIO_AL_DATA", SHARED_DATA))
OUT = RESULTS / "neural.json"


def load(name: str, split: str):
    rows = [json.loads(line) for line in open(DATA / f"{name}.{split}.jsonl", encoding="utf-8")]
    return [r["text"] for r in rows], [r["label"] for r in rows]


def load_split_datasets(name: str):
    """The train and test splits of a shared dataset as ``Dataset`` objects, and the labels."""
    from al_engine.data import Dataset
    tr_x, tr_y = load(name, "train")
    te_x, te_y = load(name, "test")
    labels = sorted(set(tr_y))
    return (Dataset.from_texts(tr_x, tr_y, target_labels=labels),
            Dataset.from_texts(te_x, te_y, target_labels=labels), labels)


def _save(section: str, result: dict) -> None:
    """Merge ``result`` as ``section`` into ``results/neural.json``."""
    doc = json.loads(OUT.read_text()) if OUT.exists() else {}
    doc[section] = result
    doc["machine"] = machine(loadavg_at_save=os.getloadavg())
    write_results(OUT.with_suffix(""), doc, indent=2)
    print(json.dumps({section: result}, indent=2), flush=True)


def bench_throughput(args) -> None:
    import torch
    from al_engine.features_neural import SentenceEmbeddingFeaturizer
    texts, _ = load("sms_spam", "train")
    texts = texts[:args.throughput_texts]
    f = SentenceEmbeddingFeaturizer(cache=False, device="cpu").fit()
    t = time.perf_counter()
    f.transform(texts[:32])  # load + warm-up batch
    load_s = time.perf_counter() - t
    t = time.perf_counter()
    f.transform(texts)
    s = time.perf_counter() - t
    _save("throughput", {"texts": len(texts), "dataset": "sms_spam.train (first texts)",
                         "torch_threads": torch.get_num_threads(), "batch_size": 32,
                         "load_and_warmup_s": round(load_s, 2), "seconds": round(s, 2),
                         "texts_per_s": round(len(texts) / s, 1),
                         "loadavg_1min_after": os.getloadavg()[0]})


def bench_accuracy(args) -> None:
    from sklearn.metrics import accuracy_score, f1_score

    from al_engine.classifiers.embedding import make_embedding_logistic_regression
    from al_engine.classifiers.sklearn import make_linear_svc
    result = {}
    for name in args.datasets:
        train, test, labels = load_split_datasets(name)
        t = time.perf_counter()
        emb_clf = make_embedding_logistic_regression(len(labels), cache_dir=args.cache_dir)
        emb_train, emb_test = emb_clf.featurize(train), emb_clf.featurize(test)
        embed_s = time.perf_counter() - t
        svc = make_linear_svc(len(labels))
        tf_train = svc.featurize(train)           # idf from the whole (unlabeled) pool
        tf_test = svc.featurize(test)
        per = {}
        for k in args.labels:
            acc = {"minilm_lr": [], "tfidf_svc": []}
            f1 = {"minilm_lr": [], "tfidf_svc": []}
            for seed in range(args.seeds):
                idx = np.random.default_rng(seed).choice(len(train), size=k, replace=False)
                for key, clf, tr, te in (("minilm_lr", emb_clf, emb_train, emb_test),
                                         ("tfidf_svc", svc, tf_train, tf_test)):
                    clf.fit(tr[idx])
                    pred = clf.predict(te)
                    acc[key].append(accuracy_score(test.y, pred))
                    f1[key].append(f1_score(test.y, pred, average="macro"))
            per[str(k)] = {m: {"accuracy_mean": round(float(np.mean(acc[m])), 4),
                               "accuracy_std": round(float(np.std(acc[m])), 4),
                               "macro_f1_mean": round(float(np.mean(f1[m])), 4)} for m in acc}
        print(name, json.dumps(per), flush=True)
        result[name] = {"train": len(train), "test": len(test), "classes": len(labels),
                        "seeds": args.seeds, "embed_or_cache_s": round(embed_s, 1),
                        "by_labels": per}
    _save("accuracy", result)


def bench_retrain(args) -> None:
    """The backend's round after one new label: build the classifier, featurize the pool
    (cache hit), fit on the labeled rows, predict_proba on the pool, rank by breaking ties."""
    from al_engine.data import UNLABELED, Dataset
    from al_engine.registry import make_classifier, make_query_strategy
    texts, labels = [], []
    for name in args.retrain_data:  # the accuracy section's texts: already in the disk cache
        t, l = load(name, "train")
        texts += t
        labels += [f"{name}:{x}" for x in l]
    texts, labels = texts[:args.pool], labels[:args.pool]
    names = sorted(set(labels))
    rng = np.random.default_rng(0)
    labeled = rng.choice(len(texts), size=args.labeled + 1, replace=False)

    def one_round(n_labeled: int) -> dict:
        lab = [None] * len(texts)
        for i in labeled[:n_labeled]:
            lab[i] = labels[i]
        times = {}
        t0 = t = time.perf_counter()
        ds = Dataset.from_texts(texts, lab, target_labels=names)
        clf = make_classifier("embedding_logistic_regression", num_classes=len(names),
                              cache_dir=args.cache_dir)
        ds = clf.featurize(ds)
        times["featurize_s"] = time.perf_counter() - t; t = time.perf_counter()
        idx_l = np.flatnonzero(ds.y != UNLABELED)
        clf.fit(ds[idx_l])
        times["fit_s"] = time.perf_counter() - t; t = time.perf_counter()
        clf.predict_proba(ds)
        idx_u = np.flatnonzero(ds.y == UNLABELED)
        make_query_strategy("breaking_ties").rank(clf, ds, idx_u, idx_l, ds.y[idx_l])
        times["predict_and_rank_s"] = time.perf_counter() - t
        times["total_s"] = time.perf_counter() - t0
        times["encoded_texts"] = clf.featurizer.num_encoded_
        return {k: round(v, 3) if isinstance(v, float) else v for k, v in times.items()}

    t = time.perf_counter()
    first = one_round(args.labeled)           # cold: embeds the pool (or reads the disk cache)
    first_s = time.perf_counter() - t
    after_one = [one_round(args.labeled + 1) for _ in range(3)]
    _save("retrain", {"pool": len(texts), "dataset": "+".join(f"{d}.train" for d in args.retrain_data),
                      "labeled_before": args.labeled, "first_round_s": round(first_s, 2),
                      "first_round": first, "after_one_new_label": after_one,
                      "after_one_new_label_max_total_s": max(r["total_s"] for r in after_one)})


def bench_finetune(args) -> None:
    import torch
    from al_engine.registry import make_classifier
    train, test, labels = load_split_datasets("trec")
    idx = np.random.default_rng(0).choice(len(train), size=args.finetune_labels, replace=False)
    pool = train[np.random.default_rng(1).choice(len(train), size=1000, replace=False)]
    previous = json.loads(OUT.read_text()).get("finetune", {}) if OUT.exists() else {}
    result = {**previous, "dataset": "trec", "labels": args.finetune_labels,
              "torch_threads": torch.get_num_threads()}
    for name, params in (("kimcnn", {}), ("setfit", {}), ("transformer", {})):
        if args.only and name not in args.only:
            continue
        clf = make_classifier(name, num_classes=len(labels), **params)
        t = time.perf_counter()
        clf.fit(train[idx])
        fit_s = time.perf_counter() - t
        t = time.perf_counter()
        clf.predict_proba(pool)
        pred_s = time.perf_counter() - t
        acc = float(np.mean(clf.predict(test) == test.y))
        result[name] = {"params": params, "fit_s": round(fit_s, 1),
                        "loadavg_1min": os.getloadavg()[0],
                        "predict_1000_s": round(pred_s, 1), "test_accuracy": round(acc, 4)}
        print(name, result[name], flush=True)
    _save("finetune", result)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("section", choices=["throughput", "accuracy", "retrain", "finetune", "all"])
    p.add_argument("--datasets", nargs="+", default=["trec", "ag_news"])
    p.add_argument("--labels", nargs="+", type=int, default=[100, 200, 500])
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--pool", type=int, default=10000)
    p.add_argument("--labeled", type=int, default=200)
    p.add_argument("--retrain-data", nargs="+", default=["ag_news", "trec"])
    p.add_argument("--throughput-texts", type=int, default=500)
    p.add_argument("--finetune-labels", type=int, default=100)
    p.add_argument("--only", nargs="*")
    p.add_argument("--cache-dir", default=os.path.join(os.environ.get("TMPDIR", "/tmp"), "studio-al-embedding-cache"))
    args = p.parse_args(argv)
    sections = ["throughput", "accuracy", "retrain", "finetune"] if args.section == "all" \
        else [args.section]
    for s in sections:
        globals()[f"bench_{s}"](args)


if __name__ == "__main__":
    main()
