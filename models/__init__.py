"""The face VAE, its training losses and the paper's evaluation metrics (torch only)."""
