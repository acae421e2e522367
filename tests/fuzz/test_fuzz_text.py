"""Fuzz the text readers: each input either loads into a well-formed result or raises DifflabError.

Targets: the digit-data CSV (+ its PNG folder), id2label JSON, TI prompt JSON, CLIP template files.
"""

import csv
import io
import json

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from difflab.clip.dataset import read_id2label
from difflab.clip.prompts import load_templates
from difflab.data.readers import read_csv_split
from difflab.personalize.prompts import load_prompts

from .mutate import file_bytes, json_values, loads_or_refuses, mutated

CSV = b"image_name,label\na.png,3\nb.png,7\n"
ID2LABEL = json.dumps({"0": "apple", "1": "aquarium_fish", "2": "baby"}).encode()
PROMPTS = json.dumps({"0": {"src_image": "dog", "token_name": "<new1>", "prompt": ["a photo of {}"],
                            "prompt_4_clip_eval": ["a photo of a dog"], "baseline": [[79, 34]]}}).encode()


def _json_bytes(value) -> bytes:
    return json.dumps(value).encode("utf-8", "surrogatepass")  # lone surrogates: invalid UTF-8 on purpose


def _csv_rows():
    names = st.sampled_from(["a.png", "b.png", "missing.png", "", " a.png ", "../a.png", "a.png\x00"])
    labels = st.sampled_from(["0", "9", "10", "-1", "x", "", "3.0", "٣"]) | st.text(max_size=4)
    row = st.lists(names | labels, max_size=3)
    header = st.sampled_from([["image_name", "label"], ["label", "image_name"], []])
    return st.tuples(header, st.lists(row, max_size=5))


def _csv_text(header, rows) -> bytes:
    buf = io.StringIO()
    csv.writer(buf).writerows([header, *rows])
    return buf.getvalue().encode("utf-8", "surrogatepass")


@pytest.mark.filterwarnings("ignore:.*resized")
@given(st.one_of(file_bytes(CSV), _csv_rows().map(lambda hr: _csv_text(*hr))))
def test_digit_csv(workdir, raw):
    d = workdir / "mnistm"
    if not (d / "data" / "a.png").is_file():
        (d / "data").mkdir(parents=True)
        Image.fromarray(np.full((28, 28, 3), 9, np.uint8)).save(d / "data" / "a.png")
        Image.fromarray(np.zeros((5, 3), np.uint8)).save(d / "data" / "b.png")  # gray, not 28x28: resized
    (d / "train.csv").write_bytes(raw)
    result = loads_or_refuses(read_csv_split, d, "train")
    if result is None:
        return
    images, labels = result
    assert images.dtype == np.uint8 and images.shape[1:] == (28, 28, 3) and len(images) == len(labels) >= 1
    assert labels.min() >= 0 and labels.max() <= 9


def _id2label_values():
    names = st.sampled_from(["apple", "Apple", " apple ", "", "cat"]) | st.text(max_size=6) | json_values
    ids = st.sampled_from(["0", "00", "7", "07", "-1", "²", "1_0", " 3"]) | st.text(max_size=4)
    return st.dictionaries(ids, names, max_size=5) | st.lists(names, max_size=5) | json_values


@given(st.one_of(file_bytes(ID2LABEL), _id2label_values().map(_json_bytes)))
def test_id2label(workdir, raw):
    path = workdir / "id2label.json"
    path.write_bytes(raw)
    result = loads_or_refuses(read_id2label, path)
    if result is None:
        return
    mapping = result
    assert mapping and all(isinstance(k, str) and isinstance(v, str) and v for k, v in mapping.items())
    assert len(set(mapping.values())) == len(mapping)


def _prompt_entries():
    strings = st.lists(st.text(max_size=8), max_size=3) | json_values
    entry = st.fixed_dictionaries({}, optional={
        "src_image": st.text(max_size=6) | json_values, "token_name": st.text(max_size=6) | json_values,
        "prompt": strings, "prompt_4_clip_eval": strings,
        "baseline": st.lists(st.lists(st.floats() | st.integers() | st.text(max_size=2), max_size=3), max_size=3)})
    keys = st.sampled_from(["0", "..", "a/b", " ", "x"]) | st.text(max_size=4)
    return st.dictionaries(keys, entry | json_values, max_size=3) | json_values


@given(st.one_of(file_bytes(PROMPTS), _prompt_entries().map(_json_bytes)))
def test_prompt_file(workdir, raw):
    path = workdir / "prompts.json"
    path.write_bytes(raw)
    result = loads_or_refuses(load_prompts, path)
    if result is None:
        return
    concepts = result
    for c in concepts:
        assert len(c.prompts) == len(c.eval_texts) == len(c.baseline) >= 1
        assert all(isinstance(a, float) and isinstance(b, float) for a, b in c.baseline)


@given(mutated(b"a photo of a {}.\n# comment\n\nart of the {}\n"))
def test_template_file(workdir, raw):
    path = workdir / "templates.txt"
    path.write_bytes(raw)
    result = loads_or_refuses(load_templates, str(path))
    if result is None:
        return
    templates = result
    assert templates and all(t.count("{}") == 1 for t in templates)
