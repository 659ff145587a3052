"""Seeded synthetic graphs with known structure, as connected networkx graphs."""

from __future__ import annotations


def largest_component(graph):
    """Return a copy of the largest connected component of an undirected graph, nodes relabelled 0..n-1."""
    import networkx as nx

    if graph.number_of_nodes() == 0:
        raise ValueError("graph has no nodes")
    nodes = max(nx.connected_components(graph), key=len)
    return nx.convert_node_labels_to_integers(graph.subgraph(nodes).copy())


def planted_partition_graph(blocks: int, block_size: int, p_in: float, p_out: float, seed: int = 0):
    """Return the largest component of a stochastic block model with equal blocks.

    Nodes in the same block are joined with probability ``p_in`` and nodes
    in different blocks with probability ``p_out`` (networkx's
    ``stochastic_block_model``).  The block of each node is stored in the
    node attribute ``block``.
    """
    import networkx as nx

    if blocks < 1 or block_size < 2:
        raise ValueError(f"need blocks >= 1 and block_size >= 2, got {blocks} and {block_size}")
    if not 0 <= p_out <= p_in <= 1:
        raise ValueError(f"need 0 <= p_out <= p_in <= 1, got p_in={p_in!r}, p_out={p_out!r}")
    probabilities = [[p_in if i == j else p_out for j in range(blocks)] for i in range(blocks)]
    return largest_component(nx.stochastic_block_model([block_size] * blocks, probabilities, seed=seed))


def small_world_graph(n: int, neighbours: int, rewire: float, seed: int = 0):
    """Return a connected Watts-Strogatz graph: a ring lattice of ``neighbours`` nearest neighbours, rewired.

    networkx's ``connected_watts_strogatz_graph`` redraws until the graph is connected.
    """
    import networkx as nx

    if neighbours < 2 or neighbours >= n:
        raise ValueError(f"neighbours must lie in [2, n), got {neighbours} for n={n}")
    if not 0 <= rewire <= 1:
        raise ValueError(f"rewire probability must lie in [0, 1], got {rewire!r}")
    return nx.connected_watts_strogatz_graph(n, neighbours, rewire, seed=seed)
