"""Prompt templates for textual-inversion training; `{}` is replaced by the (expanded) new token.

Objects are described as a thing in a photo; styles as the manner of a picture. Varied wording keeps the
learned vector from absorbing the caption's words (it has to explain what the captions do not).
"""

OBJECT = (
    "a photo of a {}", "a close-up photo of a {}", "a bright photo of a {}", "a dark photo of the {}",
    "a cropped photo of the {}", "a photo of the {}", "a good photo of the {}", "a photo of one {}",
    "a rendition of the {}", "a photo of the clean {}", "a photo of my {}", "a photo of the cool {}",
    "a photo of a small {}", "a photo of the large {}", "a blurry photo of the {}", "a picture of a {}",
)

STYLE = (
    "a painting in the style of {}", "a rendering in the style of {}", "a picture in the style of {}",
    "a cropped painting in the style of {}", "the painting in the style of {}", "art in the style of {}",
    "a clean painting in the style of {}", "a dark painting in the style of {}", "a bright picture, {} style",
    "a good painting in the style of {}", "a close-up painting in the style of {}", "an image in {} style",
    "a small painting in the style of {}", "a large painting in the style of {}",
    "a drawing in the style of {}",
    "a weird painting in the style of {}",
)

TEMPLATES = {"object": OBJECT, "style": STYLE}
