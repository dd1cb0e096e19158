"""Data, models, initialisation schemes and the training function, usable without Ray."""
