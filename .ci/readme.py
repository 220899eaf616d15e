#!/usr/bin/env python
"""Render nbs/index.ipynb to README.md (what `nbdev_readme` does, without needing Quarto).

Runs the notebook with execnb, drops `#| hide` cells and nbdev directives, and writes markdown with each
code cell followed by its plain-text output. `python .ci/readme.py --check` exits 1 if README.md is stale.
"""
import os, re, sys
from pathlib import Path
from execnb.nbio import read_nb
from execnb.shell import CaptureShell

root = Path(__file__).resolve().parent.parent
LINK = re.compile(r'\]\((?!https?:|#|/)([^)]+)\)')   # a relative link in a chapter's markdown
DIRECTIVE = re.compile(r'^\s*#\s*\|.*$\n?', re.M)

def _out_text(cell):
    parts = []
    for o in cell.get('outputs', []):
        if o.get('output_type') == 'stream': parts.append(''.join(o['text']))
        elif 'data' in o and 'text/plain' in o['data']: parts.append(''.join(o['data']['text/plain']))
    return ''.join(parts).rstrip()

def render(nb_path=root/'nbs'/'index.ipynb'):
    nb, cwd = read_nb(nb_path), os.getcwd()
    os.chdir(nb_path.parent)                             # (as nbdev_test runs it: relative paths from nbs/)
    try: CaptureShell(path=nb_path.parent).run_all(nb, exc_stop=True)
    finally: os.chdir(cwd)
    md = []
    for c in nb.cells:
        src = ''.join(c.source)
        if re.search(r'^\s*#\s*\|\s*hide', src, re.M): continue
        if c.cell_type == 'markdown': md.append(LINK.sub(r'](nbs/\1)', src.strip()))   # links from nbs/ -> from the root
        elif c.cell_type == 'code':
            code = DIRECTIVE.sub('', src).strip()
            if code: md.append(f'```python\n{code}\n```')
            if out := _out_text(c): md.append(f'```\n{out}\n```')
    return '\n\n'.join(md) + '\n\n<!-- generated from nbs/index.ipynb by .ci/readme.py: edit the notebook, not this file -->\n'

if __name__ == '__main__':
    text = render()
    if '--check' in sys.argv:
        if (root/'README.md').read_text() != text: sys.exit('README.md is stale: run python .ci/readme.py')
    else: (root/'README.md').write_text(text)
