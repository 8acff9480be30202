"""Neutral network building blocks: classification backbones (a registry; timm and torchvision names), their
output layers (heads), and the input adapters that both the hardened lock and the attacks train."""
