"""The Celery table of docs/coming-from.md is code that runs: the first piece of code in
each streamwork cell appears in a Python block of the page (which tests/docs runs), but for
the command lines (`streamwork ...`), which the CLI's own tests run."""

import re
from pathlib import Path

PAGE = Path(__file__).resolve().parents[2] / "docs" / "coming-from.md"


def celery_rows(text):
    section = text.split("## From Celery", 1)[1].split("\n## ", 1)[0]
    table = section.split("| Celery | streamwork |", 1)[1].split("\n\n", 1)[0]
    for line in table.splitlines()[2:]:
        cells = re.split(r"(?<!\\)\|", line)[1:-1]
        yield cells[0].strip(), cells[1].strip().replace("\\|", "|")


def python_blocks(text):
    return "\n".join(re.findall(r"```python[^\n]*\n(.*?)```", text, re.S))


def test_every_streamwork_cell_of_the_celery_table_is_run_by_the_page():
    text = PAGE.read_text()
    code = python_blocks(text)
    rows = list(celery_rows(text))
    assert len(rows) >= 20
    missing = []
    for celery, ours in rows:
        first = re.search(r"`([^`]+)`", ours)
        assert first, f"no code in the streamwork cell for {celery}"
        snippet = first.group(1)
        if snippet.startswith("streamwork "):
            continue
        if snippet not in code:
            missing.append(snippet)
    assert missing == []
