"""Model: the architecture registry and its families (DenseNet, ResNet), pretrained weights, checkpoints, Grad-CAM."""
