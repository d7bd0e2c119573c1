"""The small-text 1.4.1 tests :mod:`smalltext_compat` lists but does not count, each with why.

The rule: a test is excluded when what it asserts is small-text's implementation rather than
its behaviour, in one of three ways:

- **str**: it compares ``str()``/``repr()`` of an object with small-text's exact text;
- **private**: it reads, replaces or spies on a private (``_``-prefixed) attribute or method
  of the object under test (``_retrain``, ``_clf_factory``, ``_index_to_position``,
  ``_subsample``, ...), also through a helper method of the test class;
- **internal mock**: it patches a module-level function by its small-text or scikit-learn
  path (``small_text.query_strategies.strategies.normalize``,
  ``small_text.initialization.strategies.stratified_sampling``) and asserts how it was called.

Tests that stand in a Mock or a spy for a *public* collaborator (a query strategy's ``query``,
a classifier factory's ``new``, a classifier's ``fit`` or ``predict_proba``, SEALS'
``get_subset_indices``) do count: those calls are the protocol a small-text user's own
components rely on. The list applies whatever the outcome (passing tests are excluded too).

Keys are pytest node ids; ``*`` in place of the class stands for every class that inherits
the test function (small-text's suites run one mixin for single- and multi-label data).
"""
from __future__ import annotations

STR = "str: asserts small-text's exact str()/repr() text"


def _private(attr: str) -> str:
    return f"private: reads, replaces or spies on small-text's private {attr}"


def _mock(func: str) -> str:
    return f"internal mock: patches {func} and asserts its calls"


_U = "tests/unit/small_text"
_I = "tests/integration/small_text"
_ST = f"{_U}/query_strategies/test_strategies.py"
_AL = f"{_U}/test_active_learner.py"
_NORMALIZE = "small_text.query_strategies.strategies.normalize"
_RETRAIN = _private("PoolBasedActiveLearner._retrain (patched, its calls asserted)")

EXCLUDED: dict[str, str] = {
    # query strategies
    f"{_ST}::RandomSamplingTest::test_random_sampling_str": STR,
    f"{_ST}::BreakingTiesTest::test_breaking_ties_str": STR,
    f"{_ST}::LeastConfidenceTest::test_least_confidence_str": STR,
    f"{_ST}::PredictionEntropyTest::test_prediction_entropy_str": STR,
    f"{_ST}::SubSamplingTest::test_subsampling_str": STR,
    f"{_ST}::EmbeddingBasedQueryStrategyTest::test_str": STR,
    f"{_ST}::EmbeddingKMeansTest::test_str": STR,
    f"{_ST}::EmbeddingKMeansTest::test_str_with_normalize_false": STR,
    f"{_ST}::EmbeddingKMeansTest::test_sample": _private("EmbeddingKMeans._get_nearest_to_centers*"),
    f"{_ST}::EmbeddingKMeansTest::test_sample_with_normalize_false":
        _private("EmbeddingKMeans._get_nearest_to_centers_iterative"),
    f"{_ST}::EmbeddingKMeansTest::test_sample_with_fallback":
        _private("EmbeddingKMeans._get_nearest_to_centers*"),
    f"{_ST}::ContrastiveActiveLearningTest::test_sample": _mock(_NORMALIZE),
    f"{_ST}::ContrastiveActiveLearningTest::test_sample_with_normalize_false": _mock(_NORMALIZE),
    f"{_ST}::ContrastiveActiveLearningTest::test_str": STR,
    f"{_ST}::ContrastiveActiveLearningTest::test_str_with_normalize_false": STR,
    f"{_ST}::DiscriminativeActiveLearningTest::test_query_test_num_iterations":
        _private("DiscriminativeActiveLearning._train_and_get_most_confident"),
    f"{_ST}::DiscriminativeActiveLearningTest::test_discriminative_active_learning_str": STR,
    f"{_U}/query_strategies/test_coresets.py::*::test_str": STR,
    f"{_U}/query_strategies/test_coresets.py::*::test_lightweight_coreset_str": STR,
    f"{_U}/query_strategies/test_bayesian.py::BALDTest::test_str": STR,
    f"{_U}/query_strategies/test_multi_label.py::CategoryVectorInconsistencyAndRankingTest::test_str": STR,
    f"{_U}/query_strategies/test_multi_label.py::CategoryVectorInconsistencyAndRankingTest::test_entropy":
        _private("CategoryVectorInconsistencyAndRanking._entropy"),
    f"{_I}/query_strategies/test_query_strategies.py::SubsamplingQueryStrategyTest::test_query":
        _private("SubsamplingQueryStrategy._subsample"),
    f"{_I}/query_strategies/test_query_strategies.py::SubsamplingQueryStrategyTest::"
    "test_query_when_unlabeled_pool_is_smaller_than_k": _private("SubsamplingQueryStrategy._subsample"),
    f"{_I}/query_strategies/test_query_strategies.py::SEALSTest::test_normalize": _mock(_NORMALIZE),
    f"{_I}/query_strategies/test_query_strategies.py::SEALSTest::test_normalize_false": _mock(_NORMALIZE),
    f"{_I}/query_strategies/test_query_strategies.py::SEALSTest::test_str": STR,
    f"{_I}/query_strategies/test_query_strategies.py::SEALSTest::test_str_non_default": STR,
    f"{_I}/query_strategies/test_subsampling.py::AnchorSubsamplingTest::test_query":
        _private("AnchorSubsampling._get_subset_indices"),
    f"{_I}/query_strategies/test_subsampling.py::AnchorSubsamplingTest::"
    "test_query_when_unlabeled_pool_is_smaller_than_k": _private("AnchorSubsampling._get_subset_indices"),
    f"{_I}/query_strategies/test_subsampling.py::AnchorSubsamplingTest::test_normalize":
        _mock("small_text.query_strategies.subsampling.normalize"),
    f"{_I}/query_strategies/test_subsampling.py::AnchorSubsamplingTest::test_normalize_false":
        _mock("small_text.query_strategies.subsampling.normalize"),
    f"{_I}/query_strategies/test_subsampling.py::AnchorSubsamplingTest::test_str": STR,
    f"{_I}/query_strategies/test_subsampling.py::AnchorSubsamplingTest::test_str_non_default": STR,
    # initialization
    f"{_U}/initialization/test_strategies.py::RandomInitializationStratifiedTest::"
    "test_random_initialization_stratified": _mock("small_text.initialization.strategies.stratified_sampling"),
    f"{_U}/initialization/test_strategies.py::RandomInitializationBalancedTest::"
    "test_random_initialization_balanced": _mock("small_text.initialization.strategies.balanced_sampling"),
    # active learner
    f"{_AL}::*::test_init": _private("PoolBasedActiveLearner._clf_factory"),
    f"{_AL}::*::test_init_with_kwargs": _private("PoolBasedActiveLearner._clf_factory"),
    f"{_AL}::*::test_update_with_unlabeled_instances": _private("PoolBasedActiveLearner._clf_factory"),
    f"{_AL}::*::test_update_reuse_model": _private("PoolBasedActiveLearner._clf"),
    **{f"{_AL}::*::{name}": _private("PoolBasedActiveLearner._index_to_position") for name in (
        "test_initialize_data", "test_initialize_data_with_indices_ignored",
        "test_initialize_data_with_validation_set_given")},
    **{f"{_AL}::*::{name}": _RETRAIN for name in (
        "test_update", "test_update_with_ignored_samples", "test_update_with_only_ignored_samples",
        "test_update_with_validation_set_given", "test_update_duplicate_indices_in_labeled_pool",
        "test_update_label_at", "test_update_label_at_with_retrain_true",
        "test_update_label_at_with_validation_set_given", "test_remove_label_at",
        "test_remove_label_at_with_validation_set_given", "test_ignore_sample_at",
        "test_ignore_sample_at_with_retrain_true", "test_ignore_sample_at_with_validation_set_given",
        "test_ignore_sample_at_with_label_removed",
        "test_ignore_sample_at_with_label_removed_and_retrain_true",
        "test_ignore_sample_at_with_label_removed_and_retrain_true_and_validation_set_given")},
}


def wildcard(nodeid: str) -> str | None:
    """``nodeid`` with its class replaced by ``*`` (None for a test outside a class)."""
    path, sep, rest = nodeid.partition("::")
    return f"{path}::*::{rest.rpartition('::')[2]}" if sep and "::" in rest else None


def excluded_why(nodeid: str) -> str | None:
    """Why ``nodeid`` is excluded (an :data:`EXCLUDED` entry, exact or with ``*`` for the
    class), or None."""
    return EXCLUDED.get(nodeid) or EXCLUDED.get(wildcard(nodeid))


def stale_exclusions(nodeids: set[str]) -> list[str]:
    """:data:`EXCLUDED` keys that match none of ``nodeids`` (a typo, or a renamed test)."""
    return sorted(set(EXCLUDED) - set(nodeids) - {wildcard(n) for n in nodeids})
