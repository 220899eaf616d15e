#!/usr/bin/env python
"""Render nbs/index.ipynb to README.md (what `nbdev_readme` does, without needing Quarto).

Runs the notebook with execnb, drops `#| hide` cells and nbdev directives, and writes markdown with each
code cell followed by its output: markdown as is, plain text fenced. `python .ci/readme.py --check` exits 1 if README.md is stale.
"""
import os, re, sys
from pathlib import Path
from execnb.nbio import read_nb
from execnb.shell import CaptureShell

root = Path(__file__).resolve().parent.parent
LINK = re.compile(r'\]\((?!https?:|#|/)([^)]+)\)')   # a relative link in a chapter's markdown
DIRECTIVE = re.compile(r'^\s*#\s*\|.*$\n?', re.M)

def _out_blocks(cell) -> list[str]:
    "A code cell's outputs as README blocks: markdown (a table made with `Markdown(df.to_markdown())`) as is, text fenced."
    blocks, text = [], []
    for o in cell.get('outputs', []):
        data = o.get('data', {})
        if o.get('output_type') == 'stream': text.append(''.join(o['text']))
        elif 'text/markdown' in data: blocks.append(''.join(data['text/markdown']).strip())
        elif 'text/plain' in data: text.append(''.join(data['text/plain']))
    if out := ''.join(text).rstrip(): blocks.insert(0, f'```\n{out}\n```')
    return blocks

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
            md.extend(_out_blocks(c))
    return '\n\n'.join(md) + '\n\n<!-- generated from nbs/index.ipynb by .ci/readme.py: edit the notebook, not this file -->\n'

if __name__ == '__main__':
    text = render()
    if '--check' in sys.argv:
        if (root/'README.md').read_text() != text: sys.exit('README.md is stale: run python .ci/readme.py')
    else: (root/'README.md').write_text(text)
