"""Data: the CSV manifest, dataset preparation (NIH), MONAI preprocessing, augmentation and loaders."""
