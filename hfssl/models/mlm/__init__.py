"""BERT-style masked language modelling (Devlin et al. 2019), optionally with next-sentence
prediction: the method's spec, registered when hfssl discovers its methods."""

from hfssl.models.mlm.configuration_mlm import BERT_PRESETS, MLMConfig
from hfssl.models.mlm.data import build_inputs, build_training_data
from hfssl.models.mlm.export import export_masked_lm
from hfssl.models.mlm.modeling_mlm import MLMForPreTraining, MLMOutput
from hfssl.models.mlm.pictures import draw_training_curve
from hfssl.registry import MASKED_LM, TEXT, TEXT_FEATURES, MethodSpec, Paper, register_method

PAPER = Paper(
    title="BERT: Pre-training of Deep Bidirectional Transformers for Language Understanding",
    url="https://arxiv.org/abs/1810.04805",
    bibtex=r"""@inproceedings{devlin2019bert,
  title     = {{BERT}: Pre-training of Deep Bidirectional Transformers for Language Understanding},
  author    = {Devlin, Jacob and Chang, Ming-Wei and Lee, Kenton and Toutanova, Kristina},
  booktitle = {Proceedings of NAACL-HLT},
  pages     = {4171--4186},
  year      = {2019}
}""",
)

SPEC = register_method(MethodSpec(
    name="mlm",
    config_class=MLMConfig,
    model_class=MLMForPreTraining,
    modality=TEXT,
    family="masked-language-modeling",
    paper=PAPER,
    display_name="BERT masked language modelling",
    build_inputs=build_inputs,
    export=export_masked_lm,
    provides=(TEXT_FEATURES, MASKED_LM),
    build_data=build_training_data,
    pictures=draw_training_curve,
))

__all__ = ["BERT_PRESETS", "MLMConfig", "MLMForPreTraining", "MLMOutput", "SPEC"]
