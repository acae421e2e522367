"""`difflab report OUT_DIR`: run every section, time it, write OUT_DIR/index.html and report.json.

The folder is built aside (staged_output_dir) and moved into place only when the page is complete and its
links check out, so a failed run never leaves a half-written report or replaces a good one.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import time
from dataclasses import asdict, fields
from pathlib import Path

import torch
from tqdm import tqdm

from difflab.io import atomic_path
from difflab.report.config import ReportConfig
from difflab.report.context import Context
from difflab.report.html import check_links, esc, page, paragraph, table
from difflab.runtime import finish_machine, machine


def report_command(out, cfg: ReportConfig, model_path=None, classifiers=None, data_root=None, clip=None,
                   zeroshot=None, labels=None, ti=None, student_path="student") -> str:
    """The `difflab report` command line that reproduces a run with these settings."""
    args = ["report", str(out)]
    default = ReportConfig()
    for f in fields(ReportConfig):
        v = getattr(cfg, f.name)
        if v == getattr(default, f.name):
            continue
        if f.name == "bf16":
            args.append("--fp32")
        elif isinstance(v, tuple):
            args += [f"--{f.name.replace('_', '-')}", ",".join(f"{x:g}" for x in v)]
        else:
            args += [f"--{f.name.replace('_', '-')}", f"{v:g}" if isinstance(v, float) else str(v)]
    for flag, v in (("--model", model_path), ("--mnistm-classifier", (classifiers or {}).get("mnistm")),
                    ("--svhn-classifier", (classifiers or {}).get("svhn")), ("--data-root", data_root),
                    ("--clip", clip), ("--zeroshot", zeroshot), ("--labels", labels), ("--ti", ti),
                    ("--student", None if student_path in (None, "student") else student_path)):
        if v is not None:
            args += [flag, str(v)]
    return Context.command(*args, "--overwrite")


def _file_id(path: Path) -> str:
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
    return f"{path} (sha256 {digest}...)"


def _check_inputs(cfg: ReportConfig, model_path, classifiers, clip, zeroshot, labels, ti, student_path):
    """Every input is checked before the minutes of work: model, classifiers, CLIP, TI folder, timesteps.
    Returns (model, schedule, meta, classifiers {domain: path | None}, zero-shot inputs | None)."""
    from difflab.digits.reverse import parse_timesteps
    from difflab.digits.sweep import parse_scales
    from difflab.models.digits import default_classifier_path, load_classifier, load_digit_model
    from difflab.report import extras, fewstep

    cfg.check()
    parse_scales(list(cfg.sweep_scales), "--sweep-scales")
    model, schedule, meta = load_digit_model(model_path)
    parse_timesteps(list(cfg.timesteps), schedule.num_train_timesteps)
    classifiers = {m: (classifiers or {}).get(m) for m in ("mnistm", "svhn")}
    for m, p in classifiers.items():
        load_classifier(p or default_classifier_path(m))
    zs = None
    if clip is not None or zeroshot is not None or labels is not None:
        scorer = extras.prepare_zeroshot(clip, zeroshot, labels, cfg.device)
        zs = {"clip": clip, "images": zeroshot, "labels": labels, "scorer": scorer}
    if ti is not None:
        extras.ti_layout(ti)
    fewstep.load_student(student_path)  # a missing student is a note in its section; a wrong file fails here
    return model, schedule, meta, classifiers, zs


def _plan(zs, ti) -> list[tuple]:
    """(key, heading, section function) in page order; CLIP and TI sections only when given inputs."""
    from difflab.report import ddim as ddim_sections
    from difflab.report import digits, extras, fewstep, personalize, training

    plan = [("digits", "Generated digits and their accuracy", digits.grids_and_table),
            ("reverse", "The reverse process", digits.reverse),
            ("sweep", "Guidance sweep: correctness vs diversity", digits.sweep),
            ("training", "Training: the model's record and time to quality", training.training),
            ("fewstep", "Few-step sampling: quality vs network evaluations", fewstep.fewstep),
            ("personalize", "Personalizing the digit model: new styles and a symbol", personalize.personalize),
            ("eta", "DDIM: the eta grid", ddim_sections.eta_grid),
            ("interpolation", "DDIM: slerp vs lerp", ddim_sections.interpolation),
            ("inversion", "DDIM: inversion round trip", ddim_sections.inversion)]
    if zs:
        plan.append(("zeroshot", "CLIP zero-shot", extras.zeroshot))
    if ti is not None:
        plan.append(("ti", "Textual inversion", extras.textual_inversion))
    return plan


def _run_sections(plan, ctx: Context, progress: bool) -> tuple[list, dict, dict]:
    """Run each section; return ([(key, heading, html)], wall seconds {key: s}, CPU seconds {key: s})."""
    sections, seconds, cpu = [], {}, {}
    bar = tqdm(plan, desc="report", unit="section", disable=not progress, dynamic_ncols=True)
    for key, heading, fn in bar:
        bar.set_postfix_str(key)
        t0, c0 = time.perf_counter(), time.process_time()
        inner = fn(ctx)
        seconds[key], cpu[key] = time.perf_counter() - t0, time.process_time() - c0
        sections.append((key, heading, inner + paragraph(f"This section took {seconds[key]:.1f} s.", "note")))
    bar.close()
    return sections, seconds, cpu


def run_report(out_dir, cfg: ReportConfig | None = None, model_path=None, classifiers: dict | None = None,
               data_root=None, clip=None, zeroshot=None, labels=None, ti=None, overwrite: bool = False,
               progress: bool = True, student_path="student") -> dict:
    """Write the report; return report.json's content ({'sections': {name: seconds}, 'numbers', ...})."""
    from difflab.io import staged_output_dir
    from difflab.models.digits import DEFAULT_MODEL
    from difflab.report import fewstep

    t_start, c_start = time.perf_counter(), time.process_time()
    cfg = cfg or ReportConfig()
    model, schedule, meta, classifiers, zs = _check_inputs(cfg, model_path, classifiers, clip, zeroshot, labels,
                                                           ti, student_path)
    plan = _plan(zs, ti)
    info = {"machine": machine(), "device": _device_words(cfg.device),
            "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
            "model": _file_id(Path(model_path or DEFAULT_MODEL)), "model_meta": meta, "config": asdict(cfg),
            "command": report_command(out_dir, cfg, model_path, classifiers, data_root, clip, zeroshot, labels, ti,
                                      student_path)}
    student = fewstep.student_file(student_path)
    info["student"] = _file_id(student) if student is not None and student.is_file() else None
    with staged_output_dir(out_dir, overwrite) as stage:
        ctx = Context(stage, str(out_dir), cfg, None if model_path is None else str(model_path), model, schedule,
                      classifiers, None if data_root is None else str(data_root), zs,
                      None if ti is None else str(ti), progress, info["command"],
                      None if student_path is None else str(student_path))
        sections, seconds, cpu = _run_sections(plan, ctx, progress)
        # CPU seconds beside wall seconds: on a shared machine they show how much the run was slowed
        info.update(sections=seconds, sections_cpu_s=cpu, total_s=time.perf_counter() - t_start,
                    total_cpu_s=time.process_time() - c_start, numbers=ctx.numbers)
        finish_machine(info["machine"])
        sections.append(("run", "Run time and machine", _run_section(info)))
        with atomic_path(stage / "report.json") as tmp:
            tmp.write_text(json.dumps(info, indent=2, default=_jsonable))
        with atomic_path(stage / "index.html") as tmp:
            tmp.write_text(page("difflab experiment report", _intro(info), sections), encoding="utf-8")
        broken = check_links(stage / "index.html")
        if broken:  # a bug in a section, never the user's input: do not publish a broken page
            raise RuntimeError(f"report has broken links: {broken[:3]}")
    return info


def _device_words(spec: str) -> str:
    """Where the networks ran, in words: 'cpu' or 'cuda:0 (NVIDIA H200)'."""
    from difflab.device import card_name, resolve_device

    card = card_name(spec)
    return f"{resolve_device(spec)} ({card})" if card else str(resolve_device(spec))


def _jsonable(o):
    if isinstance(o, (Path,)):
        return str(o)
    if isinstance(o, torch.Tensor):
        return o.tolist()
    return repr(o)


def _intro(info: dict) -> str:
    m = info["machine"]
    return (paragraph(f"Generated {info['date']} in {info['total_s']:.0f} s on {m['cores']} x {m['cpu']}, "
                      f"networks on {info['device']}. "
                      f"Every figure says what it shows and the exact command that regenerates it; all "
                      f"numbers are also in report.json.")
            + f"<p>This page: <code>{esc(info['command'])}</code></p>")


def _run_section(info: dict) -> str:
    m = info["machine"]
    rows = [[k, f"{s:.1f}", f"{info['sections_cpu_s'][k]:.1f}"] for k, s in info["sections"].items()]
    rows.append(["total (with loading and checks)", f"{info['total_s']:.1f}", f"{info['total_cpu_s']:.1f}"])
    meta = [["model", info["model"]], ["student (few-step section)", info.get("student") or "none"],
            ["CPU", f"{m['cpu']} ({m['cores']} cores, torch threads {m['torch_threads']})"],
            ["networks on", info["device"]],
            ["software", f"Python {m['python']}, torch {m['torch']}, {m['platform']}"],
            ["load average (1, 5, 15 min)", f"start {m['load_average_at_start']}, end {m['load_average_at_end']}"],
            ["date", info["date"]]]
    return (table(["section", "wall s", "CPU s"], rows,
                  f"Wall and CPU time (all threads of this process) per section. With {m['torch_threads']} torch "
                  "thread(s), CPU time well above wall time means the threads ran in parallel; wall time well "
                  "above CPU / threads means other work shared the machine (see the load average).")
            + table(None, meta, cls="meta"))
