"Robustness chapter: the shift suite, object segmentation, the report and its CLI, WiSE-FT and BackgroundSwap, on the bundled sample."
import os, random, subprocess, sys
from pathlib import Path

import albumentations as A, cv2, numpy as np, pandas as pd, pytest, torch

from recyclenet.data import official_split, image_files, load_rgb

from recyclenet.augment import trashnet_dls, AlbumentationsTransform
from recyclenet.inference import load_classifier
from recyclenet.models import load_model_file
from recyclenet.robustness import SHIFTS, apply_shift, robustness_report, summarise, plot_robustness, wise_ft, wise_ft_sweep, shift_seed
from recyclenet.augment import SCENES, segment_object, board_reference, BackgroundSwap
from recyclenet.cli import main
from webcam_model import probe_model

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope='module')
def photos(sample):
    "Six sample photos, one per class, decoded once."
    return [np.asarray(load_rgb(f)) for f in image_files(sample)[::12]]


@pytest.fixture(scope='module')
def model_file(tmp_path_factory):
    return probe_model(tmp_path_factory.mktemp('model')/'model.pth', size=64)


def scramble_global_rngs(seed):
    "Move every global random generator a shift could lean on (Python's, NumPy's, OpenCV's, torch's) to another state."
    random.seed(seed); np.random.seed(seed); cv2.setRNGSeed(seed); torch.manual_seed(seed)
    np.random.random(seed % 7 + 1)


@pytest.mark.parametrize('name', list(SHIFTS))
def test_shift_contract(name, photos):
    for i, img in enumerate(photos[:3]):
        scramble_global_rngs(1000 + i); a = apply_shift(img, name, seed=i)
        scramble_global_rngs(2000 + i); b = apply_shift(img, name, seed=i)
        c = apply_shift(img, name, seed=i + 100)
        assert a.shape == img.shape and a.dtype == np.uint8
        np.testing.assert_array_equal(a, b)                          # its seed decides, not the global generators' state
        assert (a != c).any(), f'{name}: seeds {i} and {i + 100} gave the same image'
        assert (a != img).mean() > 0.01, f'{name} barely changed photo {i}'
    assert not np.shares_memory(apply_shift(photos[0], name), photos[0])


@pytest.mark.parametrize('name', list(SHIFTS))
def test_shift_on_any_image(name):
    "Any HxWx3 uint8 image, not only TrashNet's size: a small odd-sized random one, and a flat grey one."
    rng = np.random.default_rng(0)
    for img in (rng.integers(0, 256, (37, 53, 3), dtype=np.uint8), np.full((64, 48, 3), 128, np.uint8)):
        out = apply_shift(img, name, seed=1)
        assert out.shape == img.shape and out.dtype == np.uint8


def test_severity_grows(photos):
    img = photos[1]
    diff = lambda s, name: np.abs(apply_shift(img, name, severity=s, seed=0).astype(int) - img).mean()
    for name in ('low_light', 'defocus_blur', 'colour_cast', 'jpeg'):
        assert diff(5, name) > diff(1, name), name
    with pytest.raises(ValueError, match='1 \\(mild\\) to 5'): apply_shift(img, 'jpeg', severity=0)
    with pytest.raises(ValueError, match='Unknown shift'): apply_shift(img, 'fog')
    with pytest.raises(ValueError, match='HxWx3 uint8'): apply_shift(img.astype(np.float32), 'jpeg')


def test_shift_seed():
    "The same seeds in every run: other processes, with other string hashing (PYTHONHASHSEED), draw the same ones."
    args = [(0, 'jpeg', 3), (7, 'hand', 0), (1, 'background', 41)]
    here = [shift_seed(*a) for a in args]
    assert len(set(here)) == 3 and all(isinstance(v, int) and 0 <= v < 2**32 for v in here)
    for hashseed in ('0', '12345'):
        r = subprocess.run([sys.executable, '-c', f'from recyclenet.robustness import shift_seed; print([shift_seed(*a) for a in {args!r}])'],
                           capture_output=True, text=True, env={**os.environ, 'PYTHONHASHSEED': hashseed,     # (this checkout's recyclenet)
                                                                 'PYTHONPATH': os.pathsep.join(filter(None, [str(ROOT), os.environ.get('PYTHONPATH')]))})
        assert r.returncode == 0, r.stderr[-2000:]
        assert r.stdout.strip().splitlines()[-1] == str(here), (hashseed, r.stdout)
    assert len({shift_seed(0, 'jpeg', i) for i in range(50)} | {shift_seed(1, 'jpeg', 0), shift_seed(0, 'hand', 0)}) == 52


def test_segment_object(sample):
    areas = []
    for f in image_files(sample)[::3]:
        img = np.asarray(load_rgb(f))
        m = segment_object(img)
        assert m.shape == img.shape[:2] and m.dtype == bool
        assert 0.02 <= m.mean() <= 0.9, f'{f.name}: object covers {m.mean():.2f} of the photo'   # (glass228, a bottle top: 4%)
        areas.append(m.mean())
        lab = cv2.cvtColor(img, cv2.COLOR_RGB2LAB).astype(np.float32)
        d = np.linalg.norm(lab - board_reference(lab), axis=-1)        # distance from the board's colour
        assert d[m].mean() > 1.5*d[~m].mean(), f'{f.name}: the mask is not the object'
    assert 0.1 <= np.median(areas) <= 0.6, areas


def test_segment_object_finds_a_drawn_object():
    img = np.full((192, 256, 3), 235, np.uint8)
    img[60:140, 90:170] = (40, 90, 160)
    m = segment_object(img)
    truth = np.zeros(img.shape[:2], bool); truth[60:140, 90:170] = True
    assert (m & truth).sum()/(m | truth).sum() > 0.9                 # intersection over union


def test_closeup_keeps_its_object(sample):
    "A close-up shows no board at its edge: the whole photo is the object, and the background shift leaves it as it is."
    img = np.asarray(load_rgb(sample/'cardboard'/'cardboard34.jpg'))   # a box filling the frame
    assert segment_object(img).all()
    np.testing.assert_array_equal(apply_shift(img, 'background', seed=0), img)


def test_background_keeps_the_object(photos):
    img = photos[2]
    m = segment_object(img)
    out = apply_shift(img, 'background', severity=5, seed=3, mask=m)
    core = cv2.erode(m.astype(np.uint8), np.ones((15, 15))).astype(bool)
    assert np.abs(out[core].astype(int) - img[core]).mean() < 3     # the object's inside is untouched
    assert np.abs(out[~m].astype(int) - img[~m]).mean() > 20        # the board is gone


def test_report(model_file):
    df = robustness_report(model_file, 'sample', progress=False)
    assert df['shift'].tolist() == ['clean', *SHIFTS]
    assert (df.total == 12).all() and df.accuracy.between(0, 1).all() and (df.correct <= df.total).all()
    np.testing.assert_allclose(df.accuracy, df.correct/df.total)
    np.testing.assert_allclose(df['drop'], df.accuracy[0] - df.accuracy)
    assert df.severity.tolist() == [0] + [3]*len(SHIFTS)
    assert set(df.worst_class) <= set(load_model_file(model_file).config['classes'])
    assert 'mean over 9 shifts' in summarise(df)
    again = robustness_report(load_classifier(model_file), 'sample', progress=False)   # a Classifier: the same table
    pd.testing.assert_frame_equal(df, again)
    other = robustness_report(model_file, 'sample', shifts=['jpeg', 'hand'], severity=5, seed=1, progress=False)
    assert other['shift'].tolist() == ['clean', 'jpeg', 'hand'] and other.severity.tolist() == [0, 5, 5]
    assert plot_robustness(df).axes[0].get_xlabel() == 'accuracy (%)'


def test_report_clean_matches_predict(model_file, sample):
    "The clean row is what the classifier says about the files themselves."
    clf = load_classifier(model_file)
    df = robustness_report(clf, 'sample', shifts=['jpeg'], progress=False)
    test = official_split(sample, verbose=False).query("split == 'test'")
    preds = clf.predict_batch(test.file, progress=False)
    assert df.correct[0] == (preds.label.values == test.label.values).sum()


def test_report_errors(model_file):
    with pytest.raises(FileNotFoundError, match='does not exist'): robustness_report('no/such/model.pth', 'sample')
    with pytest.raises(ValueError, match='Unknown shift'): robustness_report(model_file, 'sample', shifts=['fog'])
    with pytest.raises(ValueError, match="use 'train', 'valid' or 'test'"): robustness_report(model_file, 'sample', split='val')
    with pytest.raises(TypeError, match='model file, a Classifier or a fastai Learner'): robustness_report(42, 'sample')


def test_cli(model_file, tmp_path, capsys):
    assert main(['robustness', str(model_file), '--data', 'sample', '--shifts', 'jpeg,low_light', '--out', str(tmp_path/'r')]) == 0
    assert sorted(p.name for p in (tmp_path/'r').iterdir()) == ['robustness.csv', 'robustness.png']
    df = pd.read_csv(tmp_path/'r'/'robustness.csv')
    assert df['shift'].tolist() == ['clean', 'jpeg', 'low_light'] and (df.total == 12).all()
    out = capsys.readouterr().out
    assert 'low_light' in out and 'mean over 2 shifts' in out and 'written to' in out


def test_cli_bad_model(tmp_path):
    r = subprocess.run([sys.executable, '-m', 'recyclenet.cli', 'robustness', str(tmp_path/'missing.pth'), '--data', 'sample'],
                       capture_output=True, text=True)
    assert r.returncode == 2
    assert 'recyclenet robustness: error: Model file' in r.stderr and 'does not exist' in r.stderr and 'Traceback' not in r.stderr


def _state(seed):
    torch.manual_seed(seed)
    m = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.Flatten(), torch.nn.LazyLinear(2))
    m(torch.randn(2, 3, 8, 8))                                        # (materialise, and count a BatchNorm batch)
    if seed: m(torch.randn(2, 3, 8, 8))
    return m


def test_wise_ft():
    m0, m1 = _state(0), _state(1)
    s0, s1 = ({k: v.clone() for k, v in m.state_dict().items()} for m in (m0, m1))    # copies: state_dict() shares the weights
    for k in s0:
        assert torch.equal(wise_ft(s0, s1, 0)[k], s0[k]) and torch.equal(wise_ft(s0, s1, 1)[k], s1[k])
    half = wise_ft(s0, s1, 0.5)
    for k in s0:
        if s0[k].is_floating_point(): torch.testing.assert_close(half[k], (s0[k] + s1[k])/2)
    quarter = wise_ft(m0, m1, 0.25)
    assert isinstance(quarter, torch.nn.Sequential)
    mixed = quarter.state_dict()
    assert mixed.keys() == s0.keys()
    for k in s0:
        if s0[k].is_floating_point(): torch.testing.assert_close(mixed[k], 0.75*s0[k] + 0.25*s1[k])
        else: assert torch.equal(mixed[k], s0[k])                    # BatchNorm's batch counter: the nearer model's (1, not 2)
    assert mixed['1.num_batches_tracked'].item() == 1 and s1['1.num_batches_tracked'].item() == 2
    for m, s in ((m0, s0), (m1, s1)):                                # the inputs are left alone
        for k, v in m.state_dict().items(): assert torch.equal(v, s[k]), k
    x = torch.randn(3, 3, 8, 8)
    m1.eval(); quarter.eval()
    with torch.no_grad():
        torch.testing.assert_close(quarter(x), torch.func.functional_call(m1, mixed, (x,)))
        quarter[0].weight.add_(1)                                    # its own weights: changing them changes neither input
    assert torch.equal(m1.state_dict()['0.weight'], s1['0.weight']) and torch.equal(m0.state_dict()['0.weight'], s0['0.weight'])
    with pytest.raises(ValueError, match='alpha'): wise_ft(s0, s1, -0.1)
    with pytest.raises(ValueError, match='same architecture'): wise_ft(s0, {k: v for k, v in s1.items() if k != '0.bias'}, 0.5)


def test_wise_ft_sweep(model_file, tmp_path):
    other = probe_model(tmp_path/'other.pth', size=64, steps=20)
    sw = wise_ft_sweep(other, model_file, 'sample', alphas=(0, 0.5, 1), shifts=['jpeg'], progress=False)
    assert sw.alpha.tolist() == [0, 0.5, 1] and sw[['clean', 'mean_shifted', 'jpeg']].stack().between(0, 1).all()
    end = robustness_report(model_file, 'sample', shifts=['jpeg'], progress=False)
    assert sw.clean.iloc[-1] == end.accuracy[0] and sw.jpeg.iloc[-1] == end.accuracy[1]


def test_background_swap(photos, sample):
    img = photos[3]
    aug = A.Compose([BackgroundSwap(p=1)])
    outs = []
    for i, s in enumerate((5, 5, 6)):
        scramble_global_rngs(i)                                      # (only the augmentation's own generators may matter)
        aug.set_random_state(np.random.default_rng(s), random.Random(s))
        outs.append(aug(image=img)['image'])
    np.testing.assert_array_equal(outs[0], outs[1])
    assert (outs[0] != outs[2]).any() and (outs[0] != img).mean() > 0.05 and outs[0].shape == img.shape
    assert (A.Compose([BackgroundSwap(p=0)])(image=img)['image'] == img).all()
    dls = trashnet_dls(sample, size=64, bs=8, extra_augs=[BackgroundSwap(p=0.5)])
    tfm = [t for t in dls.train.after_item.fs if isinstance(t, AlbumentationsTransform)][0]
    assert isinstance(tfm.aug.transforms[-1], BackgroundSwap)
    assert dls.one_batch()[0].shape == (8, 3, 64, 64)
