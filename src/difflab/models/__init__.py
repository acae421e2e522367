"""Networks and every way difflab loads one from a file.

Architectures:
    unet.py        ConditionalUNet, the digit job's eps network (28x28, digit/domain/guidance inputs)
    classifier.py  DigitClassifier, the per-domain evaluation classifier
Loading (heavy libraries - diffusers, transformers - are imported inside the functions that need them):
    state.py       load_state_strict (the one strict state-dict loader), read_state_dict (user weights)
    digits.py      digit UNet and classifier files: save/load_digit_model, load_classifier, shipped paths
    loaders.py     EpsModel, `eps = model(x_t, t)`: load_digits, load_user_unet, load_diffusers_unet
    clip.py        ClipScorer: a transformers CLIP folder, offline, with embeddings and scores
    clip_vocab.py  OpenAI's CLIP BPE vocabulary as CLIPTokenizer files (write_clip_tokenizer)
    sd.py          load_sd: Stable Diffusion v1 from a diffusers folder or a single-file checkpoint
The noise schedule a model was trained with travels as `NoiseSchedule.to_dict()` (difflab.diffusion.schedule).
"""
