"""Which stages a commit changed: the lock entries that differ from a baseline's lock.

A `dvc.lock` entry records a stage's command, the hash of every dep (code, data), the
values of its params and the hashes of its outputs. Two commits whose entries for a stage
are equal ran that stage on the same inputs, so the gate needs to re-execute exactly the
stages whose entry changed (or is new). The dependency graph comes from the lock too: a
stage depends on the stage that writes one of its dep paths.
"""
from __future__ import annotations

import json

import networkx as nx

from busdx.gate import flatten


def _normalised(entry: dict) -> str:
    """An entry as canonical text: dep/out lists sorted by path, key order ignored."""
    e = dict(entry)
    for key in ("deps", "outs"):
        if key in e:
            e[key] = sorted(e[key], key=lambda d: d.get("path", ""))
    return json.dumps(e, sort_keys=True, default=str)


def stage_entries(lock: dict | None) -> dict[str, dict]:
    return dict((lock or {}).get("stages") or {})


def covers(out: str, dep: str) -> bool:
    out, dep = out.rstrip("/"), dep.rstrip("/")
    return dep == out or dep.startswith(out + "/") or out.startswith(dep + "/")


def graph(lock: dict) -> nx.DiGraph:
    """Edges producer → consumer, from the paths in each entry's deps and outs."""
    entries = stage_entries(lock)
    g = nx.DiGraph()
    g.add_nodes_from(entries)
    outs = {name: [o["path"] for o in e.get("outs", [])] for name, e in entries.items()}
    for name, e in entries.items():
        for dep in e.get("deps", []):
            for producer, paths in outs.items():
                if producer != name and any(covers(p, dep["path"]) for p in paths):
                    g.add_edge(producer, name)
    return g


def topological(lock: dict, stages) -> list[str]:
    """``stages`` in an order where every producer comes before its consumers (ties by the
    lock's own order, which DVC writes in dvc.yaml order)."""
    wanted = set(stages)
    order = {name: i for i, name in enumerate(stage_entries(lock))}
    sub = graph(lock).subgraph(wanted)
    return list(nx.lexicographical_topological_sort(sub, key=lambda n: order.get(n, 1e9)))


def changed_stages(base: dict | None, head: dict) -> list[str]:
    """Stages of ``head`` whose entry differs from (or is absent in) ``base``, in
    topological order. ``base`` None (no baseline: a cold start) selects every stage."""
    old, new = stage_entries(base), stage_entries(head)
    picked = [n for n, e in new.items()
              if base is None or n not in old or _normalised(old[n]) != _normalised(e)]
    return topological(head, picked)


def upstream_of(lock: dict, stages) -> list[str]:
    """The stages outside ``stages`` that write a dep of one of them (their direct
    producers): what must be restored before ``stages`` can be re-executed alone."""
    g, chosen = graph(lock), set(stages)
    parents = {p for s in chosen if s in g for p in g.predecessors(s)} - chosen
    return topological(lock, parents)


def changed_params(base: dict | None, head: dict) -> dict[str, tuple[object, object]]:
    """``section.key`` → (old, new) for every param value that differs between the two
    locks' params sections (what a reviewer needs beside the metrics)."""
    def flat(lock):
        out = {}
        for e in stage_entries(lock).values():
            for values in (e.get("params") or {}).values():
                out.update(flatten(values))
        return out
    old, new = flat(base), flat(head)
    return {k: (old.get(k), new.get(k)) for k in sorted(set(old) | set(new))
            if old.get(k) != new.get(k)}

