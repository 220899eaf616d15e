#!/usr/bin/env python
"""Rebuild the chapters' committed outputs from a run on the full TrashNet, writing them into the notebooks.

    RECYCLENET_DATA=path/to/trashnet RECYCLENET_MODEL=runs/recyclenet/model.pth python .ci/outputs.py [CHAPTER ...]

`RECYCLENET_DATA` is TrashNet (a folder or `dataset-resized.zip`), `RECYCLENET_MODEL` the `model.pth` of README command
1 on it: the chapters draw their figures (sample grids, class balance, augmentations, curves, attention maps, confusion
matrices, most-confused photos, shifted examples) from those two, and their tests from the bundled sample. Each chapter
runs top to bottom, `slow` cells included (`gpu` cells are skipped), as nbdev_test runs it; its outputs are written in
place and `nbdev_clean` strips the metadata, never the outputs. CI runs the same chapters on the sample and writes nothing.
"""
import argparse, os, re, subprocess, sys, time
from pathlib import Path
from execnb.nbio import read_nb, write_nb
from execnb.shell import CaptureShell

root = Path(__file__).resolve().parent.parent
SKIP = ('gpu',)                                       # directives of cells that need hardware this machine may lack
MAX_MB = 15                                           # the whole nbs/ folder, outputs included

def _skip(cell):
    src = cell.source.lstrip()
    return cell.cell_type != 'code' or 'nbdev_export(' in src or any(f'#| {f}' in src.splitlines()[0:3] for f in SKIP)

BAR = re.compile(r'\|[█-]+\||^Epoch \d+/\d+ :$')         # a fastprogress bar drawn as text, or its blanked line
COUNT = re.compile(r'^(.*): \d+/\d+ \(\d+ s\)$')          # one step of recyclenet's own progress lines

def tidy(text: str) -> str:
    "Printed `text` as a terminal would leave it: each `\\r` overwrites its line, progress bars and steps but the last go."
    lines = [l.rstrip('\r').split('\r')[-1].rstrip() for l in text.split('\n')]
    lines = [l for l in lines if l and not BAR.search(l)]
    last = lambda i: i + 1 == len(lines) or not (m := COUNT.match(lines[i])) or COUNT.match(lines[i + 1]) is None \
        or COUNT.match(lines[i + 1])[1] != m[1]
    return ''.join(l + '\n' for i, l in enumerate(lines) if last(i))

def tidy_outputs(nb):
    "Tidy every printed output of `nb`, dropping those left empty."
    for c in nb.cells:
        if c.cell_type != 'code': continue
        for o in c.outputs:
            if o.get('output_type') == 'stream': o['text'] = tidy(''.join(o['text']))
        c.outputs = [o for o in c.outputs if o.get('output_type') != 'stream' or o['text']]

PHOTO_KB, LONG_SIDE, QUALITY = 200, 1400, 82           # figures of photos above PHOTO_KB become JPEGs this size

def shrink_images(nb):
    "PNG figures over `PHOTO_KB` (grids of photos, mostly) as JPEGs at most `LONG_SIDE` px: a tenth of the bytes."
    import base64, io
    from PIL import Image
    for c in nb.cells:
        for o in c.get('outputs', []):
            png = o.get('data', {}).get('image/png')
            if not png or len(png) * 3 / 4 < PHOTO_KB * 1024: continue
            im = Image.open(io.BytesIO(base64.b64decode(png))).convert('RGB')
            im.thumbnail((LONG_SIDE, LONG_SIDE), Image.LANCZOS)
            buf = io.BytesIO(); im.save(buf, 'JPEG', quality=QUALITY, optimize=True)
            del o['data']['image/png']; o['data']['image/jpeg'] = base64.b64encode(buf.getvalue()).decode()

def rebuild(nb_path: Path):
    "Execute the notebook at `nb_path` from its folder and write it back with its new outputs."
    nb, cwd, t = read_nb(nb_path), os.getcwd(), time.time()
    for c in nb.cells:
        if c.cell_type == 'code': c.outputs, c.execution_count = [], None
    os.chdir(nb_path.parent)
    try: CaptureShell(path=nb_path.parent).run_all(nb, exc_stop=True, preproc=_skip)
    finally: os.chdir(cwd)
    tidy_outputs(nb); shrink_images(nb); write_nb(nb, nb_path)
    print(f'{nb_path.relative_to(root)}: {time.time() - t:.0f} s', flush=True)

def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('chapters', nargs='*', help='notebooks to rebuild (default: every chapter, nbs/[0-9]*.ipynb)')
    a = p.parse_args()
    missing = [v for v in ('RECYCLENET_DATA', 'RECYCLENET_MODEL') if not os.environ.get(v)]
    if missing: sys.exit(f"outputs.py: set {' and '.join(missing)}: the full TrashNet and README command 1's model.pth on it.")
    os.environ['RECYCLENET_MODEL'] = str(Path(os.environ['RECYCLENET_MODEL']).resolve())
    nbs = [Path(c).resolve() for c in a.chapters] or sorted((root/'nbs').glob('[0-9]*.ipynb'))
    for nb in nbs: rebuild(nb)
    for nb in nbs: subprocess.run(['nbdev_clean', '--fname', str(nb)], check=True)
    tracked = subprocess.run(['git', 'ls-files', 'nbs'], cwd=root, capture_output=True, text=True).stdout.split()
    mb = sum((root/f).stat().st_size for f in tracked if (root/f).is_file())/2**20   # (what the repository holds)
    print(f'nbs/ is {mb:.1f} MB' + (f': over {MAX_MB} MB, shrink the figures' if mb > MAX_MB else ''))

if __name__ == '__main__': main()
