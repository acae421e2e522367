"""The experiment report: `difflab report OUT_DIR` runs the digit, DDIM and (optionally) CLIP and
textual-inversion jobs and writes one self-contained HTML page, OUT_DIR/index.html, with every figure
beside it (relative links only), each captioned with what it shows and the command that regenerates it.

Modules:
    config.py    ReportConfig: the settings of every section (small defaults: < 5 min on 2 cores)
    context.py   Context: what every section reads (settings, model) and writes (files, numbers)
    run.py       runs the sections in a staged output folder, times them, writes report.json + index.html
    digits.py    digits grids, accuracy/Fréchet table, reverse process, guidance sweep
    ddim.py      eta grid, slerp vs lerp with noise norms, inversion round trip (on the digit model)
    extras.py    CLIP zero-shot and textual-inversion sections (only when their inputs are given)
    html.py      HTML building blocks (escaped), and the relative-link checker
    cli.py       `difflab report` (`digits reverse`/`sweep` are registered by digits/cli.py)
"""
