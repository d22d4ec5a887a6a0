#!/usr/bin/env python3
"""How far word counts go on the BBC target of docs/classification.md: linear models over TF-IDF n-grams.

Not a twin of seqlab's model: a ceiling for the issue's 0.95. Text = title + " " + description, as seqlab reads
an AG News-layout CSV. Two figures per model family:

- honest: the hyper-parameters chosen by 5-fold cross-validation on the training file, then measured once on
  the test file;
- oracle: the best test accuracy over the whole grid, i.e. tuned on the test set itself. No honest procedure can
  beat it with these models; it bounds what tuning could give.

Needs scikit-learn (`pip install scikit-learn` in the torch venv).

    /work/venvs/torch/bin/python tests/reference/bbc_linear_baselines.py \
        --train ../shared/data/classification/bbc-news-train.csv \
        --test ../shared/data/classification/bbc-news-test.csv
"""
import argparse
import csv

from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.naive_bayes import MultinomialNB
from sklearn.pipeline import Pipeline
from sklearn.svm import LinearSVC


def read(path):
    texts, labels = [], []
    with open(path, newline="", encoding="utf-8") as f:
        for record in csv.reader(f):
            if len(record) >= 3 and record[0].strip().isdigit():
                texts.append(record[1] + " " + record[2])
                labels.append(record[0])
    return texts, labels


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--train", required=True)
    parser.add_argument("--test", required=True)
    args = parser.parse_args()
    x_train, y_train = read(args.train)
    x_test, y_test = read(args.test)
    print(f"{len(x_train)} training and {len(x_test)} test texts")

    tfidf_grid = {"tfidf__ngram_range": [(1, 1), (1, 2), (1, 3)], "tfidf__sublinear_tf": [True, False]}
    families = {
        "multinomial naive Bayes": (MultinomialNB(), {"clf__alpha": [0.03, 0.1, 0.3, 1.0]}),
        "logistic regression": (LogisticRegression(max_iter=5000), {"clf__C": [3, 10, 30, 100, 300]}),
        "linear SVM": (LinearSVC(), {"clf__C": [0.1, 0.3, 1, 3, 10]}),
    }
    folds = StratifiedKFold(n_splits=5, shuffle=True, random_state=0)
    for name, (clf, grid) in families.items():
        pipe = Pipeline([("tfidf", TfidfVectorizer()), ("clf", clf)])
        search = GridSearchCV(pipe, {**tfidf_grid, **grid}, cv=folds, n_jobs=1)
        search.fit(x_train, y_train)
        honest = search.score(x_test, y_test)
        oracle = 0.0
        for params in search.cv_results_["params"]:
            model = Pipeline([("tfidf", TfidfVectorizer()), ("clf", clf)]).set_params(**params)
            model.fit(x_train, y_train)
            oracle = max(oracle, model.score(x_test, y_test))
        print(
            f"{name}: chosen by cross-validation {search.best_params_} -> test accuracy {honest:.4f}; "
            f"best over the grid on the test set (oracle) {oracle:.4f}"
        )


if __name__ == "__main__":
    main()
