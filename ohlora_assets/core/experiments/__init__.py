"""Side-by-side experiments: LoRA rank (rank.py) and training with or without a retrieved concept (rag_concept.py)."""
