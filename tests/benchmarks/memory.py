"""
Memory readings for the benchmarks: a process tree and its proportional set size (PSS), from /proc.
"""

from __future__ import annotations

from pathlib import Path


def process_tree(root: int) -> list[int]:
    """
    ``root`` and every process descended from it (through each thread's children list).
    """
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        for task in Path(f"/proc/{pid}/task").glob("*"):
            try:
                todo += [int(c) for c in (task / "children").read_text().split()]
            except OSError:
                continue
    return out


def pss(pid: int) -> int:
    """
    The process's PSS in bytes (shared pages counted once across processes); 0 once it has gone.
    """
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return 0
    for line in text.splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1]) * 1024
    return 0


def pss_parts(pid: int) -> dict[str, int]:
    """
    The process's PSS in bytes split by kind (``Pss_Anon``, ``Pss_File``, ``Pss_Shmem`` of
    smaps_rollup, keys without the prefix, lower case) and its ``private`` pages (``Private_Clean`` +
    ``Private_Dirty``: what no other process maps); empty once it has gone.
    """
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return {}
    parts = {}
    for line in text.splitlines():
        if line.startswith("Pss_"):
            name, value = line.split(":", 1)
            parts[name[4:].lower()] = int(value.split()[0]) * 1024
        elif line.startswith("Private_"):
            parts["private"] = parts.get("private", 0) + int(line.split()[1]) * 1024
    return parts
