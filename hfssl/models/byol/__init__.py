from hfssl.models.byol.configuration_byol import BYOLConfig
from hfssl.models.byol.modeling_byol import BYOLForPreTraining, BYOLOutput

__all__ = ["BYOLConfig", "BYOLForPreTraining", "BYOLOutput"]
