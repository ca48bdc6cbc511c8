"""GPT-style causal language modelling (next-token prediction; Radford et al. 2019): the method's spec,
registered when hfssl discovers its methods."""

from hfssl.models.clm.configuration_clm import GPT2_PRESETS, CLMConfig
from hfssl.models.clm.data import build_inputs, build_training_data
from hfssl.models.clm.export import export_causal_lm
from hfssl.models.clm.modeling_clm import CLMForPreTraining, CLMOutput
from hfssl.models.clm.pictures import draw_training_curve
from hfssl.registry import CAUSAL_LM, TEXT, TEXT_FEATURES, MethodSpec, Paper, register_method

PAPER = Paper(
    title="Language Models are Unsupervised Multitask Learners",
    url="https://cdn.openai.com/better-language-models/language_models_are_unsupervised_multitask_learners.pdf",
    bibtex=r"""@techreport{radford2019language,
  title       = {Language Models are Unsupervised Multitask Learners},
  author      = {Radford, Alec and Wu, Jeffrey and Child, Rewon and Luan, David and Amodei, Dario and Sutskever, Ilya},
  institution = {OpenAI},
  year        = {2019}
}""",
)

SPEC = register_method(MethodSpec(
    name="clm",
    config_class=CLMConfig,
    model_class=CLMForPreTraining,
    modality=TEXT,
    family="causal-language-modeling",
    paper=PAPER,
    display_name="GPT-style causal language modelling",
    build_inputs=build_inputs,
    export=export_causal_lm,
    provides=(TEXT_FEATURES, CAUSAL_LM),
    build_data=build_training_data,
    pictures=draw_training_curve,
))

__all__ = ["GPT2_PRESETS", "CLMConfig", "CLMForPreTraining", "CLMOutput", "SPEC"]
