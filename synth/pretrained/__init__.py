"""Fixed, pretrained networks used by the losses and metrics (VGG-19 for the perceptual loss)."""
