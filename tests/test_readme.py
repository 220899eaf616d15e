"The README opens with the two commands, CI runs the second verbatim, and README.md is rendered from index."
import re, subprocess, sys
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
    assert cmds[1].startswith('pip install -e ".[dev]"') and 'nbdev_test' in cmds[1] and 'pytest tests/' in cmds[1]

def test_ci_runs_the_second_command_verbatim():
    lines = (ROOT/'.ci'/'run').read_text().splitlines()
    assert readme_commands()[1] in lines
    assert 'export CI=true' in lines

def test_readme_is_rendered_from_index_notebook():
    r = subprocess.run([sys.executable, str(ROOT/'.ci'/'readme.py'), '--check'], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]

def test_first_command_parses_with_the_cli():
    "Every `recyclenet ...` step of the first command is accepted by the CLI's own parser (options spelled right)."
    import shlex
    from fastcore.script import anno_parser
    from recyclenet.cli import COMMANDS
    steps = [shlex.split(s.replace('"${RECYCLENET_DATA:-sample}"', 'sample')) for s in readme_commands()[0].split('&&')]
    steps = [s for s in steps if s[0] == 'recyclenet']
    assert [s[1] for s in steps] == ['train', 'eval']
    for _, cmd, *rest in steps: anno_parser(COMMANDS[cmd], prog=f'recyclenet {cmd}').parse_args(rest)
