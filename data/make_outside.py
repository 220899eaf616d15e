"""Rebuild one source's rows of `data/outside/manifest.csv` (and, for a source that may be shipped, its photos) from
a checkout of the source repository at the pinned commit and a full TrashNet copy:

    git clone https://github.com/kteppris/RealWaste
    git -C RealWaste checkout eeb686db5ce16f72920179a0325421149c8b9339
    python data/make_outside.py realwaste RealWaste PATH/TO/trashnet
    git clone https://github.com/Harsh9524/AquaTrash
    git -C AquaTrash checkout 0c50d4c4f980c7e3f0d2c2170da7a2fbcb7af27e
    python data/make_outside.py aquatrash AquaTrash PATH/TO/trashnet

- `realwaste`: the source's own `our_test_data/` (phone photos of household waste on a tiled floor, CC0 1.0), shipped.
  Its class names map to TrashNet's; the classes TrashNet lacks (food, textile, vegetation) are left out.
- `aquatrash`: photos of litter outdoors (TACO's, CC BY 4.0 by default, but per-photo licences are not listed in the
  source), so they are not shipped: the manifest holds each source file's sha256, its url and the crop, and
  `get_outside` fetches and cuts them. Of the photos whose boxes are all of one class, the largest box, if its longer
  side is at least `MIN_SIDE` px, is cut out as a square `MARGIN` times that side. `aquatrash_labels.csv` holds the
  project's label for each crop in TrashNet's conventions (wrappers are trash, paperboard boxes cardboard) or why it
  was left out (film, straws, cutlery, paper cups, unclear crops), beside the source's label.

Each photo is at most `OUTSIDE_SIZE` px, checked against TrashNet and the other outside photos with the audit's
perceptual hashes (a near-duplicate is dropped and reported), and given a role: `valid` (to choose on) or `test` (to
report once), half of each class by a seeded shuffle. The other source's rows are kept as they are.
"""
import hashlib, random, subprocess, sys
from pathlib import Path
import pandas as pd
from PIL import Image
from recyclenet.data import (CLASSES, OUTSIDE_COLUMNS, OUTSIDE_SIZE, get_trashnet, get_outside, image_files,
                             duplicates_across, fetch_outside, load_rgb, data_home)

HERE = Path(__file__).parent/'outside'
SOURCES = {
    'realwaste': dict(repo='https://github.com/kteppris/RealWaste', commit='eeb686db5ce16f72920179a0325421149c8b9339',
                      licence='CC0-1.0'),
    'aquatrash': dict(repo='https://github.com/Harsh9524/AquaTrash', commit='0c50d4c4f980c7e3f0d2c2170da7a2fbcb7af27e',
                      licence='CC-BY-4.0 (TACO; per-photo licences not listed in the source)')}
REALWASTE = {'Glass': 'glass', 'Paper': 'paper', 'Cardboard': 'cardboard', 'Plastic': 'plastic', 'Metal': 'metal',
             'Miscellaneous Trash': 'trash'}
MIN_SIDE, MARGIN, QUALITY, SEED = 100, 1.25, 90, 42

def sha256(fn) -> str: return hashlib.sha256(Path(fn).read_bytes()).hexdigest()

def realwaste(src) -> pd.DataFrame:
    "Rows of RealWaste's own test photos, written (downscaled) into `HERE`."
    rows = []
    for name, label in REALWASTE.items():
        for f in sorted((src/'our_test_data'/name).iterdir()):
            out = HERE/label/f'{f.stem.lower()}.jpg'
            out.parent.mkdir(parents=True, exist_ok=True)
            im = Image.open(f).convert('RGB'); im.thumbnail((OUTSIDE_SIZE, OUTSIDE_SIZE), Image.LANCZOS)
            im.save(out, quality=QUALITY, optimize=True)                 # (as first built: EXIF dropped, not applied)
            rows.append(dict(file=f'{label}/{out.name}', label=label, source_file=f'our_test_data/{name}/{f.name}',
                             source_sha256=sha256(f), source_label=name, url='', crop=''))
    return pd.DataFrame(rows)

def square(box, W, H) -> str:
    "A square `MARGIN` times the longer side of `box` (x0, y0, x1, y1), centred on it, moved inside the W×H photo."
    x0, y0, x1, y1 = box
    s = min(round(max(x1 - x0, y1 - y0)*MARGIN), W, H)
    left, top = int(min(max((x0 + x1)/2 - s/2, 0), W - s)), int(min(max((y0 + y1)/2 - s/2, 0), H - s))
    return f'{left} {top} {left + s} {top + s}'

def aquatrash(src) -> pd.DataFrame:
    "Rows of AquaTrash crops (labelled in `aquatrash_labels.csv`), cut into the fetch cache as `get_outside` would."
    boxes, labels = pd.read_csv(src/'annotations.csv'), pd.read_csv(HERE/'aquatrash_labels.csv', dtype=str).fillna('')
    labels = labels.set_index('source_file')
    raw = f"https://raw.githubusercontent.com/{SOURCES['aquatrash']['repo'].split('github.com/')[1]}/" \
          f"{SOURCES['aquatrash']['commit']}/"
    rows = []
    for name, b in boxes.groupby('image_name', sort=True):
        side = (b[['x_max', 'y_max']].values - b[['x_min', 'y_min']].values).max(1)
        if b.class_name.nunique() > 1 or side.max() < MIN_SIDE: continue
        f, big = src/'Images'/name, b.iloc[side.argmax()]
        if f'Images/{name}' not in labels.index:
            sys.exit(f"Images/{name} has no row in aquatrash_labels.csv: label it (or say why it is left out) first.")
        d = labels.loc[f'Images/{name}']
        assert d.source_label == big.class_name, (name, d.source_label, big.class_name)
        if d.left_out: print(f'left out {name} ({big.class_name}): {d.left_out}'); continue
        W, H = load_rgb(f).size                                         # (upright, as it is cut)
        stem = name.split('.rf.')[0].lower() + (f"-{name.split('.rf.')[1][:8]}" if '.rf.' in name else '')
        rows.append(dict(file=f'aquatrash/{d.label}/{stem}.png', label=d.label, source_file=f'Images/{name}',
                         source_sha256=sha256(f), source_label=big.class_name, url=raw + f'Images/{name}',
                         crop=square((big.x_min, big.y_min, big.x_max, big.y_max), W, H)))
    df = pd.DataFrame(rows)
    fetch_outside(df, data_home()/'outside', src)
    return df

def main(which, src, trashnet):
    src, s = Path(src), SOURCES[which]
    head = subprocess.run(['git', '-C', str(src), 'rev-parse', 'HEAD'], capture_output=True, text=True).stdout.strip()
    if head != s['commit']: sys.exit(f"{src} is at {head or 'no git commit'}: check out {s['commit']} first.")
    old = pd.read_csv(HERE/'manifest.csv', dtype=str).fillna('')
    old = old[old.source != s['repo']]
    if which == 'realwaste': get_outside()                          # (the listed photos, made, for the duplicate check)
    df = (realwaste if which == 'realwaste' else aquatrash)(src).assign(source=s['repo'], licence=s['licence'])
    home = lambda d: [str((data_home()/'outside' if u else HERE)/f) for f, u in zip(d.file, d.url)]
    dups = duplicates_across(home(df), [*home(old), *image_files(get_trashnet(trashnet))])
    for r in dups.itertuples():
        print(f'dropped {r.file}: {r.kind} duplicate of {r.match}')
        if Path(r.file).is_relative_to(HERE): Path(r.file).unlink()   # (a shipped photo; a made one stays in the cache)
    df = df[~pd.Series(home(df)).isin(dups.file).values].reset_index(drop=True)
    rng = random.Random(SEED)
    for label, g in df.groupby('label'):
        idx = list(g.index); rng.shuffle(idx)
        df.loc[idx[:len(idx)//2], 'role'], df.loc[idx[len(idx)//2:], 'role'] = 'valid', 'test'
    df['sha256'] = [sha256(HERE/f) if not u else '' for f, u in zip(df.file, df.url)]
    df = pd.concat([old, df]).sort_values(['source', 'label', 'file'], key=lambda s: s.map(CLASSES.index)
                                          if s.name == 'label' else s)
    df[list(OUTSIDE_COLUMNS)].to_csv(HERE/'manifest.csv', index=False)
    print(df[df.source == s['repo']].groupby(['label', 'role'], sort=False).size().unstack().to_string())
    print(f"{len(df[df.source == s['repo']])} photos of {which}, {len(dups)} dropped as duplicates; "
          f"{len(get_outside(sources=src if which == 'aquatrash' else None))} outside photos in all")

if __name__ == '__main__': main(*sys.argv[1:4])
