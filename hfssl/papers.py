"""Method papers quoted in model cards (title, link, BibTeX)."""

PAPERS: dict[str, dict[str, str]] = {
    "simclr": {
        "paper_title": "A Simple Framework for Contrastive Learning of Visual Representations",
        "paper_url": "https://arxiv.org/abs/2002.05709",
        "bibtex": """@inproceedings{chen2020simclr,
  title     = {A Simple Framework for Contrastive Learning of Visual Representations},
  author    = {Chen, Ting and Kornblith, Simon and Norouzi, Mohammad and Hinton, Geoffrey},
  booktitle = {International Conference on Machine Learning (ICML)},
  year      = {2020}
}""",
    },
    "byol": {
        "paper_title": "Bootstrap Your Own Latent: A New Approach to Self-Supervised Learning",
        "paper_url": "https://arxiv.org/abs/2006.07733",
        "bibtex": """@inproceedings{grill2020byol,
  title     = {Bootstrap Your Own Latent: A New Approach to Self-Supervised Learning},
  author    = {Grill, Jean-Bastien and Strub, Florian and Altch{\\'e}, Florent and Tallec, Corentin and Richemond, Pierre H. and Buchatskaya, Elena and Doersch, Carl and Pires, Bernardo Avila and Guo, Zhaohan Daniel and Azar, Mohammad Gheshlaghi and Piot, Bilal and Kavukcuoglu, Koray and Munos, R{\\'e}mi and Valko, Michal},
  booktitle = {Advances in Neural Information Processing Systems (NeurIPS)},
  year      = {2020}
}""",
    },
    "mae": {
        "paper_title": "Masked Autoencoders Are Scalable Vision Learners",
        "paper_url": "https://arxiv.org/abs/2111.06377",
        "bibtex": """@inproceedings{he2022mae,
  title     = {Masked Autoencoders Are Scalable Vision Learners},
  author    = {He, Kaiming and Chen, Xinlei and Xie, Saining and Li, Yanghao and Doll{\\'a}r, Piotr and Girshick, Ross},
  booktitle = {IEEE/CVF Conference on Computer Vision and Pattern Recognition (CVPR)},
  year      = {2022}
}""",
    },
    "word2vec": {
        "paper_title": "Distributed Representations of Words and Phrases and their Compositionality",
        "paper_url": "https://arxiv.org/abs/1310.4546",
        "bibtex": """@inproceedings{mikolov2013word2vec,
  title     = {Distributed Representations of Words and Phrases and their Compositionality},
  author    = {Mikolov, Tomas and Sutskever, Ilya and Chen, Kai and Corrado, Greg and Dean, Jeffrey},
  booktitle = {Advances in Neural Information Processing Systems (NeurIPS)},
  year      = {2013}
}""",
    },
}
