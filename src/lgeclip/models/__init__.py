"""lgeclip.models layer (see docs/ARCHITECTURE.md §9): towers, CLIP + CoCa decoder, losses, classifier, factory."""

from lgeclip.models.classifier import ImageClassifier
from lgeclip.models.clip import FORWARD_KEYS, LgeClip
from lgeclip.models.configs import ClassifierCfg, ClipModelCfg
from lgeclip.models.decoder import CaptionDecoder, shift_for_captioning
from lgeclip.models.factory import create_model, list_models, model_config
from lgeclip.models.losses import (
    CaptionLoss,
    ClassifierLoss,
    ClipLoss,
    CocaLoss,
    caption_ids_from_texts,
    clip_loss_from_logits,
    multi_positive_targets,
)
from lgeclip.models.text import TextTower, resolve_text_model
from lgeclip.models.vision import Projection, VisionTower, build_densenet_encoder
from lgeclip.models.vision_init import (
    LoadReport,
    VisionInitError,
    load_encoder_state,
    load_vision_init,
    segmentation_encoder_state,
    torchvision_to_monai_densenet,
)

__all__ = [
    "FORWARD_KEYS", "CaptionDecoder", "CaptionLoss", "ClassifierCfg", "ClassifierLoss", "ClipLoss", "ClipModelCfg",
    "CocaLoss", "ImageClassifier", "LgeClip", "LoadReport", "Projection", "TextTower", "VisionInitError",
    "VisionTower", "build_densenet_encoder", "caption_ids_from_texts", "clip_loss_from_logits", "create_model",
    "list_models", "load_encoder_state", "load_vision_init", "model_config", "multi_positive_targets",
    "resolve_text_model", "segmentation_encoder_state", "shift_for_captioning", "torchvision_to_monai_densenet",
]
