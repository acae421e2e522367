"""CLIP zero-shot classification of image folders (the model, its embeddings and scores:
`difflab.models.clip.ClipScorer`; the tokenizer vocabulary: `difflab.models.clip_vocab`)."""
