"Rebuild `data/trashnet-sample/` from a full TrashNet copy: `python data/make_sample.py PATH/TO/trashnet`."
import hashlib, random, sys
from pathlib import Path
from PIL import Image

CLASSES = 'glass paper cardboard plastic metal trash'.split()
PER_SPLIT = dict(train=8, val=2, test=2)   # images per class in each split
SIZE = (256, 192)                           # half of TrashNet's 512x384

def main(src, dst=Path(__file__).parent/'trashnet-sample', seed=42):
    src, rng = Path(src), random.Random(seed)
    out = dst/'dataset-resized'
    sums = []
    for split, k in PER_SPLIT.items():
        lines = (src/f'one-indexed-files-notrash_{split}.txt').read_text().split('\n')
        rows = [l.split() for l in lines if l.strip()]
        picked = []
        for i, cls in enumerate(CLASSES, 1):
            picked += sorted(rng.sample([r for r in rows if r[1] == str(i)], k), key=lambda r: r[0])
        for fn, lbl in picked:
            cls = CLASSES[int(lbl) - 1]
            (out/cls).mkdir(parents=True, exist_ok=True)
            im = Image.open(src/'dataset-resized'/cls/fn).convert('RGB').resize(SIZE, Image.LANCZOS)
            im.save(out/cls/fn, quality=85, optimize=True)
            sums.append(f'{hashlib.sha256((out/cls/fn).read_bytes()).hexdigest()}  ./{cls}/{fn}')
        (dst/f'one-indexed-files-notrash_{split}.txt').write_text(''.join(f'{fn} {lbl}\n' for fn, lbl in picked))
    (dst/'SHA256SUMS').write_text('\n'.join(sorted(sums, key=lambda s: s.split()[1])) + '\n')

if __name__ == '__main__': main(sys.argv[1])
