"""The autoencoder family (issue 22): five methods in one folder, sharing one modeling file, one input builder
and one picture hook. Each registers its own spec (recipe name, config and model classes, paper):

| method | model | regulariser (logged apart) |
|---|---|---|
| ``autoencoder`` | :class:`AutoencoderForPreTraining` | none |
| ``denoising_autoencoder`` | :class:`DenoisingAutoencoderForPreTraining` | none; input corrupted (``model.noise_*``) |
| ``sparse_autoencoder`` | :class:`SparseAutoencoderForPreTraining` | ``sparsity_loss`` (L1 or KL target activation) |
| ``vae`` | :class:`VAEForPreTraining` | ``kl_loss`` (weight: schedule ``kl_weight``) |
| ``contractive_autoencoder`` | :class:`ContractiveAutoencoderForPreTraining` | ``contractive_loss`` |

All export the backbone (``export_image_encoder``) and serve image features, per-layer features and
``reconstruction`` (the held-out reconstruction error and the card's triplets).
"""

from hfssl.export import export_image_encoder
from hfssl.models.autoencoder.configuration_autoencoder import (AutoencoderConfig, ContractiveAutoencoderConfig,
                                                                DenoisingAutoencoderConfig, SparseAutoencoderConfig,
                                                                VAEConfig)
from hfssl.models.autoencoder.inputs import (AutoencoderInputs, autoencoder_inputs, build_data, check_recipe,
                                             draw_vae_pictures, triplets_hook)
from hfssl.models.autoencoder.modeling_autoencoder import (AutoencoderForPreTraining, AutoencoderOutput,
                                                           ContractiveAutoencoderForPreTraining,
                                                           DenoisingAutoencoderForPreTraining,
                                                           SparseAutoencoderForPreTraining, VAEForPreTraining)
from hfssl.registry import IMAGE, IMAGE_FEATURES, LAYER_FEATURES, RECONSTRUCTION, MethodSpec, Paper, register_method

PROVIDES = (IMAGE_FEATURES, LAYER_FEATURES, RECONSTRUCTION)

PAPERS = {
    "autoencoder": Paper(
        title="Reducing the Dimensionality of Data with Neural Networks",
        url="https://doi.org/10.1126/science.1127647",
        bibtex=r"""@article{hinton2006reducing,
  title   = {Reducing the Dimensionality of Data with Neural Networks},
  author  = {Hinton, Geoffrey E. and Salakhutdinov, Ruslan R.},
  journal = {Science},
  volume  = {313},
  number  = {5786},
  pages   = {504--507},
  year    = {2006}
}"""),
    "denoising_autoencoder": Paper(
        title="Extracting and Composing Robust Features with Denoising Autoencoders",
        url="https://doi.org/10.1145/1390156.1390294",
        bibtex=r"""@inproceedings{vincent2008extracting,
  title     = {Extracting and Composing Robust Features with Denoising Autoencoders},
  author    = {Vincent, Pascal and Larochelle, Hugo and Bengio, Yoshua and Manzagol, Pierre-Antoine},
  booktitle = {International Conference on Machine Learning (ICML)},
  pages     = {1096--1103},
  year      = {2008}
}"""),
    "sparse_autoencoder": Paper(
        title="Sparse Autoencoder (CS294A lecture notes)",
        url="https://web.stanford.edu/class/cs294a/sparseAutoencoder.pdf",
        bibtex=r"""@misc{ng2011sparse,
  title        = {Sparse Autoencoder},
  author       = {Ng, Andrew},
  howpublished = {CS294A Lecture Notes, Stanford University},
  year         = {2011}
}"""),
    "vae": Paper(
        title="Auto-Encoding Variational Bayes",
        url="https://arxiv.org/abs/1312.6114",
        bibtex=r"""@inproceedings{kingma2014vae,
  title     = {Auto-Encoding Variational Bayes},
  author    = {Kingma, Diederik P. and Welling, Max},
  booktitle = {International Conference on Learning Representations (ICLR)},
  year      = {2014}
}"""),
    "contractive_autoencoder": Paper(
        title="Contractive Auto-Encoders: Explicit Invariance During Feature Extraction",
        url="https://icml.cc/2011/papers/455_icmlpaper.pdf",
        bibtex=r"""@inproceedings{rifai2011contractive,
  title     = {Contractive Auto-Encoders: Explicit Invariance During Feature Extraction},
  author    = {Rifai, Salah and Vincent, Pascal and Muller, Xavier and Glorot, Xavier and Bengio, Yoshua},
  booktitle = {International Conference on Machine Learning (ICML)},
  pages     = {833--840},
  year      = {2011}
}"""),
}


def _spec(name: str, config_class, model_class, display_name: str, pictures) -> MethodSpec:
    return register_method(MethodSpec(
        name=name, config_class=config_class, model_class=model_class, modality=IMAGE, family="reconstruction",
        paper=PAPERS[name], display_name=display_name, build_inputs=autoencoder_inputs, build_data=build_data,
        export=export_image_encoder, provides=PROVIDES, pictures=pictures, check_recipe=check_recipe))


AUTOENCODER_SPEC = _spec("autoencoder", AutoencoderConfig, AutoencoderForPreTraining, "Autoencoder",
                         triplets_hook(lambda config: "none"))
DENOISING_SPEC = _spec("denoising_autoencoder", DenoisingAutoencoderConfig, DenoisingAutoencoderForPreTraining,
                       "Denoising autoencoder", triplets_hook(lambda config: config.noise.describe()))
SPARSE_SPEC = _spec("sparse_autoencoder", SparseAutoencoderConfig, SparseAutoencoderForPreTraining,
                    "Sparse autoencoder", triplets_hook(lambda config: "none"))
VAE_SPEC = _spec("vae", VAEConfig, VAEForPreTraining, "VAE", draw_vae_pictures)
CONTRACTIVE_SPEC = _spec("contractive_autoencoder", ContractiveAutoencoderConfig, ContractiveAutoencoderForPreTraining,
                         "Contractive autoencoder", triplets_hook(lambda config: "none"))

__all__ = ["AutoencoderConfig", "DenoisingAutoencoderConfig", "SparseAutoencoderConfig", "VAEConfig",
           "ContractiveAutoencoderConfig", "AutoencoderForPreTraining", "DenoisingAutoencoderForPreTraining",
           "SparseAutoencoderForPreTraining", "VAEForPreTraining", "ContractiveAutoencoderForPreTraining",
           "AutoencoderOutput", "AutoencoderInputs", "AUTOENCODER_SPEC", "DENOISING_SPEC", "SPARSE_SPEC", "VAE_SPEC",
           "CONTRACTIVE_SPEC"]
