"""word2vec (Mikolov et al. 2013): the method's spec, registered when hfssl discovers its methods."""

from hfssl.models.word2vec.configuration_word2vec import Word2VecConfig
from hfssl.models.word2vec.data import build_inputs, build_training_data, check_optimizer
from hfssl.models.word2vec.export import export_word_vectors
from hfssl.models.word2vec.modeling_word2vec import Word2VecModel, Word2VecOutput
from hfssl.models.word2vec.pictures import draw_word_map
from hfssl.registry import TEXT, WORD_VECTORS, MethodSpec, Paper, register_method

PAPER = Paper(
    title="Distributed Representations of Words and Phrases and their Compositionality",
    url="https://arxiv.org/abs/1310.4546",
    bibtex=r"""@inproceedings{mikolov2013word2vec,
  title     = {Distributed Representations of Words and Phrases and their Compositionality},
  author    = {Mikolov, Tomas and Sutskever, Ilya and Chen, Kai and Corrado, Greg and Dean, Jeffrey},
  booktitle = {Advances in Neural Information Processing Systems (NeurIPS)},
  year      = {2013}
}""",
)

SPEC = register_method(MethodSpec(
    name="word2vec",
    config_class=Word2VecConfig,
    model_class=Word2VecModel,
    modality=TEXT,
    family="word-embeddings",
    paper=PAPER,
    display_name="word2vec",
    build_inputs=build_inputs,
    export=export_word_vectors,
    provides=(WORD_VECTORS,),
    build_data=build_training_data,
    pictures=draw_word_map,
    check_recipe=check_optimizer,
))

__all__ = ["Word2VecConfig", "Word2VecModel", "Word2VecOutput", "SPEC"]
