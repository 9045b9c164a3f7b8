"""CPU-friendly feature towers for the `mini` preset, registered with the transformers Auto classes.

    import affectllm.towers
    cfg = AutoConfig.for_model("affect_prosody")   # or "affect_hog"
    tower = AutoModel.from_config(cfg)
"""
from transformers import AutoConfig, AutoModel

from .hog import HOGConfig, HOGVisionEncoder
from .prosody import ProsodyAudioEncoder, ProsodyConfig
from .xception import FERXceptionConfig, FERXceptionEncoder

for _cfg, _model in ((ProsodyConfig, ProsodyAudioEncoder), (HOGConfig, HOGVisionEncoder),
                     (FERXceptionConfig, FERXceptionEncoder)):
    try:
        AutoConfig.register(_cfg.model_type, _cfg)
    except ValueError:  # already registered (module reloaded)
        pass
    try:
        AutoModel.register(_cfg, _model)
    except ValueError:
        pass

__all__ = ["ProsodyConfig", "ProsodyAudioEncoder", "HOGConfig", "HOGVisionEncoder", "FERXceptionConfig",
           "FERXceptionEncoder"]
