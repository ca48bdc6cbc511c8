from hfssl.models.mae.configuration_mae import MAEConfig
from hfssl.models.mae.modeling_mae import MAEForPreTraining, MAEOutput

__all__ = ["MAEConfig", "MAEForPreTraining", "MAEOutput"]
