"""One round of a project, as small named steps over a :class:`~backend.record.RoundRecord`.

:func:`run_round` is a plain function of ``(project_id, settings, store, client)`` so that the
embedded runner and an RQ worker both call it, under the project's round lock. It never
raises: a failure is recorded (``status="failed"``), the previous version keeps serving, and
the next webhook retries.

The steps, and what each costs Label Studio (bounded: nothing grows with the project):

0. :meth:`Round.connect` - prove the project is connected to this backend and read its label
   config (once; re-checked every 10 minutes or on PROJECT_UPDATED): 0 requests usually.
1. :meth:`Round.sync` - bring the task mirror up to date (``backend.mirror``): re-read the
   tasks the webhooks named, list new tasks (one page; more, within a time budget, while the
   first listing of a large project is in progress).
2. :meth:`Round.train_and_rank` - fit the classifier on the labeled tasks (features from the
   per-project cache, ``backend.featcache``) and rank every unlabeled task; before
   ``AL_MIN_ANNOTATIONS`` labels, order the pool with ``AL_INIT_STRATEGY``. No request.
3. :meth:`Round.write_version` - model and ranking on disk (``/predict`` answers from it).
4. :meth:`Round.push` - the head of the ranking, the switch of the project's model version
   (``backend.push``): K + 1 requests.
5. :meth:`Round.clean_up` - delete the superseded versions' predictions (2 requests), prune
   local versions, compact the event log.
6. :meth:`Round.catch_up` - after the queue is right: continue the first listing within a
   budget, or reconcile one page at a bounded rate; refit the featurizer when the pool has
   doubled.
7. :meth:`Round.evaluate` - dashboard metrics (no request).
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import time
import traceback

import numpy as np

from backend import training
from backend.embeddings import FALLBACK_CLASSIFIER, embedding_featurizer
from backend.embeddings import fill as fill_embeddings
from backend.embeddings import progress as embedding_progress
from backend.featcache import FeatureCache
from backend.instance import Connection, Instance, NotConnected, verify_connection
from backend.labelconfig import LabelConfig, parse_label_config
from backend.mirror import Hints, TaskMirror
from backend.probes import ProbeLog
from backend.push import Pusher, annotation_rate, head_size, RATE_WINDOW_S
from backend.ranking import Ranking
from backend.record import STEPS, RoundRecord, StoppingVerdict
from backend.settings import Settings
from backend.store import Store

log = logging.getLogger("studio_al.rounds")


class ProjectDeleted(Exception):
    """Label Studio answers 404 for the project."""

#: Seconds a round may spend on the first listing after its push, when no newer round waits
#: (before training it reads one page only: annotators wait for the queue, not for listings).
CATCH_UP_BUDGET_S = 4.0
#: At most one reconciliation page pair per project per this many seconds.
RECONCILE_EVERY_S = 30.0
#: Fraction of the round's Label Studio time the next round waits after this one ends.
PACE_FACTOR = 0.25
#: While newer annotations wait, dashboard metrics are computed at most this often.
METRICS_EVERY_S = 60.0


def run_round(project_id: int, settings: Settings, store: Store, client, reason: str = "retrain"
              ) -> dict:
    """Run one round of ``project_id`` and return its audit record (a dict)."""
    with store.round_lock(project_id):
        return Round(int(project_id), settings, store, client, reason).run()


def run_project_round(project_id: int, reason: str, settings: Settings, store: Store,
                      client_factory) -> dict:
    """One round with a client of the trusted Label Studio (``backend.instance``): the
    configured URL and key, else the pinned ones. Shared by the embedded runner and the RQ
    worker; never raises."""
    creds = Instance(settings, store.root).credentials()
    if creds is None:
        record = {"status": "failed", "started_at": time.time(), "reason": reason,
                  "error": "no trusted Label Studio yet: set LABEL_STUDIO_URL and "
                           "LABEL_STUDIO_API_KEY, or connect the backend from Label Studio"}
        store.append_audit(project_id, record)
        log.error("event=round_failed project=%s error=%r", project_id, record["error"])
        return record
    return run_round(project_id, settings, store, client_factory(*creds), reason=reason)


class Round:
    """The state of one round between its steps."""

    def __init__(self, project_id: int, settings: Settings, store: Store, client, reason: str):
        self.pid, self.settings, self.store, self.client = project_id, settings, store, client
        self.t0 = time.perf_counter()
        self.rec = RoundRecord(
            round=len(store.audit(project_id)) + 1, version=store.new_version_name(project_id),
            previous=store.current(project_id), reason=reason, started_at=time.time(),
            events_upto=store.last_event_seq(project_id), strategy=settings.query_strategy,
            classifier=settings.classifier)
        self.cfg: LabelConfig | None = None
        self.mirror: TaskMirror | None = None
        self.bundle = None
        self.ranking: Ranking | None = None
        self.pusher: Pusher | None = None
        self.model_state: tuple | None = None  # (ds, idx_labeled, ids, proba) for metrics
        self.embedder = None  # the sentence-embedding featurizer still to fill (embeddings)
        self.probes: ProbeLog | None = None  # random probes: labeled so far, this ranking's
        self.probe_ids = np.zeros(0, dtype=np.int64)
        self.events: list[dict] = []
        self.wrote_version = False
        self._requests0 = getattr(client, "request_count", 0)
        self._seconds0 = getattr(client, "request_seconds", 0.0)

    # ------------------------------------------------------------------ driver
    def run(self) -> dict:
        rec = self.rec
        try:
            for step in (getattr(self, name) for name in STEPS):
                self.report(step.__name__)
                t = time.perf_counter()
                step()
                rec.timings[step.__name__] = round(time.perf_counter() - t, 4)
            rec.status = "ok"
        except ProjectDeleted as exc:
            return self.forget(str(exc))
        except NotConnected as exc:
            rec.status, rec.error = "failed", f"NotConnected: {exc}"
            self.retry_connection()
        except Exception as exc:  # noqa: BLE001 - a round failure is recorded, never raised
            rec.status, rec.error = "failed", f"{type(exc).__name__}: {exc}"
            log.error("event=round_failed project=%s version=%s error=%r\n%s", self.pid,
                      rec.version, rec.error, traceback.format_exc())
            if self.wrote_version and self.store.current(self.pid) != rec.version:
                self.store.delete_version(self.pid, rec.version)
        return self.finish()

    def report(self, step: str) -> None:
        """``/status``'s view of this round: the step it starts, with the counts and queue
        known so far (the new version may serve before its audit record is written)."""
        rec = self.rec
        try:  # only for /status: a full disk must not fail the round here
            self.store.write_progress(self.pid, {
                "round": rec.round, "version": rec.version, "reason": rec.reason, "step": step,
                "started_at": rec.started_at, "step_started_at": time.time(),
                "timings": dict(rec.timings), "n_labeled": rec.n_labeled,
                "n_unlabeled": rec.n_unlabeled, "queued_tasks": [q["task"] for q in rec.queried]})
        except OSError as exc:
            log.warning("event=progress_not_written project=%s step=%s error=%r", self.pid, step,
                        str(exc))

    def finish(self) -> dict:
        rec = self.rec
        rec.ls_requests = getattr(self.client, "request_count", 0) - self._requests0
        rec.ls_seconds = round(getattr(self.client, "request_seconds", 0.0) - self._seconds0, 4)
        rec.timings["total"] = round(time.perf_counter() - self.t0, 4)
        rec.pace_s = max(rec.pace_s, round(PACE_FACTOR * rec.ls_seconds, 3))
        rec.finished_at = time.time()
        out = rec.to_dict()
        self.store.append_audit(self.pid, out)
        with contextlib.suppress(OSError):
            self.store.write_progress(self.pid, None)
        if rec.status == "ok":
            log.info("event=round project=%s version=%s status=ok labeled=%s unlabeled=%s k=%s "
                     "cold_start=%s ls_requests=%d ls_s=%.2f live_s=%s total_s=%.3f again=%s",
                     self.pid, rec.version, rec.n_labeled, rec.n_unlabeled, rec.k,
                     rec.cold_start, rec.ls_requests, rec.ls_seconds, rec.queue_reordered_s,
                     rec.timings["total"], rec.again)
        return out

    # ------------------------------------------------------------------ 1. config and tasks
    def connect(self) -> None:
        """Prove (or re-check) that the project's ML backend in Label Studio is this backend,
        and read its label config from Label Studio (``backend.instance``). A project that
        Label Studio no longer has is forgotten."""
        config = self.store.load_project(self.pid)
        if not config:
            raise RuntimeError(f"project {self.pid} is not set up; Label Studio calls /setup "
                               "when the ML backend is connected")
        self.events = [e for e in self.store.events(self.pid)
                       if e.get("seq", 0) <= self.rec.events_upto]
        if any((e.get("config_changed") or e.get("action") == "PROJECT_DELETED") and
               e.get("seq", 0) > self._applied_upto() for e in self.events):
            conn = Connection.load(self.store, self.pid)
            if conn is not None:  # re-read the label config (or notice the deletion) now
                conn.verified_at = 0.0
                conn.save(self.store, self.pid)
        try:
            conn = verify_connection(self.store, self.pid, self.client,
                                     Instance(self.settings, self.store.root).secret())
        except Exception as exc:  # noqa: BLE001
            if getattr(exc, "status", None) == 404 and self._project_gone():
                raise ProjectDeleted(f"project {self.pid} no longer exists in Label Studio") from exc
            raise
        self.cfg = parse_label_config(conn.label_config)

    def _applied_upto(self) -> int:
        mirror = TaskMirror.open(os.path.join(self.store.project_dir(self.pid), "mirror"))
        return mirror.events_upto

    def _project_gone(self) -> bool:
        try:
            self.client.get_project(self.pid)
        except Exception as exc:  # noqa: BLE001
            return getattr(exc, "status", None) == 404
        return False

    def forget(self, why: str) -> dict:
        """The project was deleted in Label Studio: drop everything kept for it."""
        self.store.forget_project(self.pid)
        log.warning("event=project_forgotten project=%s reason=%r", self.pid, why)
        self.rec.status, self.rec.error = "deleted", why
        self.rec.finished_at = time.time()
        return self.rec.to_dict()

    def retry_connection(self) -> None:
        """Label Studio calls /setup before it saves a new ML backend, so the first check can
        come too early: retry a few times, 5, 10, then 20 s later."""
        attempts = sum(1 for r in reversed(self.store.audit(self.pid)[-3:])
                       if str(r.get("error") or "").startswith("NotConnected"))
        if attempts < 3:
            self.rec.again, self.rec.pace_s = True, 5.0 * 2 ** attempts

    def sync(self) -> None:
        """Apply the webhooks' hints and list new tasks (see ``backend.mirror``)."""
        cfg, rec = self.cfg, self.rec
        self.mirror = mirror = TaskMirror.open(os.path.join(self.store.project_dir(self.pid),
                                                            "mirror"))
        if mirror.field != cfg.text_field:
            mirror.reset(cfg.text_field)
        events = [e for e in self.events if e.get("seq", 0) > mirror.events_upto]
        report = mirror.apply_hints(self.client, self.pid, cfg,
                          Hints.from_events(events))
        if not mirror.annotated_complete:
            report.update(mirror.list_annotated(self.client, self.pid, cfg, 0.0, max_pages=1))
        if mirror.lists_before_training:
            report.update(mirror.list_new(self.client, self.pid, cfg, 0.0, max_pages=1))
        mirror.note_events(events, rec.events_upto, time.time(), RATE_WINDOW_S)
        mirror.save()
        rec.sync = report

    # ------------------------------------------------------------------ 2. model
    def train_and_rank(self) -> None:
        rec, settings, cfg = self.rec, self.settings, self.cfg
        ids, texts, labels, ann_ids = self.mirror.snapshot()
        labeled = np.fromiter((lab is not None for lab in labels), dtype=bool, count=len(labels))
        idx_l, idx_u = np.flatnonzero(labeled), np.flatnonzero(~labeled)
        rec.n_tasks, rec.n_skipped = len(ids), len(self.mirror.no_text)
        rec.n_labeled, rec.n_unlabeled = int(idx_l.size), int(idx_u.size)
        rec.labels = {"count": int(idx_l.size), "annotation_ids": ann_ids}
        order = proba = None
        if idx_l.size >= max(settings.min_annotations, 1):
            fitted = self._fit(ids, texts, labels, idx_l)
            if fitted is not None:
                clf, ds, proba = fitted
                order = training.rank_unlabeled(settings, clf, ds, proba, idx_u, idx_l, rec) \
                    if idx_u.size else idx_u
                rec.stopping = self._stopping(ids, proba, ids[idx_l])
                self.bundle = {"clf": clf, "labels": list(cfg.labels),
                               "multi_label": cfg.multi_label, "text_field": cfg.text_field,
                               "version": rec.version}
                self.model_state = (ds, idx_l, ids, proba)
        rec.cold_start = order is None
        if order is None:
            order = idx_u[training.cold_start_order(
                settings, idx_u.size, lambda: self._pool_features(ids, texts, labels)[idx_u],
                max(settings.batch_size, settings.push_head))]
            rec.strategy_used = f"init:{settings.init_strategy}"
        order = self._with_probes(ids, idx_l, order)
        predicted, confidence = (None, None) if proba is None else \
            training.predicted_labels(proba, cfg, order)
        self.ranking = Ranking.build(ids[order], training.priorities(order.size), predicted,
                                     confidence, cfg.labels, cfg.multi_label)
        rec.queried = [e.as_dict() for e in self.ranking.head(settings.batch_size)]

    def _with_probes(self, ids, idx_l, order) -> np.ndarray:
        """Count the labeled probes, then put ``AL_PROBE_SHARE`` random probes into the head
        of ``order`` (``backend.probes``; not in a cold-start round); returns the new order."""
        from al_engine.accuracy import place_probes
        rec, settings = self.rec, self.settings
        self.probes = ProbeLog.load(self.store, self.pid)
        new = self.probes.note_labels(ids[idx_l], rec.round, rec.previous,
                                      lambda: self.store.load_ranking(self.pid, rec.previous))
        rng = np.random.default_rng([settings.seed, rec.round])
        # none in a cold-start round: the first task an annotator gets is a chosen one
        share = 0.0 if rec.cold_start else settings.probe_share
        order, picked = place_probes(order, share, settings.push_max, rng)
        self.probe_ids = ids[picked]
        rec.probes = {"queued": int(picked.size), "labeled": len(self.probes.labeled),
                      "new": new, "tasks": self.probe_ids.tolist()}
        return order

    def _classifier(self, texts):
        """``(clf, name, params)``: the configured classifier, or the TF-IDF fallback while
        its sentence embeddings of the pool are incomplete (``backend.embeddings``)."""
        from al_engine.registry import make_classifier
        settings, cfg = self.settings, self.cfg
        name, params = settings.classifier, training.classifier_params(settings)
        clf = make_classifier(name, num_classes=len(cfg.labels), multi_label=cfg.multi_label,
                              **params)
        featurizer = embedding_featurizer(clf)
        if featurizer is not None:
            done = embedding_progress(featurizer, texts)
            complete = done["embedded"] == done["total"]
            self.rec.features = {"used": "embeddings" if complete else "tfidf", **done}
            if not complete:
                self.embedder = featurizer
                name, params = FALLBACK_CLASSIFIER, {}
                clf = make_classifier(name, num_classes=len(cfg.labels),
                                      multi_label=cfg.multi_label)
        return clf, name, params

    def _model_inputs(self, texts, labels):
        """``(clf, dataset, name, params)``: the round's classifier (``_classifier``) and the
        pool as a dataset without features yet (``_features`` adds them)."""
        from al_engine.data import Dataset
        clf, name, params = self._classifier(texts)
        ds = Dataset.from_texts(texts, labels, target_labels=list(self.cfg.labels),
                                multi_label=self.cfg.multi_label)
        return clf, ds, name, params

    def _pool_features(self, ids, texts, labels):
        """The features the round's classifier sees for every task (from the cache)."""
        clf, ds, name, params = self._model_inputs(texts, labels)
        return self._features(clf, ds, ids, texts, name, params).x

    def _fit(self, ids, texts, labels, idx_l):
        """``(clf, dataset, proba)``, or None (with a warning) when the texts give no
        features at all (e.g. every text is empty): the round then keeps the cold order."""
        clf, ds, name, params = self._model_inputs(texts, labels)
        try:
            ds = self._features(clf, ds, ids, texts, name, params)
        except ValueError as exc:
            self.rec.warning = f"no features from the texts ({exc}); pool kept in cold-start order"
            log.warning("event=no_features project=%s error=%r", self.pid, str(exc))
            return None
        clf.fit(ds[idx_l])
        return clf, ds, np.asarray(clf.predict_proba(ds))

    def _features(self, clf, ds, ids, texts, name, params):
        template = getattr(clf, "featurizer", None)
        if template is None:  # classifiers that read texts themselves (transformers, ...)
            return clf.featurize(ds)
        cache = FeatureCache.open(os.path.join(self.store.project_dir(self.pid), "features.pkl"))
        spec = (name, json.dumps(params, sort_keys=True, default=str))
        featurizer, x = cache.features(template, spec, ids, texts, self.mirror.changed_texts)
        self.mirror.changed_texts.clear()
        clf.featurizer = featurizer
        return ds.with_features(x)

    def _stopping(self, ids, proba, labeled_ids) -> StoppingVerdict:
        try:
            return training.evaluate_stopping(self.store, self.pid, self.settings, ids, proba,
                                              self.cfg, labeled_ids)
        except Exception as exc:  # noqa: BLE001 - a criterion error must not fail the round
            return StoppingVerdict(criterion=self.settings.stopping_criterion, stop=None,
                                   error=f"{type(exc).__name__}: {exc}")

    # ------------------------------------------------------------------ 3-5. versions and push
    def write_version(self) -> None:
        self.store.write_version(self.pid, self.rec.version, self.bundle, self.ranking)
        self.wrote_version = True

    def push(self) -> None:
        """Head first, switch, rest of the head (or everything with ``AL_PUSH_ALL``)."""
        rec, settings, ranking = self.rec, self.settings, self.ranking
        rate, annotators = annotation_rate(self.mirror.recent, time.time())
        last = self.store.last_audit(self.pid, "ok") or {}
        k = len(ranking) if settings.push_all else min(
            head_size(settings, rate, annotators, (last.get("timings") or {}).get("total", 0.0)),
            len(ranking))
        rec.k = k
        self.pusher = pusher = Pusher(self.client, self.pid, self.cfg, rec.version)
        first = min(settings.push_first, k)
        pusher.create(ranking.head(first))
        pusher.switch()
        self.store.set_current(self.pid, rec.version)
        if self.probes is not None:
            self.probes.serve(rec.version, self.probe_ids)
            self.probes.save(self.store, self.pid)
        rec.live_at = time.time()
        rec.queue_reordered_s = round(rec.live_at - rec.started_at, 4)
        if settings.push_all:
            rec.push_complete = pusher.import_all(ranking, first, self._no_newer_round)
        else:
            pusher.create(ranking.entries(first, k))
            rec.push_complete = True
        rec.pushed = pusher.created

    def _no_newer_round(self) -> bool:
        """True unless a webhook that asks for a round arrived after this round started."""
        upto = self.rec.events_upto
        if self.store.last_event_seq(self.pid) <= upto:
            return True
        return not any(e.get("handled") == "train"
                       for e in self.store.events_since(self.pid, upto, 10_000))

    def clean_up(self) -> None:
        rec = self.rec
        if rec.push_complete and not self.settings.keep_prediction_history:
            rec.deleted_versions, rec.warning_delete = self.pusher.delete_superseded(rec.previous)
        self.store.prune_versions(self.pid, keep=2)
        self.store.compact_events(self.pid, min(rec.events_upto, self.mirror.events_upto))

    # ------------------------------------------------------------------ 6-7. after the push
    def catch_up(self) -> None:
        """Work that can wait until the queue is right: the first listing of a large project
        (within a time budget, only when no newer round is waiting: annotators come first),
        or one reconciliation page pair at a bounded rate; the featurizer refit."""
        mirror, cfg, rec = self.mirror, self.cfg, self.rec
        idle = self._no_newer_round()
        if not mirror.annotated_complete and idle:
            rec.sync.update(mirror.list_annotated(self.client, self.pid, cfg, CATCH_UP_BUDGET_S))
        if not mirror.complete:  # the first listing: one page while annotators are busy
            rec.sync.update({f"after_{k}": v for k, v in mirror.list_new(
                self.client, self.pid, cfg, CATCH_UP_BUDGET_S if idle else 0.0,
                max_pages=None if idle else 1).items()})
        elif mirror.complete and mirror.annotated_complete and \
                time.time() - mirror.reconciled_at >= RECONCILE_EVERY_S:
            rec.sync.update(mirror.reconcile(self.client, self.pid, cfg))
            mirror.reconciled_at = time.time()
        mirror.save()
        self._refit_features()
        rec.again = not (mirror.complete and mirror.annotated_complete) or bool(mirror.pending)
        if self.embedder is not None:
            texts = [mirror.texts[i] for i in mirror.snapshot()[0].tolist()]
            rec.features.update(fill_embeddings(self.embedder, texts, self._may_keep_embedding))
            rec.again = True  # more to embed, or all done: the next round trains on them

    def _may_keep_embedding(self) -> bool:
        """Embed on while no newer round waits, and in any case until the next round could
        start (``AL_MIN_ROUND_INTERVAL`` after this one started): that slack delays nobody,
        so a busy project's embeddings still advance."""
        slack = self.settings.min_round_interval - 0.5 - (time.perf_counter() - self.t0)
        return slack > 0 or self._no_newer_round()

    def _refit_features(self) -> None:
        if self.bundle is None or self.model_state is None:
            return
        path = os.path.join(self.store.project_dir(self.pid), "features.pkl")
        cache = FeatureCache.open(path)
        ids = self.mirror.snapshot()[0]
        if cache.refit_due(len(ids)):
            t = time.perf_counter()
            texts = [self.mirror.texts[i] for i in ids.tolist()]
            cache.fit(cache.featurizer, cache.spec, ids, texts)
            self.rec.timings["refit_features"] = round(time.perf_counter() - t, 4)

    def evaluate(self) -> None:
        """Dashboard metrics (cross-validation, every stopping criterion): skipped while a
        newer round is already wanted, unless the last ones are older than METRICS_EVERY_S,
        so that they never delay the next round of a busy project."""
        if self.bundle is None:
            return
        last = self.store.load_state(self.pid, "metrics_at") or 0.0
        if not self._no_newer_round() and time.time() - last < METRICS_EVERY_S:
            return
        from backend.metrics import round_metrics
        ds, idx_l, ids, proba = self.model_state
        self.rec.metrics = round_metrics(self.store, self.pid, self.settings, self.cfg, ds,
                                         idx_l, ids, proba, probes=self.probes)
        self.store.save_state(self.pid, "metrics_at", time.time())
