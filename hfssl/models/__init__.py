"""One folder per method: ``configuration_<method>.py`` and ``modeling_<method>.py``."""
