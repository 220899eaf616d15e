"The outside photos: their manifest is checked photo by photo, and a manifest that cannot be used says why."
import shutil
import pandas as pd, pytest
from PIL import Image
from recyclenet.data import CLASSES, OUTSIDE_ROLES, get_outside, outside_path, sha256sum, image_files, get_trashnet


@pytest.fixture
def copy(tmp_path):
    shutil.copytree(outside_path(), tmp_path/'outside')
    return tmp_path/'outside'


def test_bundled_photos_match_their_manifest_and_cover_every_class_in_both_roles(capsys):
    df = get_outside(fetch=False)
    assert len(df) == 75 and df.sha256.is_unique
    assert 'left out 163 of 238 outside photos' in capsys.readouterr().out
    counts = pd.crosstab(df.label, df.role)
    assert set(counts.index) == set(CLASSES) and set(counts.columns) == set(OUTSIDE_ROLES) and (counts >= 5).all().all()
    assert set(df.licence) == {'CC0-1.0'} and df.source.str.startswith('https://github.com/').all()


def test_listed_photos_name_a_pinned_url_a_checksum_and_a_crop():
    m = pd.read_csv(outside_path()/'manifest.csv', dtype=str).fillna('')
    listed = m[m.url != '']
    assert len(listed) == 163 and (listed.sha256 == '').all()
    assert listed.source_sha256.str.fullmatch('[0-9a-f]{64}').all()
    assert listed.url.str.startswith('https://raw.githubusercontent.com/Harsh9524/AquaTrash/0c50d4c4').all()
    boxes = listed.crop.str.split(' ', expand=True).astype(int)
    assert ((boxes[2] - boxes[0]) == (boxes[3] - boxes[1])).all() and (boxes[2] - boxes[0] >= 100).all()   # squares
    assert (pd.crosstab(listed.label, listed.role) >= 6).all().all()


@pytest.fixture
def listed(copy, tmp_path, monkeypatch):
    "A copy whose manifest lists one photo that is not shipped, its source a sample photo in `tmp_path/src`."
    monkeypatch.setenv('RECYCLENET_HOME', str(tmp_path/'home'))
    monkeypatch.delenv('RECYCLENET_OUTSIDE_SOURCES', raising=False)
    photo = image_files(get_trashnet('sample')/'glass')[0]
    (tmp_path/'src'/'Images').mkdir(parents=True); shutil.copy(photo, tmp_path/'src'/'Images'/'bottle.jpg')
    m = pd.read_csv(copy/'manifest.csv', dtype=str).fillna('')
    row = dict(m.iloc[-1], file='made/glass/bottle.png', label='glass', sha256='', source_file='Images/bottle.jpg',
               source_sha256=sha256sum(photo), url='http://127.0.0.1:9/bottle.jpg', crop='10 20 210 220')
    pd.DataFrame([row]).to_csv(copy/'manifest.csv', index=False)
    return copy


def test_a_listed_photo_is_made_once_from_a_local_source_and_cut(listed, tmp_path):
    df = get_outside(listed, sources=tmp_path/'src')
    made = tmp_path/'home'/'data'/'outside'/'made'/'glass'/'bottle.png'
    assert df.file.tolist() == [str(made)] and Image.open(made).size == (200, 200)
    shutil.rmtree(tmp_path/'src')
    assert get_outside(listed).file.tolist() == [str(made)]                # made once: no source needed again


def test_a_listed_photo_that_cannot_be_had_or_is_not_the_one_says_what_to_do(listed, tmp_path):
    with pytest.raises(ValueError, match=r"127.0.0.1:9/bottle.jpg: .*With no network, pass sources="):
        get_outside(listed)                                                 # (nothing listens on port 9)
    (tmp_path/'src'/'Images'/'bottle.jpg').write_bytes(b'not the photo')
    with pytest.raises(ValueError, match=r"bottle.jpg: sha256 .* is not the manifest's"):
        get_outside(listed, sources=tmp_path/'src')
    assert not (tmp_path/'home').exists() or not list((tmp_path/'home').rglob('*.png'))


def test_a_changed_photo_is_named_and_nothing_is_returned(copy):
    m = pd.read_csv(copy/'manifest.csv', dtype=str).fillna('')
    victim = m[m.url == ''].file.iloc[3]
    (copy/victim).write_bytes((copy/victim).read_bytes()[:-10])          # a truncated download
    with pytest.raises(ValueError, match=rf"1 of 75 outside photos do not match .*{victim}: sha256 "):
        get_outside(copy, fetch=False)


def test_the_environment_variable_points_at_a_copy(copy, monkeypatch):
    monkeypatch.setenv('RECYCLENET_OUTSIDE', str(copy))
    assert get_outside(fetch=False).file[0].startswith(str(copy))


@pytest.mark.parametrize('edit,error', [
    (lambda m: m.drop(columns='sha256'), 'lacks the column\\(s\\) sha256'),
    (lambda m: m.assign(label=m.label.replace('trash', 'rubbish')), "unknown labels or roles: 'rubbish'"),
    (lambda m: m.assign(role=m.role.replace('valid', 'train')), "unknown labels or roles: 'train'"),
    (lambda m: m.assign(crop='0 0 10 10'), 'list a crop without a url'),
])
def test_a_manifest_that_cannot_be_used_says_why(copy, edit, error):
    m = pd.read_csv(copy/'manifest.csv')
    edit(m).to_csv(copy/'manifest.csv', index=False)
    with pytest.raises(ValueError, match=error): get_outside(copy, fetch=False)
