"""SimCSE, contrastive sentence embeddings (Gao, Yao, Chen 2021): the method's spec, registered when hfssl
discovers its methods."""

from hfssl.models.simcse.configuration_simcse import SimCSEConfig
from hfssl.models.simcse.data import build_inputs, build_training_data
from hfssl.models.simcse.export import export_sentence_encoder
from hfssl.models.simcse.modeling_simcse import SimCSEForPreTraining, SimCSEOutput
from hfssl.models.simcse.pictures import draw_similarity_matrix
from hfssl.registry import TEXT, TEXT_FEATURES, MethodSpec, Paper, register_method

PAPER = Paper(
    title="SimCSE: Simple Contrastive Learning of Sentence Embeddings",
    url="https://arxiv.org/abs/2104.08821",
    bibtex=r"""@inproceedings{gao2021simcse,
  title     = {{SimCSE}: Simple Contrastive Learning of Sentence Embeddings},
  author    = {Gao, Tianyu and Yao, Xingcheng and Chen, Danqi},
  booktitle = {Proceedings of EMNLP},
  pages     = {6894--6910},
  year      = {2021}
}""",
)

SPEC = register_method(MethodSpec(
    name="simcse",
    config_class=SimCSEConfig,
    model_class=SimCSEForPreTraining,
    modality=TEXT,
    family="sentence-embeddings",
    paper=PAPER,
    display_name="SimCSE contrastive sentence embeddings",
    build_inputs=build_inputs,
    export=export_sentence_encoder,
    provides=(TEXT_FEATURES,),
    build_data=build_training_data,
    pictures=draw_similarity_matrix,
))

__all__ = ["SPEC", "SimCSEConfig", "SimCSEForPreTraining", "SimCSEOutput"]
