"""Session fixtures for the CLIP tests: the converted real tokenizer and one tiny random CLIPModel folder.

Both are built once per session (converting the 49408-token vocabulary takes about a second; building and
saving a model a few more); tests must not modify them.
"""

import pytest


@pytest.fixture(scope="session")
def clip_tokenizer_dir(tmp_path_factory):
    from difflab.models.clip_vocab import write_clip_tokenizer

    return write_clip_tokenizer(tmp_path_factory.mktemp("clip_tokenizer"))


@pytest.fixture(scope="session")
def tiny_clip_dir(tmp_path_factory):
    """A tiny random CLIPModel folder (32x32 images, D=16) with OpenAI's tokenizer; logit scale 100."""
    from difflab.clip.tiny import save_tiny_clip

    return save_tiny_clip(tmp_path_factory.mktemp("tiny_clip"))


@pytest.fixture(scope="session")
def tiny_scorer(tiny_clip_dir):
    from difflab.models.clip import ClipScorer

    return ClipScorer.from_pretrained(tiny_clip_dir, batch_size=4)
