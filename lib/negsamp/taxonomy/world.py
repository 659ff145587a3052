"""A synthetic three-level taxonomy, its visual prototypes, and the token sequences built on it.

Concepts are numbered globally: roots first, then mids, then leaves, each
level in order, so mid ``m`` has root ``m // mids_per_root`` and leaf ``l``
has mid ``l // leaves_per_mid``.  A "hop" counts levels up from a leaf:
hop 0 is the leaf itself, hop 1 its mid (the direct hypernym), hop 2 its root.

Every sequence has :data:`SEQUENCE_LENGTH` tokens.  Questions and yes/no
prompts put their answer last, so the model's logits at
:data:`ANSWER_POSITION` predict it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

SPECIAL_TOKENS = ("<pad>", "<img>", "scene", "there", "ask", "isa", "has", ".", "yes", "no")
PAD, IMAGE, SCENE, THERE, ASK, ISA, HAS, STOP, YES, NO = range(len(SPECIAL_TOKENS))
SEQUENCE_LENGTH = 5
ANSWER_POSITION = 3  # logits here predict the last token, the answer
QUERY_POSITION = 3  # where questions and hyponym-first prompts put the queried concept
N_HOPS = 3
PROMPT_ORDERS = ("hypernym_first", "hyponym_first")


# === The taxonomy === #


@dataclass(frozen=True)
class Taxonomy:
    """A balanced tree of ``n_roots`` roots, each with ``mids_per_root`` mids, each with ``leaves_per_mid`` leaves.

    A virtual top node joins the roots, so that every pair of concepts has a
    path and a tree distance, as WordNet's single root ``entity`` does.
    """

    n_roots: int = 4
    mids_per_root: int = 3
    leaves_per_mid: int = 4

    def __post_init__(self) -> None:
        for name in ("n_roots", "mids_per_root", "leaves_per_mid"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 2:
                raise ValueError(f"{name} must be an integer >= 2 so that every level has negatives, got {value!r}")

    @property
    def n_mids(self) -> int:
        return self.n_roots * self.mids_per_root

    @property
    def n_leaves(self) -> int:
        return self.n_mids * self.leaves_per_mid

    @property
    def n_concepts(self) -> int:
        return self.n_roots + self.n_mids + self.n_leaves

    @property
    def level_sizes(self) -> tuple[int, int, int]:
        """Number of concepts at hop 0, 1 and 2 (leaves, mids, roots)."""
        return (self.n_leaves, self.n_mids, self.n_roots)

    @property
    def level_offsets(self) -> tuple[int, int, int]:
        """Global index of the first concept at hop 0, 1 and 2."""
        return (self.n_roots + self.n_mids, self.n_roots, 0)

    def depths(self) -> torch.Tensor:
        """Depth of every concept below the virtual top node (roots 1, mids 2, leaves 3), shape ``(n_concepts,)``."""
        return torch.cat([
            torch.full((self.n_roots,), 1), torch.full((self.n_mids,), 2), torch.full((self.n_leaves,), 3)
        ])

    def leaf_ancestors(self) -> torch.Tensor:
        """Global indices of each leaf's ancestor at every hop, shape ``(n_leaves, 3)``; column 0 is the leaf."""
        leaves = torch.arange(self.n_leaves)
        mids = leaves // self.leaves_per_mid
        roots = mids // self.mids_per_root
        offsets = self.level_offsets
        return torch.stack([leaves + offsets[0], mids + offsets[1], roots + offsets[2]], dim=1)

    def paths(self) -> torch.Tensor:
        """Return each concept's root, mid and leaf on its path from the top, ``-1`` below its own level.

        Shape ``(n_concepts, 3)``: column 0 is the root, 1 the mid, 2 the leaf.
        """
        chains = self.leaf_ancestors().flip(1)  # (n_leaves, 3): root, mid, leaf
        paths = torch.full((self.n_concepts, 3), -1, dtype=torch.long)
        paths[chains[:, 2]] = chains
        mids = torch.arange(self.n_mids)
        paths[mids + self.n_roots, 0] = mids // self.mids_per_root
        paths[mids + self.n_roots, 1] = mids + self.n_roots
        paths[torch.arange(self.n_roots), 0] = torch.arange(self.n_roots)
        return paths

    def tree_distance(self) -> torch.Tensor:
        """Path length between every pair of concepts, shape ``(n_concepts, n_concepts)``.

        ``d(x, y) = depth(x) + depth(y) - 2 depth(lca(x, y))``, where the
        depth of the lowest common ancestor is the number of path entries the
        two concepts share (the virtual top node has depth 0).
        """
        paths = self.paths()
        shared = ((paths[:, None, :] == paths[None, :, :]) & (paths[:, None, :] >= 0)).sum(-1)
        depths = self.depths()
        return depths[:, None] + depths[None, :] - 2 * shared

    def tree_similarity(self) -> torch.Tensor:
        """Return the similarity ``1 / (1 + d)`` of :meth:`tree_distance`, the RSA target, as float64."""
        return 1.0 / (1.0 + self.tree_distance().double())

    def is_ancestor(self) -> torch.Tensor:
        """Return a boolean matrix whose entry ``[x, y]`` is true when ``y`` is a proper ancestor of ``x``."""
        paths = self.paths()
        depths = self.depths()
        concepts = torch.arange(self.n_concepts)
        on_path = (paths[:, None, :] == concepts[None, :, None]).any(-1)
        return on_path & (concepts[None, :] != concepts[:, None]) & (depths[None, :] < depths[:, None])

    def descendant_leaves(self) -> torch.Tensor:
        """Float matrix, ``[c, l] = 1`` when leaf ``l`` lies under concept ``c`` (a leaf lies under itself).

        Shape ``(n_concepts, n_leaves)``.
        """
        chains = self.leaf_ancestors()  # (n_leaves, 3)
        membership = torch.zeros(self.n_concepts, self.n_leaves)
        leaves = torch.arange(self.n_leaves).expand(N_HOPS, -1)
        membership[chains.T.reshape(-1), leaves.reshape(-1)] = 1.0
        return membership

    def concept_names(self) -> list[str]:
        """Readable names: ``r1`` for a root, ``r1.m2`` for a mid, ``r1.m2.l3`` for a leaf (1-based)."""
        names = [f"r{r + 1}" for r in range(self.n_roots)]
        names += [f"r{m // self.mids_per_root + 1}.m{m % self.mids_per_root + 1}" for m in range(self.n_mids)]
        names += [
            f"{names[self.n_roots + leaf // self.leaves_per_mid]}.l{leaf % self.leaves_per_mid + 1}"
            for leaf in range(self.n_leaves)
        ]
        return names


# === Vocabulary === #


def vocabulary_size(taxonomy: Taxonomy) -> int:
    """Number of token ids: the special tokens followed by one token per concept."""
    return len(SPECIAL_TOKENS) + taxonomy.n_concepts


def concept_token(concepts: torch.Tensor) -> torch.Tensor:
    """Token id of each global concept index."""
    return concepts + len(SPECIAL_TOKENS)


def decode(tokens: torch.Tensor, taxonomy: Taxonomy) -> str:
    """Render one token sequence as words, for display."""
    names = list(SPECIAL_TOKENS) + taxonomy.concept_names()
    return " ".join(names[int(token)] for token in tokens if int(token) != PAD)


# === Visual prototypes === #


def visual_prototypes(taxonomy: Taxonomy, dim: int, generator: torch.Generator) -> torch.Tensor:
    """Draw one prototype image vector per leaf, shape ``(n_leaves, dim)``.

    Each prototype is ``(a_root + b_mid + c_leaf) / sqrt(3)`` with independent
    standard normal components, so leaves under one hypernym share that
    hypernym's component and look alike, the more so the lower the hypernym.
    """
    if dim < 1:
        raise ValueError(f"dim must be a positive integer, got {dim!r}")
    chains = taxonomy.leaf_ancestors()
    components = torch.randn(taxonomy.n_concepts, dim, generator=generator)
    return components[chains].sum(dim=1) / math.sqrt(N_HOPS)


def sample_images(prototypes: torch.Tensor, leaves: torch.Tensor, noise: float,
                  generator: torch.Generator) -> torch.Tensor:
    """Noisy images of ``leaves``: their prototype plus isotropic Gaussian noise of standard deviation ``noise``."""
    if noise < 0:
        raise ValueError(f"noise must be >= 0, got {noise!r}")
    return prototypes[leaves] + noise * torch.randn(len(leaves), prototypes.shape[1], generator=generator)


# === Token sequences === #


def _column(value: int, n: int) -> torch.Tensor:
    return torch.full((n,), value, dtype=torch.long)


def hypernym_candidates(taxonomy: Taxonomy, leaves: torch.Tensor, hops: torch.Tensor, positive: torch.Tensor,
                        generator: torch.Generator) -> torch.Tensor:
    """Global concept at hop ``hops`` for each leaf: its ancestor if ``positive``, else a uniform non-ancestor.

    A non-ancestor is any other concept at the same level; for hop 0 that is
    any other leaf.
    """
    sizes = torch.tensor(taxonomy.level_sizes)[hops]
    offsets = torch.tensor(taxonomy.level_offsets)[hops]
    ancestor = taxonomy.leaf_ancestors()[leaves, hops] - offsets
    shift = 1 + (torch.rand(len(leaves), generator=generator) * (sizes - 1)).long()
    other = (ancestor + shift) % sizes
    return offsets + torch.where(positive, ancestor, other)


def scene_questions(subject: torch.Tensor, queried: torch.Tensor, positive: torch.Tensor) -> torch.Tensor:
    """Questions ``scene X there Y yes|no``: is a ``Y`` in a scene that shows ``X``?

    ``subject`` holds token ids (a concept token, or :data:`IMAGE` for an
    image), ``queried`` global concept indices.  Shape ``(n, 5)``.
    """
    n = len(subject)
    answers = torch.where(positive, YES, NO)
    return torch.stack([_column(SCENE, n), subject, _column(THERE, n), concept_token(queried), answers], dim=1)


def yes_no_prompts(hyponyms: torch.Tensor, hypernyms: torch.Tensor, positive: torch.Tensor,
                   order: str = "hypernym_first") -> torch.Tensor:
    """Taxonomic yes/no prompts, shape ``(n, 5)``.

    ``hypernym_first`` writes ``ask Y has X yes|no`` ("does the kind Y include
    X?"), so the hyponym sits where scene questions put the queried
    concept; ``hyponym_first`` writes ``ask X isa Y yes|no``, token for token
    the layout of a scene question.
    """
    if order not in PROMPT_ORDERS:
        raise ValueError(f"unknown prompt order {order!r}; choose one of {', '.join(PROMPT_ORDERS)}")
    n = len(hyponyms)
    answers = torch.where(positive, YES, NO)
    x, y = concept_token(hyponyms), concept_token(hypernyms)
    if order == "hypernym_first":
        return torch.stack([_column(ASK, n), y, _column(HAS, n), x, answers], dim=1)
    return torch.stack([_column(ASK, n), x, _column(ISA, n), y, answers], dim=1)


def fact_sentences(taxonomy: Taxonomy, n: int, generator: torch.Generator) -> torch.Tensor:
    """Statements ``X isa Y .`` for uniformly drawn edges leaf-mid, leaf-root and mid-root, shape ``(n, 5)``."""
    leaves = torch.randint(0, taxonomy.n_leaves, (n,), generator=generator)
    chains = taxonomy.leaf_ancestors()[leaves]
    kind = torch.randint(0, 3, (n,), generator=generator)
    subject = torch.where(kind == 2, chains[:, 1], chains[:, 0])
    hypernym = torch.where(kind == 0, chains[:, 1], chains[:, 2])
    return torch.stack([
        concept_token(subject), _column(ISA, n), concept_token(hypernym), _column(STOP, n), _column(PAD, n)
    ], dim=1)


# === The world: taxonomy, images and corpora === #


@dataclass(frozen=True)
class ToyWorld:
    """Everything the minimal pair is trained and tested on.

    Attributes
    ----------
    taxonomy : Taxonomy
    prototypes : Tensor
        Visual prototype of each leaf, shape ``(n_leaves, visual_dim)``.
    image_noise : float
        Standard deviation of the per-image Gaussian noise.
    text_mix : tuple of float
        Fractions of facts, yes/no prompts and scene questions in a text batch.
    caption_fraction : float
        Fraction of captions ``<img> isa Y .`` in a grounded batch; the rest are image questions.
    prompt_order : str
        Layout of the yes/no prompts, see :func:`yes_no_prompts`.
    """

    taxonomy: Taxonomy
    prototypes: torch.Tensor
    image_noise: float = 0.5
    text_mix: tuple[float, float, float] = (0.4, 0.2, 0.4)
    caption_fraction: float = 0.3
    prompt_order: str = "hypernym_first"

    def __post_init__(self) -> None:
        if len(self.text_mix) != 3 or min(self.text_mix) < 0 or not math.isclose(sum(self.text_mix), 1.0):
            raise ValueError(f"text_mix must be three non-negative fractions summing to 1, got {self.text_mix!r}")
        if not 0 <= self.caption_fraction <= 1:
            raise ValueError(f"caption_fraction must lie in [0, 1], got {self.caption_fraction!r}")
        if self.prompt_order not in PROMPT_ORDERS:
            raise ValueError(f"unknown prompt order {self.prompt_order!r}; choose one of {', '.join(PROMPT_ORDERS)}")
        if self.prototypes.shape[0] != self.taxonomy.n_leaves:
            raise ValueError(
                f"prototypes must have one row per leaf ({self.taxonomy.n_leaves}), got {self.prototypes.shape[0]}"
            )

    @property
    def visual_dim(self) -> int:
        return self.prototypes.shape[1]

    @property
    def vocabulary_size(self) -> int:
        return vocabulary_size(self.taxonomy)


def make_world(taxonomy: Taxonomy, visual_dim: int, generator: torch.Generator, **settings) -> ToyWorld:
    """Draw visual prototypes and bundle them with ``taxonomy`` and the corpus ``settings`` of :class:`ToyWorld`."""
    return ToyWorld(taxonomy, visual_prototypes(taxonomy, visual_dim, generator), **settings)


def text_batch(world: ToyWorld, n: int, generator: torch.Generator) -> torch.Tensor:
    """A batch of the text corpus, shape ``(n, 5)``: facts, yes/no prompts and leaf-only scene questions.

    Scene questions ask only about leaves (hop 0), half of them about the
    leaf in the scene (answer yes) and half about another leaf (answer no),
    so the text never asks a scene question about a hypernym.  Yes/no prompts
    ask about hop 1 or 2, half with the true hypernym.
    """
    taxonomy = world.taxonomy
    n_prompts = round(n * world.text_mix[1])
    n_questions = round(n * world.text_mix[2])
    n_facts = n - n_prompts - n_questions

    leaves = torch.randint(0, taxonomy.n_leaves, (n_prompts,), generator=generator)
    hops = torch.randint(1, N_HOPS, (n_prompts,), generator=generator)
    positive = torch.rand(n_prompts, generator=generator) < 0.5
    hypernyms = hypernym_candidates(taxonomy, leaves, hops, positive, generator)
    prompts = yes_no_prompts(taxonomy.leaf_ancestors()[leaves, 0], hypernyms, positive, world.prompt_order)

    leaves = torch.randint(0, taxonomy.n_leaves, (n_questions,), generator=generator)
    positive = torch.rand(n_questions, generator=generator) < 0.5
    queried = hypernym_candidates(taxonomy, leaves, torch.zeros_like(leaves), positive, generator)
    questions = scene_questions(concept_token(taxonomy.leaf_ancestors()[leaves, 0]), queried, positive)

    return torch.cat([fact_sentences(taxonomy, n_facts, generator), prompts, questions])


def grounded_batch(world: ToyWorld, n: int, generator: torch.Generator,
                   max_hop: int = 2, caption_fraction: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw a batch of grounded data: captions ``<img> isa Y .`` and image questions ``scene <img> there Y yes|no``.

    Captions name the leaf or one of its hypernyms, uniformly; image questions
    ask about hop 0 to ``max_hop``, half with the true concept.  The
    ``<img>`` token's embedding is replaced by the projected image.

    Returns
    -------
    tokens : LongTensor, shape ``(n, 5)``
    images : Tensor, shape ``(n, visual_dim)``
    """
    if not 0 <= max_hop < N_HOPS:
        raise ValueError(f"max_hop must lie in [0, {N_HOPS - 1}], got {max_hop!r}")
    taxonomy = world.taxonomy
    fraction = world.caption_fraction if caption_fraction is None else caption_fraction
    n_captions = round(n * fraction)
    n_questions = n - n_captions
    leaves = torch.randint(0, taxonomy.n_leaves, (n,), generator=generator)
    images = sample_images(world.prototypes, leaves, world.image_noise, generator)

    caption_hops = torch.randint(0, N_HOPS, (n_captions,), generator=generator)
    named = taxonomy.leaf_ancestors()[leaves[:n_captions], caption_hops]
    captions = torch.stack([
        _column(IMAGE, n_captions), _column(ISA, n_captions), concept_token(named),
        _column(STOP, n_captions), _column(PAD, n_captions)
    ], dim=1)

    question_leaves = leaves[n_captions:]
    hops = torch.randint(0, max_hop + 1, (n_questions,), generator=generator)
    positive = torch.rand(n_questions, generator=generator) < 0.5
    queried = hypernym_candidates(taxonomy, question_leaves, hops, positive, generator)
    questions = scene_questions(_column(IMAGE, n_questions), queried, positive)
    return torch.cat([captions, questions]), images


# === Test units === #


def negative_concepts(taxonomy: Taxonomy, n_negatives: int, generator: torch.Generator,
                      hops: tuple[int, ...] = (0, 1, 2)) -> tuple[torch.Tensor, torch.Tensor]:
    """Distinct non-ancestors for every (leaf, hop), drawn without replacement.

    Returns
    -------
    negatives : LongTensor, shape ``(n_leaves, len(hops), n_negatives)``
        Global concept indices; where a level has fewer than ``n_negatives``
        non-ancestors the extra slots repeat the last valid one.
    valid : BoolTensor, shape ``(len(hops), n_negatives)``
        Which slots hold a distinct negative.
    """
    if n_negatives < 1:
        raise ValueError(f"n_negatives must be a positive integer, got {n_negatives!r}")
    chains = taxonomy.leaf_ancestors()
    negatives, valid = [], []
    for hop in hops:  # at most three levels; the leaves are vectorised
        size, offset = taxonomy.level_sizes[hop], taxonomy.level_offsets[hop]
        available = min(n_negatives, size - 1)
        shifts = torch.argsort(torch.rand(taxonomy.n_leaves, size - 1, generator=generator), dim=1)[:, :available] + 1
        shifts = torch.cat([shifts, shifts[:, -1:].expand(-1, n_negatives - available)], dim=1)
        negatives.append(offset + (chains[:, hop:hop + 1] - offset + shifts) % size)
        valid.append(torch.arange(n_negatives) < available)
    return torch.stack(negatives, dim=1), torch.stack(valid)


def taxonomic_question_units(taxonomy: Taxonomy, n_negatives: int, generator: torch.Generator,
                             image_subject: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Text-only test units in the style of TaxonomiGQA: one per (leaf, hop).

    Unit ``(l, h)`` asks about a scene showing leaf ``l`` whether a concept at
    hop ``h`` is present: slot 0 names the true ancestor (answer yes), slots
    ``1..n_negatives`` name negative-sampled non-ancestors at the same level
    (answer no).

    Returns
    -------
    tokens : LongTensor, shape ``(n_leaves, 3, 1 + n_negatives, 5)``
    valid : BoolTensor, shape ``(3, 1 + n_negatives)``
    """
    chains = taxonomy.leaf_ancestors()
    negatives, valid = negative_concepts(taxonomy, n_negatives, generator)
    queried = torch.cat([chains.unsqueeze(-1), negatives], dim=-1)  # (n_leaves, 3, 1 + k)
    positive = torch.zeros_like(queried, dtype=torch.bool)
    positive[..., 0] = True
    subject = torch.full_like(queried, IMAGE) if image_subject else concept_token(chains[:, :1, None]).expand_as(queried)
    tokens = scene_questions(subject.reshape(-1), queried.reshape(-1), positive.reshape(-1))
    valid = torch.cat([torch.ones(N_HOPS, 1, dtype=torch.bool), valid], dim=1)
    return tokens.reshape(*queried.shape, SEQUENCE_LENGTH), valid


def yes_no_units(taxonomy: Taxonomy, n_negatives: int, generator: torch.Generator,
                 order: str = "hypernym_first") -> tuple[torch.Tensor, torch.Tensor]:
    """Out-of-context yes/no units in the style of TAXOMPS: one per (leaf, hop) for hops 1 and 2.

    Slot 0 pairs the leaf with its true hypernym (answer yes), the other
    slots with negative-sampled non-hypernyms at the same level (answer no).

    Returns
    -------
    tokens : LongTensor, shape ``(n_leaves, 2, 1 + n_negatives, 5)``
    valid : BoolTensor, shape ``(2, 1 + n_negatives)``
    """
    chains = taxonomy.leaf_ancestors()
    negatives, valid = negative_concepts(taxonomy, n_negatives, generator, hops=(1, 2))
    hypernyms = torch.cat([chains[:, 1:].unsqueeze(-1), negatives], dim=-1)  # (n_leaves, 2, 1 + k)
    positive = torch.zeros_like(hypernyms, dtype=torch.bool)
    positive[..., 0] = True
    hyponyms = chains[:, :1, None].expand_as(hypernyms)
    tokens = yes_no_prompts(hyponyms.reshape(-1), hypernyms.reshape(-1), positive.reshape(-1), order)
    valid = torch.cat([torch.ones(2, 1, dtype=torch.bool), valid], dim=1)
    return tokens.reshape(*hypernyms.shape, SEQUENCE_LENGTH), valid
