"""`difflab ti ...` end to end through the real argument parser: train -> generate -> score -> compose,
A1111 export/import, and one-line errors with exit code 2."""

import json

from difflab.cli import main


def _run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_train_generate_score_compose(tmp_path, capsys, tiny_sd_dir, photos_dir, tiny_clip_dir):
    m = ["--model", tiny_sd_dir, "--device", "cpu"]
    code, out, _ = _run(capsys, "ti", "train", tmp_path / "ti", *m, "--images", photos_dir,
                        "--token", "<new1>", "--init-word", "cat", "--vectors", "2", "--steps", "2",
                        "--resolution", "64", "--grad-accum", "1", "--validate-every", "2",
                        "--num-validation", "1", "--validation-steps", "2")
    assert code == 0 and "learned_embeds.safetensors" in out
    embeds = tmp_path / "ti" / "learned_embeds.safetensors"
    assert (tmp_path / "ti" / "validation" / "step_000002.png").is_file()
    code, _, err = _run(capsys, "ti", "train", tmp_path / "ti", *m, "--images", photos_dir,
                        "--token", "<new1>", "--init-word", "cat", "--steps", "3", "--resolution", "64",
                        "--resume", "latest", "--vectors", "2", "--grad-accum", "1", "--validate-every", "0")
    assert code == 0, err
    assert json.loads((tmp_path / "ti" / "config.json").read_text())["steps"] == 3

    prompts = {"0": {"src_image": "cat", "token_name": "<new1>", "prompt": ["a photo of {}"],
                     "prompt_4_clip_eval": ["a photo of a cat"], "baseline": [[-100, -100]]}}
    (tmp_path / "p.json").write_text(json.dumps(prompts))
    code, out, _ = _run(capsys, "ti", "generate", tmp_path / "p.json", tmp_path / "gen", *m,
                        "--embeds", embeds, "--per-prompt", "5", "--steps", "2")
    assert code == 0 and "5 images" in out
    (tmp_path / "concepts" / "cat").mkdir(parents=True)
    (tmp_path / "concepts" / "cat" / "a.png").write_bytes((photos_dir / "chelsea.png").read_bytes())
    code, out, _ = _run(capsys, "ti", "score", tmp_path / "p.json", tmp_path / "gen", "--concepts",
                        tmp_path / "concepts", "--clip", tiny_clip_dir)  # falls back to concepts/<src_image>
    assert code == 0 and "PASS" in out and out.strip().endswith("passed 1/1")

    code, out, _ = _run(capsys, "ti", "compose", tmp_path / "comp", *m, "--embeds", embeds, "--prompt",
                        "a photo of {}", "--region", "<new1>:left", "--region", "a dog:right", "--steps", "2",
                        "--num", "2", "--with-paths")
    assert code == 0
    names = sorted(p.name for p in (tmp_path / "comp").iterdir())
    assert names == ["compose_0.png", "compose_1.png", "path0_0.png", "path0_1.png", "path1_0.png",
                     "path1_1.png", "regions.json"]
    regions = json.loads((tmp_path / "comp" / "regions.json").read_text())
    assert regions["regions"][1]["prompt"] == "a photo of a dog"

    code, out, _ = _run(capsys, "ti", "export-a1111", embeds, tmp_path / "cat.pt")
    assert code == 0
    code, out, _ = _run(capsys, "ti", "import-a1111", tmp_path / "cat.pt", tmp_path / "back.safetensors")
    assert code == 0 and (tmp_path / "back.safetensors").is_file()


def test_errors_are_one_line_with_exit_code_2(tmp_path, capsys, tiny_sd_dir, photos_dir):
    empty = tmp_path / "empty"
    empty.mkdir()
    code, _, err = _run(capsys, "ti", "train", tmp_path / "o", "--model", tiny_sd_dir, "--images", empty,
                        "--token", "<x>", "--init-word", "cat", "--device", "cpu")
    assert code == 2 and err.startswith("difflab: error:") and "no images" in err and err.count("\n") == 1
    code, _, err = _run(capsys, "ti", "compose", tmp_path / "c", "--model", tiny_sd_dir, "--device", "cpu",
                        "--prompt", "x", "--region", "nocolon")
    assert code == 2 and "expected TEXT:MASK" in err
    code, _, err = _run(capsys, "ti", "train", tmp_path / "o", "--model", tmp_path / "nothing", "--images",
                        photos_dir, "--token", "<x>", "--init-word", "cat", "--device", "cpu")
    assert code == 2 and "model not found" in err
