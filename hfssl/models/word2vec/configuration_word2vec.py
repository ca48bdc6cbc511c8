"""word2vec configuration (Mikolov et al. 2013, "Distributed Representations of Words and Phrases
and their Compositionality")."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from transformers import PretrainedConfig

from hfssl.configuration_utils import check_range

ARCHITECTURES = ("skip-gram", "cbow")
#: How a training step updates the embeddings: "numba", per-pair SGD in place by a compiled CPU kernel
#: (:mod:`hfssl.models.word2vec.kernels`); "torch", batched tiles with sparse autograd gradients that
#: the engine's SGD applies (any device, several processes).
KERNELS = ("numba", "torch")
#: Negatives sharing and block size of each kernel when the recipe does not set them.
KERNEL_DEFAULTS = {"numba": {"shared_negatives": None, "negative_block_size": 1},
                   "torch": {"shared_negatives": 16, "negative_block_size": 32}}


class Word2VecConfig(PretrainedConfig):
    """Configuration of :class:`Word2VecModel`: skip-gram or CBOW with negative sampling.

    Defaults are word2vec.c's and gensim's (``vector_size=100, window=5, negative=5,
    sample=1e-3, min_count=5, ns_exponent=0.75``). Everything the loss needs is here or in the
    model's weights (the ``word_counts`` buffer), so a saved model recomputes its loss alone.

    Args:
        vocab_size: number of rows of both embedding matrices (tokenizer size).
        vector_size: embedding width d (``hidden_size`` is an alias).
        architecture: ``"skip-gram"`` (each context word predicts the centre word, sec. 2 of the
            paper) or ``"cbow"`` (the mean of the context words predicts the centre word).
        window: maximum distance between the centre and a context word. Each centre draws its own
            window uniformly from ``1..window`` (word2vec.c's "dynamic window").
        negative: negative samples per positive pair in the objective (k of eq. 4).
        shared_negatives: K negative words drawn per block of ``negative_block_size`` centres and
            shared by every pair of the block, each weighted ``negative / K``, so the expected
            gradient equals word2vec's ``negative`` independent samples per pair (Ji et al. 2016,
            "Parallelizing Word2Vec in Shared and Distributed Memory"). Negatives equal to a pair's
            own target word are skipped, as in word2vec.c. Default: ``negative`` with the numba
            kernel, 16 with the torch kernel.
        negative_block_size: centres per block sharing one set of negatives (T). Default: 1 with the
            numba kernel (each centre's window shares its own negatives), 32 with the torch kernel
            (whose tiles need ``T >= window``).
        kernel: ``"numba"`` (default): a compiled CPU kernel applies word2vec.c's per-pair SGD step to
            the embedding rows in place, at the engine's learning rate of the step, on ``workers``
            threads; no gradients. ``"torch"``: batched tile products with sparse closed-form
            gradients applied by the engine's SGD optimizer (a GPU, several processes); see
            :mod:`hfssl.models.word2vec.modeling_word2vec`.
        workers: threads of the numba kernel (``None``: every core numba sees). One worker gives a
            bit-for-bit reproducible run; several update shared rows lock-free (Hogwild, as
            word2vec.c and gensim), so their interleaving is not reproducible.
        ns_exponent: exponent of the unigram noise distribution ``P_n(w) ∝ count(w)^0.75``.
        sample: subsampling threshold t: a word with corpus frequency f is kept with probability
            ``(sqrt(f / t) + 1) * t / f`` (word2vec.c's variant of eq. 5); ``0`` disables it.
        min_count: words seen fewer times are dropped from the vocabulary.
        max_vocab_size: keep at most this many most frequent words (``None``: no cap).
        cbow_mean: CBOW averages (True) or sums (False) the context vectors; the update of each
            context vector is word2vec.c's (see :mod:`modeling_word2vec`).
        max_row_curvature: batched SGD stabiliser of the torch kernel (ours; the numba kernel
            applies every pair's update at once and needs none). word2vec.c applies each pair's update
            at once; a batch adds up all the updates of a row, and for frequent words the sum
            overshoots (the step times the loss curvature along it exceeds 2 and training
            diverges). The curvature of each row's loss along its own update direction is measured
            in the forward pass, and a row whose curvature ``c`` exceeds this value has its update
            scaled by ``max_row_curvature / c``. The default 40 = 1 / 0.025 keeps ``lr * c <= 1``
            at word2vec's learning rate; rare words (most rows) are never scaled. ``None`` disables it.
        word_counts: corpus counts of the ``vocab_size`` tokens, used once to fill the model's
            ``word_counts`` buffer. They travel in ``model.safetensors``, not in ``config.json``.
    """

    model_type = "hfssl_word2vec"
    attribute_map = {"hidden_size": "vector_size"}

    def __init__(
        self,
        vocab_size: int = 100,
        vector_size: int = 100,
        architecture: str = "skip-gram",
        window: int = 5,
        negative: int = 5,
        shared_negatives: int | None = None,
        negative_block_size: int | None = None,
        ns_exponent: float = 0.75,
        sample: float = 1e-3,
        min_count: int = 5,
        max_vocab_size: int | None = None,
        cbow_mean: bool = True,
        max_row_curvature: float | None = 40.0,
        kernel: str = "numba",
        workers: int | None = None,
        word_counts: Sequence[int] | None = None,
        **kwargs: Any,
    ) -> None:
        if architecture not in ARCHITECTURES:
            raise ValueError(f"architecture must be one of {', '.join(ARCHITECTURES)}; got {architecture!r}")
        if kernel not in KERNELS:
            raise ValueError(f"kernel must be one of {', '.join(KERNELS)} (numba: compiled CPU kernel, torch: "
                             f"batched tiles for a GPU or several processes); got {kernel!r}")
        if workers is not None:
            check_range("workers", workers, 1, 1 << 12)
        if shared_negatives is None:
            shared_negatives = KERNEL_DEFAULTS[kernel]["shared_negatives"] or negative
        if negative_block_size is None:
            negative_block_size = KERNEL_DEFAULTS[kernel]["negative_block_size"]
        check_range("vocab_size", vocab_size, 1, 1 << 31)
        check_range("vector_size", vector_size, 1, 1 << 16)
        check_range("window", window, 1, 1000)
        check_range("negative", negative, 1, 1000)
        check_range("shared_negatives", shared_negatives, 1, 1 << 16)
        check_range("negative_block_size", negative_block_size, 1, 1 << 16)
        check_range("ns_exponent", ns_exponent, -10.0, 10.0)
        check_range("sample", sample, 0.0, 1.0)
        check_range("min_count", min_count, 1, 1 << 62)
        if max_vocab_size is not None:
            check_range("max_vocab_size", max_vocab_size, 1, 1 << 31)
        if max_row_curvature is not None:
            check_range("max_row_curvature", max_row_curvature, 0.0, float("inf"), low_open=True)
        if kernel == "torch" and negative_block_size < window:
            raise ValueError(
                f"negative_block_size ({negative_block_size}) must be at least the window ({window}) with kernel "
                "torch: a tile's context rows reach at most one tile to each side"
            )
        if word_counts is not None and len(word_counts) != vocab_size:
            raise ValueError(f"word_counts has {len(word_counts)} entries but vocab_size is {vocab_size}")
        self.vocab_size = vocab_size
        self.vector_size = vector_size
        self.architecture = architecture
        self.window = window
        self.negative = negative
        self.shared_negatives = shared_negatives
        self.negative_block_size = negative_block_size
        self.ns_exponent = ns_exponent
        self.sample = sample
        self.min_count = min_count
        self.max_vocab_size = max_vocab_size
        self.cbow_mean = cbow_mean
        self.max_row_curvature = max_row_curvature
        self.kernel = kernel
        self.workers = workers
        self.word_counts = list(word_counts) if word_counts is not None else None
        # The two embedding matrices are different parameters (word2vec's syn0 and syn1neg).
        kwargs["tie_word_embeddings"] = False
        super().__init__(**kwargs)

    def to_dict(self) -> dict[str, Any]:
        """Serialise without ``word_counts``: the counts are saved as a weight of the model."""
        output = super().to_dict()
        output.pop("word_counts", None)
        return output
