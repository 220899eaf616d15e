"The README opens with the two commands, CI runs the second verbatim, and README.md is rendered from index."
import os, re, shutil, subprocess, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

def readme_commands():
    return re.findall(r'```sh\n(.*?)\n```', (ROOT/'README.md').read_text(), re.S)

def test_readme_opens_with_two_commands():
    text = (ROOT/'README.md').read_text()
    cmds = readme_commands()
    assert len(cmds) >= 2 and all('\n' not in c for c in cmds[:2])
    assert text.index(cmds[1]) < text.index('## ')                     # both before the first section
    assert cmds[0].startswith('pip install') and 'recyclenet ' in cmds[0]

def ci_steps() -> list[str]:
    "The steps of the README's second command (CI's), in order."
    return readme_commands()[1].split(' && ')

def test_second_command_installs_chromium_then_checks_everything():
    steps = ci_steps()
    assert steps[:2] == ['apt-get -qq update',
                         'DEBIAN_FRONTEND=noninteractive apt-get -qq install -y chromium chromium-driver >/dev/null']   # (errors still on stderr)
    assert steps[2:5] == ['pip install -e ".[dev]"', 'nbdev_export', 'git rev-parse --git-dir >/dev/null']
    assert steps[5] == 'test -z "$(git status --porcelain -- recyclenet)"' and 'nbdev_test' in steps[6]
    assert steps[-1] == 'pytest tests/'                  # its exit status is CI's: 5 (no test collected) fails too
    assert '||' not in readme_commands()[1] and ';' not in readme_commands()[1]   # no step's failure is forgiven

def test_ci_runs_the_second_command_verbatim():
    lines = (ROOT/'.ci'/'run').read_text().splitlines()
    assert readme_commands()[1] in lines
    assert 'export CI=true' in lines

def _ci_run_with(tmp_path, command) -> Path:
    "A copy of .ci/run, in a copy of the repository's layout, that runs `command` instead of the README's second command."
    (tmp_path/'.ci').mkdir()
    text = (ROOT/'.ci'/'run').read_text()
    (tmp_path/'.ci'/'run').write_text(text.replace(readme_commands()[1], command))
    return tmp_path/'.ci'/'run'

def test_ci_clears_every_recyclenet_variable(tmp_path):
    "The machine's RECYCLENET_* settings (data, full TrashNet, webcam knobs) never reach what CI runs; the rest does."
    run = _ci_run_with(tmp_path, 'env')
    env = dict(os.environ, RECYCLENET_DATA='/somewhere/trashnet', RECYCLENET_FULL_DATA='/x', RECYCLENET_WEBCAM_FRAMES='1',
               KEEP_ME='1', CI='false')
    r = subprocess.run(['bash', str(run)], env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    seen = dict(l.split('=', 1) for l in r.stdout.splitlines() if '=' in l)
    assert not [k for k in seen if k.startswith('RECYCLENET_')], seen
    assert seen['KEEP_ME'] == '1' and seen['CI'] == 'true' and seen['PWD'] == str(tmp_path)

def _git(*args, cwd):
    subprocess.run(['git', '-c', 'user.name=ci', '-c', 'user.email=ci@example.com', *args], cwd=cwd, check=True, capture_output=True)

def test_export_check_fails_outside_a_git_checkout(tmp_path):
    "The library-matches-notebooks check passes only in a git checkout whose recyclenet/ is unchanged."
    check = ' && '.join(ci_steps()[4:6])                    # git rev-parse ... && test -z "$(git status ...)"
    sh = lambda d: subprocess.run(['bash', '-c', check], cwd=d, capture_output=True, text=True,
                                  env=dict(os.environ, GIT_CEILING_DIRECTORIES=str(tmp_path))).returncode
    bare = tmp_path/'no_git'; (bare/'recyclenet').mkdir(parents=True); (bare/'recyclenet'/'core.py').write_text('x = 1\n')
    assert sh(bare) != 0                                     # (git prints its error to stderr and nothing to stdout)
    assert subprocess.run(['bash', '-c', ci_steps()[5]], cwd=bare, capture_output=True,
                          env=dict(os.environ, GIT_CEILING_DIRECTORIES=str(tmp_path))).returncode == 0   # what the check alone did
    repo = tmp_path/'repo'; shutil.copytree(bare, repo)
    _git('init', '-q', cwd=repo); _git('add', '.', cwd=repo); _git('commit', '-qm', 'lib', cwd=repo)
    assert sh(repo) == 0
    (repo/'recyclenet'/'core.py').write_text('x = 2\n')    # the library edited by hand, or notebooks not exported
    assert sh(repo) != 0

def test_readme_is_rendered_from_index_notebook():
    r = subprocess.run([sys.executable, str(ROOT/'.ci'/'readme.py'), '--check'], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]

def test_first_command_parses_with_the_cli():
    "Every `recyclenet ...` step of the first command is accepted by the CLI's own parser (options spelled right)."
    import shlex
    from recyclenet.cli import COMMANDS, parser
    steps = [shlex.split(s.replace('"${RECYCLENET_DATA:-sample}"', 'sample')) for s in readme_commands()[0].split('&&')]
    steps = [s for s in steps if s[0] == 'recyclenet']
    assert [s[1] for s in steps] == ['train']
    for _, cmd, *rest in steps:
        args = parser(COMMANDS[cmd], prog=f'recyclenet {cmd}').parse_args(rest)
        assert args.data == 'sample'
