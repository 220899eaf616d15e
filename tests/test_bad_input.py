"""Reliability: every kind of bad input, made here, through every entry point (data, train, eval, predict, report, export).

Each case ends in a clear, specific error that names the file and what to do, or in a counted, reported skip
(the `problem` column of `recyclenet data --audit-csv`, `skipped` in `results.json`, the `error` column of
`recyclenet predict`): never a traceback from deep inside torch, never a photo silently lost.
The Reliability table of the README (nbs/index.ipynb) lists the cases, a row for each kind."""
import errno, importlib.util, io, json, re, shutil, struct, warnings, zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np, pandas as pd, pytest, torch
from PIL import Image

from recyclenet.data import CLASSES, get_trashnet, image_files, load_rgb, RGBImage, split_files

from recyclenet.augment import trashnet_dls
from recyclenet.train import train
from recyclenet.models import atomic_save, save_model_file
from recyclenet.inference import load_classifier
from recyclenet.cli import main

PIL_LIMIT = 89478485                                               # Pillow's default MAX_IMAGE_PIXELS


# --- helpers ---

def cli(capsys, *args):
    "Run `recyclenet ARGS` in this process: (exit status, stdout, stderr)."
    capsys.readouterr()
    rc = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return rc, out, err

def cli_error(capsys, *args) -> str:
    "The one-line error of `recyclenet ARGS`, checking that it failed cleanly (status 2, no traceback)."
    rc, out, err = cli(capsys, *args)
    assert rc == 2, f'expected an error, got status {rc}:\n{out[-2000:]}\n{err[-2000:]}'
    assert 'Traceback' not in err and err.strip(), err
    line = err.strip().splitlines()[-1]
    assert line.startswith(f'recyclenet {args[0]}: error: '), line
    return line

def copy_sample(sample, dst) -> Path:
    "A writable copy of the sample at `dst/dataset-resized`, its split files beside it."
    out = Path(dst)/'dataset-resized'
    shutil.copytree(sample, out)
    for f in split_files(sample).values(): shutil.copy(f, out.parent)
    return out

def _write(fn, data: bytes) -> Path:
    fn.parent.mkdir(parents=True, exist_ok=True); fn.write_bytes(data); return fn

def _save(fn, im, **kw) -> Path:
    fn.parent.mkdir(parents=True, exist_ok=True); im.save(fn, **kw); return fn

def _jpeg(im, **kw) -> bytes:
    b = io.BytesIO(); im.save(b, 'JPEG', quality=92, **kw); return b.getvalue()

def grey_diff(a, b) -> float:
    "Mean absolute difference, in grey levels, of two images at `b`'s size."
    return float(np.abs(np.asarray(a.resize(b.size).convert('L'), float) - np.asarray(b.convert('L'), float)).mean())

TRAIN_ARGS = ['--data', 'sample', '--arch', 'resnet18', '--attention', 'none', '--scratch', '--lr', '3e-3', '--size', '32', '--bs', '16']   # (as trained_run)


# --- image files: how each kind is made, and what must happen to it ---

def _garble(raw, start, n):
    raw = bytearray(raw); raw[start:start + n] = np.random.default_rng(0).integers(0, 256, n, dtype=np.uint8).tobytes()
    return bytes(raw)

def corrupt_header(d, im): return _write(d/'corrupt_header.jpg', _garble(_jpeg(im), 20, 400))

def corrupt_data(d, im):
    raw = _jpeg(im.resize((512, 384)))
    return _write(d/'corrupt_data.jpg', _garble(raw, len(raw)//2, 2000))   # bit rot in the middle of the image data

def bomb_png(d, im):
    "A PNG that claims 20000x20000 pixels (400 Mpx, over twice PIL's limit) in 70 bytes."
    b = io.BytesIO(); Image.new('1', (8, 8)).save(b, 'PNG'); raw = bytearray(b.getvalue())
    raw[16:24] = struct.pack('>II', 20000, 20000)                  # IHDR width and height
    raw[29:33] = struct.pack('>I', zlib.crc32(bytes(raw[12:29])))  # and its checksum
    return _write(d/'bomb.png', bytes(raw))

def huge_photo(d, im):
    big = Image.new('RGB', (12000, 9000), (150, 120, 90)); big.paste(im.resize((4000, 3000)), (4000, 3000))
    return _save(d/'huge_12000x9000.jpg', big, quality=75)

def png16(d, im):
    return _save(d/'gray16.png', Image.fromarray(np.asarray(im.convert('L'), np.uint16)*257))

@dataclass
class ImageCase:
    name: str
    make: Callable                                                 # (folder, upright RGB photo) -> the file it wrote
    problem: str = ''                                              # regex of the reason it is left out; '' = usable
    same_photo: bool = True                                        # a usable file must look like the photo it was made from
    def __repr__(self): return self.name

IMAGE_CASES = [
    ImageCase('corrupt JPEG header', corrupt_header, r'^truncated or corrupt image \(its JPEG header is unreadable\)$'),
    ImageCase('corrupt JPEG data', corrupt_data, r'^truncated or corrupt image$'),
    ImageCase('truncated JPEG', lambda d, im: _write(d/'truncated.jpg', _jpeg(im)[:len(_jpeg(im))//2]), r'^truncated or corrupt image$'),
    ImageCase('zero-byte file', lambda d, im: _write(d/'empty.jpg', b''), r'^zero-byte file$'),
    ImageCase('text file named .jpg', lambda d, im: _write(d/'notes.jpg', b'shopping list: milk, eggs\n'), r'^not an image \(unknown format\)$'),
    ImageCase('HEIC photo (no pillow-heif)', lambda d, im: _write(d/'IMG_0001.HEIC', b'\0\0\0\x18ftypheic\0\0\0\0mif1heic' + bytes(300)),
              r'^HEIC/HEIF photo: pip install pillow-heif'),
    ImageCase('WebP', lambda d, im: _save(d/'photo.webp', im, quality=90)),
    ImageCase('TIFF', lambda d, im: _save(d/'photo.tif', im)),
    ImageCase('BMP', lambda d, im: _save(d/'photo.bmp', im)),
    ImageCase('CMYK JPEG', lambda d, im: _save(d/'cmyk.jpg', im.convert('CMYK'), quality=92)),
    ImageCase('RGBA PNG', lambda d, im: _save(d/'rgba.png', im.convert('RGBA'))),
    ImageCase('palette PNG', lambda d, im: _save(d/'palette.png', im.convert('P', palette=Image.Palette.ADAPTIVE, colors=256))),
    ImageCase('grayscale JPEG', lambda d, im: _save(d/'gray.jpg', im.convert('L'), quality=92)),
    ImageCase('16-bit PNG', png16),
    ImageCase('decompression bomb', bomb_png, r'^decompression bomb refused \(Image size \(400000000 pixels\) exceeds limit'),
    ImageCase('1x1 image', lambda d, im: _save(d/'dot.png', Image.new('RGB', (1, 1), 'red')), r'^too small \(1x1 pixels\)$'),
    ImageCase('12000x9000 photo', huge_photo, same_photo=False),
    ImageCase('non-ASCII name with spaces', lambda d, im: _save(d/'Flaschen grün 写真'/'flasche nr 1 ö.jpg', im, quality=92)),
]
if importlib.util.find_spec('pillow_heif'): IMAGE_CASES = [c for c in IMAGE_CASES if not c.name.startswith('HEIC')]


@pytest.fixture(scope='module')
def photo(sample):
    "A real photo, small, upright RGB."
    return load_rgb(image_files(sample/'paper')[0]).resize((128, 96))

@pytest.fixture(scope='module')
def dataset(sample, photo, tmp_path_factory):
    "A copy of the sample under a path with spaces and non-ASCII characters, every case file added to paper/cases/."
    root = copy_sample(sample, tmp_path_factory.mktemp('data')/'Müll Fotos 写真')
    files = {c.name: c.make(root/'paper'/'cases'/re.sub(r'\W+', '_', c.name), photo) for c in IMAGE_CASES}
    return root, files

@pytest.fixture(scope='module')
def trained_on_cases(dataset, tmp_path_factory):
    "`train` (1 epoch, tiny) on the dataset with every case file in it; its results.json."
    root, _ = dataset
    out = tmp_path_factory.mktemp('run on cases')
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter('always')
        learn = train(data=str(root), arch='resnet18', attention=None, recipe='one-cycle', aug='mid', epochs=1, freeze_epochs=0, lr=3e-3, size=32, bs=16, pretrained=False,
                      split='random', out=out, export_pkl=False)
    for dl in learn.dls.loaders:                                    # every photo that was kept decodes
        for _ in dl.new(shuffle=False, drop_last=False): pass
    return out, learn, json.loads((out/'results.json').read_text()), [str(x.message) for x in w]

@pytest.fixture(scope='module')
def audited(dataset, trained_on_cases, tmp_path_factory):
    "`recyclenet data --audit-csv` of the dataset: one row per file with its problem."
    root, _ = dataset
    csv = tmp_path_factory.mktemp('audit')/'audit.csv'
    assert main(['data', '--data', str(root), '--split', 'random', '--audit_csv', str(csv)]) == 0
    return pd.read_csv(csv, keep_default_na=False).set_index('file')

@pytest.fixture(scope='module')
def predicted(dataset, trained_on_cases, tmp_path_factory):
    "`recyclenet predict` of the case files with the model trained on them: the CSV."
    root, _ = dataset
    csv = tmp_path_factory.mktemp('predict')/'predictions.csv'
    assert main(['predict', str(root/'paper'/'cases'), '--model', str(trained_on_cases[0]/'model.pth'), '--out', str(csv)]) == 0
    return pd.read_csv(csv, keep_default_na=False).set_index('path')


@pytest.mark.parametrize('case', [c for c in IMAGE_CASES if not c.problem], ids=repr)
def test_usable_files_load_as_upright_rgb(case, dataset, photo):
    im = load_rgb(dataset[1][case.name])
    assert im.mode == 'RGB' and min(im.size) >= 8
    if case.same_photo: assert grey_diff(im, photo) < 12, f'{case.name} does not look like the photo it was made from'


@pytest.mark.parametrize('case', IMAGE_CASES, ids=repr)
def test_data_audit_reports_each_file(case, dataset, audited):
    "`recyclenet data`: the audit names the problem of each bad file, and none for a usable one."
    problem = audited.loc[str(dataset[1][case.name]), 'problem']
    if case.problem: assert re.search(case.problem, problem), problem
    else: assert problem == ''


@pytest.mark.parametrize('case', IMAGE_CASES, ids=repr)
def test_train_counts_and_reports_skipped_files(case, dataset, trained_on_cases):
    "`train`: bad files are left out with a warning and listed with their reason in results.json; usable ones are trained on."
    out, learn, res, warned = trained_on_cases
    fn = str(dataset[1][case.name])
    skipped = {r['file']: r['problem'] for r in res['skipped']}
    if case.problem:
        assert re.search(case.problem, skipped[fn]), skipped.get(fn)
        assert any(f'Left out {len(skipped)} of ' in w for w in warned), warned
    else:
        assert fn not in skipped and fn in set(learn.dls.split_df.file)


@pytest.mark.parametrize('case', IMAGE_CASES, ids=repr)
def test_predict_labels_or_reports_each_file(case, dataset, predicted):
    "`recyclenet predict`: one row per file, with a label or the reason it could not be read."
    row = predicted.loc[str(dataset[1][case.name])]
    if case.problem: assert row.label == '' and re.search(case.problem, row.error), row.error
    else: assert row.error == '' and row.label in CLASSES


def test_every_case_file_is_counted(dataset, trained_on_cases, audited, predicted):
    "Nothing is silently dropped: every case file is in the audit, in the predictions, and either trained on or skipped."
    files = {str(f) for f in dataset[1].values()}
    _, learn, res, _ = trained_on_cases
    assert files <= set(audited.index) and files <= set(predicted.index)
    assert files <= set(learn.dls.split_df.file) | {r['file'] for r in res['skipped']}
    assert len(res['skipped']) == sum(bool(c.problem) for c in IMAGE_CASES)


def test_eval_warns_with_the_count_of_unreadable_files(dataset, trained_on_cases, capsys):
    root, _ = dataset
    n_bad = sum(bool(c.problem) for c in IMAGE_CASES)
    with pytest.warns(UserWarning, match=rf'Left out {n_bad} of {72 + len(IMAGE_CASES)} images that cannot be read'):
        rc, out, err = cli(capsys, 'eval', trained_on_cases[0]/'model.pth', '--data', root, '--split', 'test')
    assert rc == 0 and out.strip().splitlines()[-1].startswith('test accuracy: ')


BOMB = r'^decompression bomb refused \(Image size \(400000000 pixels\) exceeds limit of 178956970 pixels'   # (2x MAX_IMAGE_PIXELS)

def test_decompression_bomb_is_refused_under_pils_limit(sample, photo, trained_run, tmp_path, capsys, monkeypatch):
    "With every module of recyclenet imported (none may lift Pillow's limit), a PNG claiming 400 Mpx is reported with its reason and left out."
    import recyclenet.cli, recyclenet.inference, recyclenet.interpret, recyclenet.robustness, recyclenet.augment, recyclenet.train, recyclenet.recipes, recyclenet.config, recyclenet.webcam, recyclenet.bench
    assert Image.MAX_IMAGE_PIXELS == PIL_LIMIT
    d = copy_sample(sample, tmp_path)
    good = image_files(d/'glass')[0]
    bomb = bomb_png(d/'glass', photo)
    with pytest.raises(Image.DecompressionBombError, match='could be decompression bomb'): load_rgb(bomb)
    rc, out, _ = cli(capsys, 'data', '--data', d, '--split', 'random', '--audit_csv', tmp_path/'audit.csv')   # the data audit
    audit = pd.read_csv(tmp_path/'audit.csv', keep_default_na=False).set_index('file')
    assert rc == 0 and len(audit) == 73 and re.search(BOMB, audit.loc[str(bomb), 'problem']), audit.loc[str(bomb)]
    assert (audit.drop(str(bomb)).problem == '').all()
    with pytest.warns(UserWarning, match=rf'Left out 1 of 73 images that cannot be read: {re.escape(str(bomb))} \(decompression bomb refused'):
        dls = trashnet_dls(d, split='random', size=32, bs=8, aug=None)              # what train and eval load
    assert str(bomb) not in set(dls.split_df.file) and len(dls.split_df) == 72
    assert dls.skipped.file.tolist() == [str(bomb)] and re.search(BOMB, dls.skipped.problem[0])
    rc, _, _ = cli(capsys, 'predict', bomb, good, '--model', trained_run/'model.pth', '--out', tmp_path/'p.csv')
    p = pd.read_csv(tmp_path/'p.csv', keep_default_na=False).set_index('path')
    assert rc == 0 and list(p.index) == [str(bomb), str(good)]
    assert p.loc[str(bomb), 'label'] == '' and re.search(BOMB, p.loc[str(bomb), 'error']), p.loc[str(bomb)]
    assert p.loc[str(good), 'error'] == '' and p.loc[str(good), 'label'] in CLASSES
    monkeypatch.setattr(Image, 'MAX_IMAGE_PIXELS', None)                         # control: without the limit it is no bomb
    from recyclenet.data import image_problem
    assert not image_problem(bomb).startswith('decompression bomb'), image_problem(bomb)


# --- EXIF orientation: every one of the 8 comes out upright ---

# How a camera stores an upright photo for each EXIF orientation (the tag says how to turn it back, per the EXIF spec).
STORED = {1: [], 2: [Image.Transpose.FLIP_LEFT_RIGHT], 3: [Image.Transpose.ROTATE_180], 4: [Image.Transpose.FLIP_TOP_BOTTOM],
          5: [Image.Transpose.TRANSPOSE], 6: [Image.Transpose.ROTATE_90], 7: [Image.Transpose.TRANSVERSE],
          8: [Image.Transpose.ROTATE_270]}

def quadrants() -> Image.Image:
    "A 96x64 image with a different colour in each quadrant: any turn or mirror shows."
    a = np.zeros((64, 96, 3), np.uint8)
    a[:32, :48] = (255, 0, 0); a[:32, 48:] = (0, 255, 0); a[32:, :48] = (0, 0, 255); a[32:, 48:] = (255, 255, 0)
    return Image.fromarray(a)

@pytest.mark.parametrize('orientation', range(1, 9))
def test_exif_rotated_photos_come_out_upright(orientation, tmp_path, trained_run):
    upright = quadrants()
    stored = upright
    for t in STORED[orientation]: stored = stored.transpose(t)
    exif = Image.Exif(); exif[0x0112] = orientation
    fn = _write(tmp_path/f'orientation{orientation}.jpg', _jpeg(stored, exif=exif.tobytes()))
    for im in (load_rgb(fn), RGBImage.create(fn), load_rgb(fn.read_bytes())):   # what loaders and predict decode with
        assert im.size == upright.size
        assert np.abs(np.asarray(im, float) - np.asarray(upright, float)).mean() < 8
    clf = load_classifier(trained_run/'model.pth')
    assert np.abs(clf.prepare(fn) - clf.prepare(_write(tmp_path/'upright.jpg', _jpeg(upright)))).mean() < 0.1


# --- data folders and split files ---

@pytest.fixture(scope='module')
def trained_run(tmp_path_factory):
    "A tiny model trained on the sample (official split), with its checkpoints."
    out = tmp_path_factory.mktemp('run')
    train(data='sample', arch='resnet18', attention=None, recipe='one-cycle', aug='mid', epochs=2, freeze_epochs=0, lr=3e-3, size=32, bs=16, pretrained=False, out=out, export_pkl=True)
    return out


def test_empty_class_folder(sample, tmp_path, capsys):
    d = copy_sample(sample, tmp_path)
    for f in image_files(d/'metal'): f.unlink()
    line = cli_error(capsys, 'train', *TRAIN_ARGS[2:], '--data', d, '--out', tmp_path/'run')
    assert f'{d/"metal"} hold no images' in line and 'Re-download' in line


def test_empty_class_folder_in_fit_folder(sample, tmp_path, capsys):
    for c in ('glass', 'paper'): shutil.copytree(sample/c, tmp_path/'bins'/c)
    (tmp_path/'bins'/'metal').mkdir()
    line = cli_error(capsys, 'fit-folder', tmp_path/'bins', '--out', tmp_path/'run')
    assert f'{tmp_path/"bins"/"metal"} hold no images' in line and 'remove the folder' in line


def test_class_with_fewer_images_than_splits(sample, tmp_path, capsys):
    for c in ('glass', 'paper'): shutil.copytree(sample/c, tmp_path/'bins'/c)
    (tmp_path/'bins'/'trash').mkdir()
    for f in image_files(sample/'trash')[:2]: shutil.copy(f, tmp_path/'bins'/'trash')
    line = cli_error(capsys, 'fit-folder', tmp_path/'bins', '--out', tmp_path/'run')
    assert "Class 'trash' has 2 image(s); a 3-way split needs at least 3 per class" in line


def test_missing_split_file(sample, tmp_path, capsys):
    d = copy_sample(sample, tmp_path)
    (d.parent/'one-indexed-files-notrash_val.txt').unlink()
    line = cli_error(capsys, 'train', *TRAIN_ARGS[2:], '--data', d, '--out', tmp_path/'run')
    assert f'{d.parent/"one-indexed-files-notrash_val.txt"} is missing' in line and '--split random' in line


def test_split_file_listing_missing_photos(sample, tmp_path, trained_run, capsys):
    d = copy_sample(sample, tmp_path)
    gone = image_files(d/'glass')[0]; gone.unlink()
    line = cli_error(capsys, 'eval', trained_run/'model.pth', '--data', d)
    assert f'1 of 72 images named in the split files are not under {d}' in line and str(gone) in line


def test_duplicate_file_names_across_classes(sample, tmp_path, trained_run, capsys):
    "The same name (and photo) in two class folders: both kept with their own label, and the audit flags the conflict."
    d = copy_sample(sample, tmp_path)
    src = image_files(d/'glass')[0]; dup = d/'paper'/src.name; shutil.copy(src, dup)
    rc, out, _ = cli(capsys, 'data', '--data', d, '--split', 'random', '--audit_csv', tmp_path/'a.csv')
    assert rc == 0 and re.search(r'groups with two labels\s+1\n', out), out
    a = pd.read_csv(tmp_path/'a.csv', keep_default_na=False).set_index('file')
    assert (a.loc[str(src), 'label'], a.loc[str(dup), 'label']) == ('glass', 'paper')
    assert a.loc[str(src), 'label_conflict'] and a.loc[str(dup), 'label_conflict']
    dls = trashnet_dls(d, split='random', size=32, bs=8, aug=None)
    labels = dict(zip(dls.split_df.file, dls.split_df.label))
    assert (labels[str(src)], labels[str(dup)]) == ('glass', 'paper') and len(dls.split_df) == 73
    rc, _, _ = cli(capsys, 'predict', d/'glass', d/'paper', '--model', trained_run/'model.pth', '--out', tmp_path/'p.csv')
    p = pd.read_csv(tmp_path/'p.csv', keep_default_na=False)
    assert rc == 0 and {str(src), str(dup)} <= set(p.path) and p.path.is_unique and len(p) == 25


# --- model files and checkpoints: refused with a clear reason, before anything runs ---

class RunsCode:
    "Unpickling this creates the file `marker`: a stand-in for any code an attacker could run."
    def __init__(self, marker): self.marker = str(marker)
    def __reduce__(self): return (open, (self.marker, 'w'))

def _edit(src, dst, **changes) -> Path:
    "Copy the checkpoint or model file `src` to `dst` with `changes` to its config (or other keys)."
    ck = torch.load(src, weights_only=True)
    cfg = dict(ck['config'], **{k: v for k, v in changes.items() if k != 'extra'})
    torch.save(dict(ck, config=cfg, **changes.get('extra', {})), dst)
    return dst

def _run_copy(run, d) -> Path:
    "A copy of the trained run's folder, to spoil."
    shutil.copytree(run, d/'run'); return d/'run'

def _cut(fn, n=5000): fn.write_bytes(fn.read_bytes()[:n]); return fn

@dataclass
class FileCase:
    name: str
    args: Callable                                                 # (trained run folder, tmp folder) -> recyclenet arguments
    error: str                                                     # what the one-line error must say (regex)
    def __repr__(self): return self.name

def _photo(run): return image_files(get_trashnet('sample')/'glass')[0]
RESUME = lambda out, *more: ['train', *TRAIN_ARGS, '--epochs', '2', '--out', out, '--resume', *more]

FILE_CASES = [
    FileCase('model for other classes (report)',
             lambda r, d: ['report', _edit(r/'model.pth', d/'other_classes.pth', classes=list('abcdef')), '--data', 'sample', '--out', d/'rep'],
             r'other_classes\.pth was trained for the classes a, b, c, d, e, f; .* has no class folder'),
    FileCase('model of another architecture (predict)',
             lambda r, d: ['predict', _photo(r), '--model', _edit(r/'model.pth', d/'other_arch.pth', arch='efficientnet_lite0')],
             r'Model file .*other_arch\.pth does not match its own config'),
    FileCase('model of another architecture (report)',
             lambda r, d: ['report', _edit(r/'model.pth', d/'other_arch.pth', arch='resnet34'), '--data', 'sample', '--out', d/'rep'],
             r'Model file .*other_arch\.pth does not match its own config'),
    FileCase('truncated model file (eval)', lambda r, d: ['eval', _cut(shutil.copy(r/'model.pth', d/'cut.pth')), '--data', 'sample'],
             r'Model file .*cut\.pth is unreadable or truncated .* Use a model\.pth written by `recyclenet train`'),
    FileCase('truncated model file (predict)', lambda r, d: ['predict', _photo(r), '--model', _cut(shutil.copy(r/'model.pth', d/'cut.pth'))],
             r'Model file .*cut\.pth is unreadable or truncated'),
    FileCase('truncated model file (report)',
             lambda r, d: ['report', _cut(shutil.copy(r/'model.pth', d/'cut.pth')), '--data', 'sample', '--out', d/'rep'],
             r'Model file .*cut\.pth is unreadable or truncated'),
    FileCase('code-running pickle as model (eval)',
             lambda r, d: ['eval', _edit(r/'model.pth', d/'evil.pth', extra=dict(x=RunsCode(d/'pwned'))), '--data', 'sample'],
             r'Model file .*evil\.pth is refused: it holds pickled code or objects'),
    FileCase('code-running pickle as model (predict)',
             lambda r, d: ['predict', _photo(r), '--model', _edit(r/'model.pth', d/'evil.pth', extra=dict(x=RunsCode(d/'pwned')))],
             r'Model file .*evil\.pth is refused'),
    FileCase('code-running pickle as model (report)',
             lambda r, d: ['report', _edit(r/'model.pth', d/'evil.pth', extra=dict(x=RunsCode(d/'pwned'))), '--data', 'sample', '--out', d/'rep'],
             r'Model file .*evil\.pth is refused'),
    FileCase('fastai export.pkl (predict)', lambda r, d: ['predict', _photo(r), '--model', r/'export.pkl'],
             r'export\.pkl is a pickle .*loading it can run any code in it.* load the model\.pth beside it'),
    FileCase('truncated model file (export)',
             lambda r, d: ['export', '--model', _cut(shutil.copy(r/'model.pth', d/'cut.pth')), '--onnx', d/'m.onnx'],
             r'Model file .*cut\.pth is unreadable or truncated .* Use a model\.pth written by `recyclenet train`'),
    FileCase('garbage bytes as model file (export)',            # (not called code: torch's refusal reads the same for both)
             lambda r, d: ['export', '--model', _write(d/'junk.pth', np.random.default_rng(0).bytes(5000)), '--onnx', d/'m.onnx'],
             r'Model file .*junk\.pth is unreadable or truncated \(.*\)\. Use a model\.pth written by `recyclenet train`'),
    FileCase('code-running pickle as model (export)',
             lambda r, d: ['export', '--model', _edit(r/'model.pth', d/'evil.pth', extra=dict(x=RunsCode(d/'pwned'))), '--onnx', d/'m.onnx'],
             r'Model file .*evil\.pth is refused: it holds pickled code or objects'),
    FileCase('model of another architecture (export)',
             lambda r, d: ['export', '--model', _edit(r/'model.pth', d/'other_arch.pth', arch='resnet34'), '--onnx', d/'m.onnx'],
             r'Model file .*other_arch\.pth does not match its own config'),
    FileCase('fastai export.pkl (export)', lambda r, d: ['export', '--model', r/'export.pkl', '--onnx', d/'m.onnx'],
             r'export\.pkl is a pickle .*loading it can run any code in it.* load the model\.pth beside it'),
    FileCase('truncated checkpoint (train --resume)', lambda r, d: RESUME(_cut_ck(_run_copy(r, d))),
             r'Checkpoint .*last\.pth is unreadable or truncated \(.*\)\. Delete it and train from the start\.'),
    FileCase('code-running pickle as checkpoint (train --resume)',
             lambda r, d: RESUME(_evil_ck(_run_copy(r, d), d/'pwned')),
             r'Checkpoint .*last\.pth is refused: it holds pickled code or objects'),
    FileCase('checkpoint of another architecture (train --resume)',
             lambda r, d: RESUME(_run_copy(r, d), '--arch', 'resnet34'),
             r"last\.pth was saved for arch='resnet18', but this model has arch='resnet34'"),
    FileCase('checkpoint for other classes (train --resume)',
             lambda r, d: RESUME(_other_classes_ck(_run_copy(r, d))),
             r"last\.pth was saved for classes=\['a', 'b', 'c', 'd', 'e', 'f'\], but this model has classes=\['glass'"),
    FileCase('checkpoint from another seed (train --resume --seed 8)', lambda r, d: RESUME(_run_copy(r, d), '--seed', '8'),
             r"last\.pth was saved for seed=42, but this model has seed=8"),    # (another split and augmentations)
    FileCase('checkpoint at another input size (train --resume --size 48)', lambda r, d: RESUME(_run_copy(r, d), '--size', '48'),
             r"last\.pth was saved for size=32, but this model has size=48"),
]

def _cut_ck(out): _cut(out/'checkpoints'/'last.pth'); return out
def _evil_ck(out, marker): _edit(out/'checkpoints'/'last.pth', out/'checkpoints'/'last.pth', extra=dict(x=RunsCode(marker))); return out
def _other_classes_ck(out): _edit(out/'checkpoints'/'last.pth', out/'checkpoints'/'last.pth', classes=list('abcdef')); return out


@pytest.mark.parametrize('case', FILE_CASES, ids=repr)
def test_bad_model_and_checkpoint_files(case, trained_run, tmp_path, capsys):
    line = cli_error(capsys, *case.args(trained_run, tmp_path))
    assert re.search(case.error, line), line
    assert not (tmp_path/'pwned').exists(), 'the pickled code ran'
    assert not list(tmp_path.rglob('*.onnx*')), 'export wrote a file'                   # (nor a temporary)


def test_the_code_running_pickle_is_real(tmp_path):
    "Control: loaded without `weights_only`, the payload the cases above refuse does run."
    torch.save({'x': RunsCode(tmp_path/'pwned')}, tmp_path/'evil.pth')
    torch.load(tmp_path/'evil.pth', weights_only=False)
    assert (tmp_path/'pwned').exists()


# --- training arguments ---

@pytest.mark.parametrize('args,error', [
    (['--epochs', '-1'], r'epochs=-1, freeze_epochs=1: they cannot be negative'),
    (['--lr', '-0.001'], r'lr=-0\.001 is not a usable learning rate: use a value in \(0, 10\]'),
    (['--lr', '1e6'], r'lr=1000000\.0 is not a usable learning rate'),
    (['--lr', 'nan'], r'lr=nan is not a usable learning rate'),
    (['--lr', 'fast'], r"argument --lr: 'fast': use a number such as 1e-3, or 'auto'"),
    (['--size', '4'], r"argument --size: '4': use a number of pixels >= 16"),
    (['--size', 'big'], r"argument --size: 'big': use a number of pixels >= 16 \(224\) or HEIGHTxWIDTH"),
], ids=lambda v: ' '.join(v) if isinstance(v, list) else '')
def test_bad_training_arguments_on_the_command_line(args, error, tmp_path, capsys):
    line = cli_error(capsys, 'train', *TRAIN_ARGS, '--epochs', '1', *args, '--out', tmp_path)
    assert re.search(error, line), line
    assert not (tmp_path/'model.pth').exists()


def test_zero_epochs_warns_and_saves_the_untrained_model(tmp_path, capsys):
    with pytest.warns(UserWarning, match=r'epochs=0, freeze_epochs=0: nothing to train'):
        rc, out, err = cli(capsys, 'train', *TRAIN_ARGS, '--epochs', '0', '--freeze_epochs', '0', '--out', tmp_path)
    assert rc == 0 and (tmp_path/'model.pth').exists() and 'test accuracy: ' in out


# --- out of disk space while saving ---

def full_disk_after(n_ok, snapshots=None):
    "A `torch.save` that works `n_ok` times, then writes half the file and fails as a full disk does."
    real, calls = torch.save, []
    def save(obj, f, *args, **kwargs):
        calls.append(Path(f))
        if len(calls) <= n_ok: return real(obj, f, *args, **kwargs)
        if snapshots is not None: snapshots.update({p: p.read_bytes() for p in Path(f).parent.glob('*.pth')})
        b = io.BytesIO(); real(obj, b)
        Path(f).write_bytes(b.getvalue()[:len(b.getvalue())//2])
        raise OSError(errno.ENOSPC, 'No space left on device')
    return save


def test_full_disk_keeps_the_old_file(trained_run, tmp_path, monkeypatch):
    fn = shutil.copy(trained_run/'model.pth', tmp_path/'model.pth')
    before = Path(fn).read_bytes()
    monkeypatch.setattr(torch, 'save', full_disk_after(0))
    with pytest.raises(OSError, match=rf'Could not write {tmp_path/"model.pth"} \(No space left on device\); the previous model\.pth is kept\. Free disk space'):
        atomic_save(torch.load(fn, weights_only=True), fn)
    assert Path(fn).read_bytes() == before and list(tmp_path.iterdir()) == [Path(fn)]   # no half-written temporary left
    with pytest.raises(OSError, match=r'no new\.pth was written'): atomic_save({'a': 1}, tmp_path/'new.pth')
    assert list(tmp_path.iterdir()) == [Path(fn)]


def test_full_disk_during_training_keeps_the_last_good_checkpoint(tmp_path, capsys, monkeypatch):
    "The disk fills up while saving epoch 2's checkpoint: a one-line error, epoch 1's checkpoints intact, resumable."
    snaps = {}
    monkeypatch.setattr(torch, 'save', full_disk_after(2, snaps))   # epoch 1 saves best.pth and last.pth; then the disk is full
    line = cli_error(capsys, 'train', *TRAIN_ARGS, '--epochs', '3', '--out', tmp_path)
    assert 'No space left on device' in line and str(tmp_path/'checkpoints') in line and 'is kept' in line
    monkeypatch.undo()
    ck = tmp_path/'checkpoints'
    assert sorted(p.name for p in ck.glob('*.pth*')) == ['best.pth', 'last.pth'] and not list(ck.glob('.*'))   # no temporary left
    assert snaps and all(p.read_bytes() == b for p, b in snaps.items())        # byte for byte what was there before
    assert torch.load(ck/'last.pth', weights_only=True)['epoch'] == 0
    rc, out, _ = cli(capsys, 'train', *TRAIN_ARGS, '--epochs', '3', '--out', tmp_path, '--resume')
    assert rc == 0 and 'resuming after scratch epoch 0' in out
