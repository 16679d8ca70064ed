"""Model: networks, local pretrained weights, checkpoints and Grad-CAM."""
