"""The model loop's numerical side: encoders, heads, training, calibration, thresholds, embeddings, bundles.

torch, torchvision and sentence-transformers are imported inside functions only, so importing these
modules stays cheap; what runs them is a django-q2 worker, the inference worker or a command.
"""
