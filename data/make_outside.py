"""Rebuild `data/outside/` from a checkout of the source repository and a full TrashNet copy:

    git clone https://github.com/kteppris/RealWaste && git -C RealWaste checkout eeb686db5ce16f72920179a0325421149c8b9339
    python data/make_outside.py RealWaste PATH/TO/trashnet

The photos are the source's own `our_test_data/` (phone photos of household waste on a tiled floor, CC0 1.0); RealWaste
class names map to TrashNet's, the classes TrashNet lacks (food, textile, vegetation) are left out. Each photo is
downscaled to at most `SIZE` px (JPEG quality 90, EXIF dropped), checked against TrashNet and the other photos with the
audit's perceptual hashes (a near-duplicate is dropped and reported), and given a role: `valid` (to choose on) or `test`
(to report once), half of each class by a seeded shuffle.
"""
import hashlib, random, subprocess, sys
from pathlib import Path
import pandas as pd
from PIL import Image
from recyclenet.data import CLASSES, get_trashnet, image_files, duplicates_across

SOURCE = dict(repo='https://github.com/kteppris/RealWaste', commit='eeb686db5ce16f72920179a0325421149c8b9339',
              folder='our_test_data', licence='CC0-1.0', camera='iPhone 14 Pro (EXIF), 524x524 crops')
LABELS = {'Glass': 'glass', 'Paper': 'paper', 'Cardboard': 'cardboard', 'Plastic': 'plastic', 'Metal': 'metal',
          'Miscellaneous Trash': 'trash'}
SIZE, QUALITY, SEED = 512, 90, 42

def main(src, trashnet, dst=Path(__file__).parent/'outside'):
    src = Path(src)
    head = subprocess.run(['git', '-C', str(src), 'rev-parse', 'HEAD'], capture_output=True, text=True).stdout.strip()
    if head != SOURCE['commit']: sys.exit(f"{src} is at {head or 'no git commit'}: check out {SOURCE['commit']} first.")
    rows = []
    for name, label in LABELS.items():
        for f in sorted((src/SOURCE['folder']/name).iterdir()):
            out = dst/label/f'{f.stem.lower()}.jpg'
            out.parent.mkdir(parents=True, exist_ok=True)
            im = Image.open(f).convert('RGB'); im.thumbnail((SIZE, SIZE), Image.LANCZOS)
            im.save(out, quality=QUALITY, optimize=True)
            rows.append(dict(file=f'{label}/{out.name}', label=label, source=SOURCE['repo'],
                             source_file=f"{SOURCE['folder']}/{name}/{f.name}",
                             source_sha256=hashlib.sha256(f.read_bytes()).hexdigest(), licence=SOURCE['licence']))
    df = pd.DataFrame(rows)
    dups = duplicates_across([dst/f for f in df.file], image_files(get_trashnet(trashnet)))
    for r in dups.itertuples(): print(f'dropped {r.file}: {r.kind} duplicate of {r.match}')
    drop = {Path(f).relative_to(dst).as_posix() for f in dups.file}
    for f in drop: (dst/f).unlink()
    df = df[~df.file.isin(drop)].reset_index(drop=True)
    rng = random.Random(SEED)
    for label, g in df.groupby('label'):
        idx = list(g.index); rng.shuffle(idx)
        df.loc[idx[:len(idx)//2], 'role'], df.loc[idx[len(idx)//2:], 'role'] = 'valid', 'test'
    df['sha256'] = [hashlib.sha256((dst/f).read_bytes()).hexdigest() for f in df.file]
    df = df.sort_values(['label', 'file'], key=lambda s: s.map(CLASSES.index) if s.name == 'label' else s)
    df[['file', 'label', 'role', 'sha256', 'source', 'source_file', 'source_sha256', 'licence']].to_csv(dst/'manifest.csv', index=False)
    print(df.groupby(['label', 'role'], sort=False).size().unstack().to_string())
    print(f'{len(df)} photos written to {dst}, {len(drop)} dropped as duplicates')

if __name__ == '__main__': main(*sys.argv[1:3])
