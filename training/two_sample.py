"""A classifier two-sample test: can a classifier tell two sets of excerpts apart?

Per-feature overlaps compare one feature at a time; a listener hears them together. Gradient-
boosted trees (scikit-learn) are trained on every per-excerpt feature to tell the sets apart, with
5-fold cross-validation in which all the excerpts of one piece fall in the same fold (else the
trees learn pieces, not styles) and the classes balanced. The cross-validated ROC AUC is the
figure: 0.5 = indistinguishable, 1.0 = every excerpt recognised. The same test on two real sets
(MAESTRO train excerpts against test) is its ceiling: real pieces differ too.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from training.features import SCALAR_FEATURES, VECTOR_FEATURES


@dataclass(frozen=True)
class ClassifierSettings:
    """The trees and the folds. Small trees: a few hundred excerpts per side."""

    folds: int = 5
    trees: int = 100
    depth: int = 3
    learning_rate: float = 0.1
    top_features: int = 8


def feature_matrix(table: dict) -> tuple[np.ndarray, list]:
    """[pieces, columns] of every feature (vector features one column per entry) and each column's feature name."""
    columns, names = [], []
    for name in (*SCALAR_FEATURES, *VECTOR_FEATURES):
        values = np.asarray(table[name], np.float64)
        values = values[:, None] if values.ndim == 1 else values
        columns.append(values)
        names += [name] * values.shape[1]
    return np.concatenate(columns, axis=1), names


def _balanced(count_a: int, count_b: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Indices into each set, the larger cut down at random to the smaller's size."""
    size = min(count_a, count_b)
    return np.sort(rng.permutation(count_a)[:size]), np.sort(rng.permutation(count_b)[:size])


def classifier_test(reference: dict, other: dict, reference_groups, other_groups, seed: int = 0,
                    settings: ClassifierSettings = ClassifierSettings()) -> dict:
    """Cross-validated AUC and accuracy of telling `other` excerpts from `reference` ones.

    reference, other: feature tables (training.features.feature_table); *_groups: the piece each
    excerpt came from (excerpts of one piece stay in one fold). Returns {"auc", "accuracy",
    "excerpts" per side, "separating": the features that carry the trees' decisions, largest first}.
    """
    from sklearn.ensemble import GradientBoostingClassifier
    from sklearn.metrics import log_loss, roc_auc_score
    from sklearn.model_selection import StratifiedGroupKFold

    rng = np.random.default_rng(seed)
    features_a, names = feature_matrix(reference)
    features_b, _ = feature_matrix(other)
    keep_a, keep_b = _balanced(len(features_a), len(features_b), rng)
    features = np.concatenate([features_a[keep_a], features_b[keep_b]])
    labels = np.concatenate([np.zeros(len(keep_a), int), np.ones(len(keep_b), int)])
    # Group labels must not collide between the sets: a generated stream is never a real piece.
    groups = np.concatenate([[f"a{g}" for g in np.asarray(reference_groups)[keep_a]],
                             [f"b{g}" for g in np.asarray(other_groups)[keep_b]]])

    def trees():
        return GradientBoostingClassifier(n_estimators=settings.trees, max_depth=settings.depth,
                                          learning_rate=settings.learning_rate, max_features="sqrt",
                                          random_state=seed)

    scores = np.zeros(len(labels))
    # Each fold must hold pieces of both sets: a tiny set (a test's) gets fewer folds.
    fold_count = max(2, min(settings.folds, *(len(set(groups[labels == label])) for label in (0, 1))))
    folds = StratifiedGroupKFold(n_splits=fold_count, shuffle=True, random_state=seed)
    for train, held_out in folds.split(features, labels, groups):
        scores[held_out] = trees().fit(features[train], labels[train]).predict_proba(features[held_out])[:, 1]
    importance = {}
    for name, value in zip(names, trees().fit(features, labels).feature_importances_):
        importance[name] = importance.get(name, 0.0) + float(value)
    separating = sorted(importance.items(), key=lambda item: -item[1])[: settings.top_features]
    return {"auc": round(float(roc_auc_score(labels, scores)), 4),
            "accuracy": round(float(np.mean((scores >= 0.5) == labels)), 4),
            # How sure the held-out guesses are (nats; 0.693 = a coin): it still ranks sets the
            # AUC calls equally separable (both near 1).
            "log_loss": round(float(log_loss(labels, np.clip(scores, 1e-6, 1 - 1e-6))), 4),
            "excerpts": len(keep_a), "folds": fold_count,
            "separating": [{"feature": name, "importance": round(value, 4)} for name, value in separating]}
