"The outside photos: their manifest is checked photo by photo, and a manifest that cannot be used says why."
import shutil
import pandas as pd, pytest
from recyclenet.data import CLASSES, OUTSIDE_ROLES, get_outside, outside_path


@pytest.fixture
def copy(tmp_path):
    shutil.copytree(outside_path(), tmp_path/'outside')
    return tmp_path/'outside'


def test_bundled_photos_match_their_manifest_and_cover_every_class_in_both_roles():
    df = get_outside()
    assert len(df) == 75 and df.sha256.is_unique
    counts = pd.crosstab(df.label, df.role)
    assert set(counts.index) == set(CLASSES) and set(counts.columns) == set(OUTSIDE_ROLES) and (counts >= 5).all().all()
    assert set(df.licence) == {'CC0-1.0'} and df.source.str.startswith('https://github.com/').all()


def test_a_changed_photo_is_named_and_nothing_is_returned(copy):
    victim = pd.read_csv(copy/'manifest.csv').file[3]
    (copy/victim).write_bytes((copy/victim).read_bytes()[:-10])          # a truncated download
    with pytest.raises(ValueError, match=rf"1 of 75 outside photos do not match .*{victim}: sha256 "):
        get_outside(copy)


def test_the_environment_variable_points_at_a_copy(copy, monkeypatch):
    monkeypatch.setenv('RECYCLENET_OUTSIDE', str(copy))
    assert get_outside().file[0].startswith(str(copy))


@pytest.mark.parametrize('edit,error', [
    (lambda m: m.drop(columns='sha256'), 'lacks the column\\(s\\) sha256'),
    (lambda m: m.assign(label=m.label.replace('trash', 'rubbish')), "unknown labels or roles: 'rubbish'"),
    (lambda m: m.assign(role=m.role.replace('valid', 'train')), "unknown labels or roles: 'train'"),
])
def test_a_manifest_that_cannot_be_used_says_why(copy, edit, error):
    m = pd.read_csv(copy/'manifest.csv')
    edit(m).to_csv(copy/'manifest.csv', index=False)
    with pytest.raises(ValueError, match=error): get_outside(copy)
