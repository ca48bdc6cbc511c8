from hfssl.models.simclr.configuration_simclr import SimCLRConfig
from hfssl.models.simclr.modeling_simclr import SimCLRForPreTraining, SimCLROutput

__all__ = ["SimCLRConfig", "SimCLRForPreTraining", "SimCLROutput"]
