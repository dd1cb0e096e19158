"""Search-space files (one per study) and the runner they share."""
