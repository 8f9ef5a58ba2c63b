"""Process-wide settings for torch work."""

import os


def limit_torch_threads() -> None:
    """Cap torch's CPU threads at OHLORA_TORCH_THREADS (default 2, this project's CI machine).

    More threads than free cores makes training far slower, not faster, on a shared CPU."""
    import torch

    torch.set_num_threads(int(os.environ.get("OHLORA_TORCH_THREADS", "2")))
