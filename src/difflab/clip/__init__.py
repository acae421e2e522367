"""CLIP: offline model loading, embeddings and scores, zero-shot classification of image folders."""
