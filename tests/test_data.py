"Data chapter: real sample images, and bad files made here, through every entry point of `recyclenet.data`."
import shutil, warnings, zipfile
from pathlib import Path

import numpy as np, pandas as pd, pytest
from PIL import Image

from recyclenet.data import CLASSES, get_trashnet, check_trashnet, official_split, stratified_split, split_counts, audit, audit_summary, image_problem, verify_images, load_rgb, make_bad_images, image_files, split_files, TRASHNET_SHA256, check_sha256

from recyclenet.augment import trashnet_dls, augment_offline


def copy_sample(sample, dst):
    "A writable copy of the sample, split files included, at `dst/dataset-resized`."
    out = Path(dst)/'dataset-resized'
    shutil.copytree(sample, out)
    for f in split_files(sample).values(): shutil.copy(f, out.parent)
    return out


@pytest.fixture
def bad_files(sample, tmp_path):
    return make_bad_images(tmp_path/'bad', image_files(sample/'paper')[0])


# --- bad files: each gives a specific, reported reason, or loads correctly ---

@pytest.mark.parametrize('kind,reason', [('truncated', 'truncated or corrupt image'), ('zero_byte', 'zero-byte file'),
                                         ('text', 'not an image (unknown format)')])
def test_unreadable_files_have_a_reason(bad_files, kind, reason):
    assert image_problem(bad_files[kind]) == reason


@pytest.mark.parametrize('kind', ['cmyk', 'rgba', 'gray', 'png16', 'rotated'])
def test_odd_files_load_as_upright_rgb(bad_files, sample, kind):
    ref = load_rgb(image_files(sample/'paper')[0])
    im = load_rgb(bad_files[kind])
    assert image_problem(bad_files[kind]) == ''
    assert im.mode == 'RGB' and im.size == ref.size          # the rotated one comes back upright
    diff = np.abs(np.asarray(im.convert('L'), float) - np.asarray(ref.convert('L'), float)).mean()
    assert diff < 12, f'{kind} differs from the original photo by {diff:.1f} grey levels'


def test_loaders_leave_out_bad_files_and_count_them(sample, bad_files):
    extra = pd.DataFrame({'file': [str(f) for f in bad_files.values()], 'label': 'paper'})
    with pytest.warns(UserWarning, match=r'Left out 3 of 80 images.*truncated\.jpg \(truncated or corrupt image\)'):
        dls = trashnet_dls(sample, size=32, bs=4, aug=None, extra_train=extra)
    assert sorted(Path(f).name for f in dls.skipped.file) == ['text.jpg', 'truncated.jpg', 'zero_byte.jpg']
    assert len(dls.train_ds) == 48 + 5
    for xb, yb in dls.train: assert xb.shape[1:] == (3, 32, 32)   # every remaining file decodes


# --- dataset folders and archives ---

def test_empty_class_folder_is_named(sample, tmp_path):
    d = copy_sample(sample, tmp_path)
    for f in image_files(d/'metal'): f.unlink()
    with pytest.raises(ValueError, match=r'metal hold no images'): check_trashnet(d)


def test_missing_class_folder_is_named(sample, tmp_path):
    d = copy_sample(sample, tmp_path)
    shutil.rmtree(d/'trash')
    with pytest.raises(FileNotFoundError, match='no class folder.*trash'): get_trashnet(d)


def test_zip_archive_skips_macos_junk(sample, tmp_path):
    z = tmp_path/'dataset-resized.zip'
    with zipfile.ZipFile(z, 'w') as zf:
        for f in image_files(sample): zf.write(f, f'dataset-resized/{f.parent.name}/{f.name}')
        zf.writestr('__MACOSX/dataset-resized/glass/._glass1.jpg', b'x')
        zf.writestr('dataset-resized/glass/.DS_Store', b'x')
    path = get_trashnet(z, dest=tmp_path/'unpacked')
    assert len(image_files(path)) == 72
    assert not list((tmp_path/'unpacked').rglob('__MACOSX')) and not list(path.rglob('.DS_Store'))
    assert get_trashnet(z, dest=tmp_path/'unpacked') == path         # second call reuses the unpacked copy


def test_wrong_checksum_names_the_file(tmp_path):
    f = tmp_path/'dataset-resized.zip'; f.write_bytes(b'not the archive')
    with pytest.raises(ValueError, match=r'dataset-resized\.zip has sha256 .* expected c060e8ab'):
        check_sha256(f, TRASHNET_SHA256)


def test_env_var_is_the_default_source(sample, monkeypatch):
    monkeypatch.setenv('RECYCLENET_DATA', str(sample))
    assert get_trashnet() == sample


# --- splits ---

def test_official_split_of_the_sample(sample):
    df = official_split(sample, verbose=False)
    assert list(df.columns) == ['file', 'label', 'split']
    t = split_counts(df)
    assert (t.loc[CLASSES, ['train', 'valid', 'test']].values == [8, 2, 2]).all()


def test_official_split_of_full_trashnet(full_trashnet):
    df = official_split(full_trashnet, verbose=False)
    assert df.split.value_counts()[['train', 'valid', 'test']].tolist() == [1768, 328, 431]
    assert df.file.is_unique and set(df.label) == set(CLASSES)


def test_packaged_split_files_are_used_for_a_bare_download(full_trashnet, tmp_path):
    (tmp_path/'dataset-resized').symlink_to(full_trashnet, target_is_directory=True)
    assert Path(split_files(tmp_path/'dataset-resized')['test']).parent.name == 'splits'
    assert len(official_split(tmp_path/'dataset-resized', verbose=False)) == 2527


def test_split_file_naming_missing_images_is_an_error(sample, tmp_path):
    d = copy_sample(sample, tmp_path)
    (d/'glass'/sorted(p.name for p in (d/'glass').iterdir())[0]).unlink()
    with pytest.raises(FileNotFoundError, match=r'1 of 72 images named in the split files are not under'):
        official_split(d)


def test_stratified_split_is_seeded_and_stratified(sample):
    a, b = stratified_split(sample, seed=7, verbose=False), stratified_split(sample, seed=7, verbose=False)
    assert a.equals(b)
    assert not a.split.equals(stratified_split(sample, seed=8, verbose=False).split)
    assert (split_counts(a).loc[CLASSES, ['train', 'valid', 'test']].values == [8, 2, 2]).all()


def test_class_with_too_few_images_to_split(sample, tmp_path):
    d = copy_sample(sample, tmp_path)
    for f in image_files(d/'trash')[2:]: f.unlink()
    with pytest.raises(ValueError, match=r"Class 'trash' has 2 image\(s\); a 3-way split needs at least 3"):
        stratified_split(d)


# --- loaders and augmentation ---

def test_dls_have_train_valid_and_labelled_test(sample):
    dls = trashnet_dls(sample, size=48, bs=6)
    assert dls.vocab == CLASSES
    assert (len(dls.train_ds), len(dls.valid_ds), len(dls[2].dataset)) == (48, 12, 12)
    xb, yb = dls[2].one_batch()
    assert xb.shape == (6, 3, 48, 48) and yb.max() < 6


def test_augmentation_only_touches_training_items(sample):
    dls = trashnet_dls(sample, size=48, bs=4, aug='high')
    dls.valid.before_iter(); dls.train.before_iter()                  # what iterating does: sets each split_idx
    v = [np.asarray(dls.valid.do_item(0)[0]) for _ in range(4)]
    assert all((v[0] == u).all() for u in v[1:])                      # valid: never augmented
    t = [np.asarray(dls.train.do_item(0)[0]).astype(int) for _ in range(6)]
    assert any((t[0] != u).any() for u in t[1:])                      # train: augmented


def test_same_seed_same_batches(sample):
    b1 = trashnet_dls(sample, size=32, bs=8, seed=3).one_batch()
    b2 = trashnet_dls(sample, size=32, bs=8, seed=3).one_batch()
    assert (b1[0] == b2[0]).all() and (b1[1] == b2[1]).all()


def test_offline_augmentation_never_touches_test_images(sample, tmp_path):
    out = augment_offline(sample, tmp_path/'aug', 'mid', copies=1)
    df = official_split(sample, verbose=False)
    assert set(out.source) == set(df.file[df.split == 'train'])
    assert len(image_files(tmp_path/'aug')) == 48
    assert all(Path(f).stem.endswith('_aug0') for f in out.file)


# --- audit ---

def test_audit_finds_planted_problems_and_leaks(sample, tmp_path):
    d = copy_sample(sample, tmp_path)
    make_bad_images(d/'metal', image_files(sample/'metal')[0])
    df = official_split(sample, verbose=False)
    test_img = Path(df.file[df.split == 'test'].iloc[0])
    shutil.copy(test_img, d/test_img.parent.name/'leak.jpg')
    with open(d.parent/'one-indexed-files-notrash_train.txt', 'a') as f:
        f.write(f'leak.jpg {CLASSES.index(test_img.parent.name) + 1}\n')
    a = audit(d)
    a.index = a.file.map(lambda f: Path(f).name)
    s = audit_summary(a)
    assert s['unreadable'] == 3 and s['odd mode'] >= 4 and s['EXIF-rotated'] == 1
    assert a.loc['leak.jpg', 'leak'] and a.loc[test_img.name, 'leak']
    assert a.loc['leak.jpg', 'dup_kind'] == 'exact'


def test_audit_of_full_trashnet(full_trashnet):
    s = audit_summary(audit(full_trashnet))
    assert s['images'] == 2527 and s['unreadable'] == 0
    assert s['groups with two labels'] == 3 and s['groups crossing splits (leaks)'] >= 10

def test_progress_prints_lines_in_a_log(capsys):
    "With no terminal (a log, CI), long work reports a flushed line every tenth of the way; short work stays quiet."
    from recyclenet.data import progress, PROGRESS_MIN
    assert list(progress(range(PROGRESS_MIN), 'photos')) == list(range(PROGRESS_MIN))
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 10 and lines[0].startswith(f'photos: {PROGRESS_MIN//10}/{PROGRESS_MIN} (')
    assert lines[-1].startswith(f'photos: {PROGRESS_MIN}/{PROGRESS_MIN} (')
    assert list(progress(range(5), 'photos')) == list(range(5)) and capsys.readouterr().out == ''
