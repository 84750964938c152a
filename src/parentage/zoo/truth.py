"""Is an explanation true? `compare`'s alignment checked against what a derivation actually did.

Used by the tests on the zoo (whose manifest records each model's layer map and frozen tensors) and by the
real-weight benchmark (whose surgery records the same), and meant for `bench`: a wrong "how" under a right
verdict is a defect, so it is counted like one.
"""

from __future__ import annotations


def explanation_errors(doc: dict, layer_map: list[int | None] | None, frozen_layers: list[int] | None = None,
                       only_embeddings: bool = False) -> list[str]:
    """Where the report contradicts the truth. `layer_map[j]`: the layer of A that B's layer j came from (None:
    inserted); `frozen_layers`: B's layers left bit-identical; `only_embeddings`: B shares only A's embeddings.

    An inserted or removed layer must be named, or sit inside a tie left undecided (which then contains the
    truth); a layer that does descend from A must never be said to have no counterpart; frozen layers must be
    exactly the layers reported identical. A layer the report lists as not examined makes no claim."""
    al, errors = doc["alignment"], []
    if doc["verdict"]["label"] != "related":
        return [f"verdict {doc['verdict']['label']}"]
    pairs = [tuple(p) for p in al["layers"] or []]
    open_ties = [t for t in al.get("ties", []) if t["original"] is None]

    def in_open_tie(side: str, k: int) -> bool:
        return any(t["side"] == side and k in t["candidates"] for t in open_ties)

    silent = {side: set(v) for side, v in al.get("not_examined", {}).items()}  # no claim either way: allowed
    if layer_map is not None:
        for j, i in enumerate(layer_map):
            if j in silent.get("b", ()):
                continue
            if i is None and (None, j) not in pairs and not in_open_tie("a", j):
                errors.append(f"inserted layer {j} of B not named")
            if i is not None and (None, j) in pairs and not in_open_tie("a", j):
                errors.append(f"layer {j} of B descends from A's layer {i} but is said to have no counterpart")
            if i is not None and (i, j) not in pairs and (None, j) not in pairs and pairs:
                errors.append(f"layer {j} of B aligned elsewhere, not with A's layer {i}")
        kept = {i for i in layer_map if i is not None}
        for t in al.get("ties", []):  # a tie says one layer and a copy of it: both must be that
            many = t["candidates"]
            if t["side"] == "a" and any(j < len(layer_map) and layer_map[j] not in (t["layer"], None) for j in many):
                errors.append(f"B's layers {many} said to descend from A's layer {t['layer']}: truth "
                              f"{[layer_map[j] for j in many if j < len(layer_map)]}")
            if t["side"] == "b" and sum(i in kept for i in many) > 1:
                errors.append(f"A's layers {many} said to be one layer and a copy of it, but each is kept in B")
        n_a = doc["inputs"][0]["n_layers"] or 0
        for i in range(n_a):
            if i not in kept and (i, None) not in pairs and not in_open_tie("b", i) and i not in silent.get("a", ()):
                errors.append(f"removed layer {i} of A not named")
    if frozen_layers is not None and al.get("components"):
        said = [f["layer_b"] for f in al["components"]["layers"]
                if f["attention"]["status"] == f["ffn"]["status"] == "identical"]
        if said != sorted(frozen_layers):
            errors.append(f"frozen layers {sorted(frozen_layers)}, reported {said}")
    said_only = any(n.startswith("only the embeddings share ancestry") for n in al["notes"])
    if only_embeddings and not said_only:
        errors.append("an embeddings-only copy not described as such")
    if said_only and not only_embeddings:
        errors.append("layers that descend from A's described as independent (\"only the embeddings\")")
    return errors


def frozen_layers_of(model: dict) -> list[int] | None:
    """B's layers every tensor of which the zoo froze, from a manifest entry (None when nothing was frozen)."""
    names = model.get("frozen_tensors")
    if not names:
        return None
    return sorted({int(n.split(".")[2]) for n in names if n.startswith("model.layers.")})


def export_errors(doc: dict, truth: dict, of_source: bool) -> list[str]:
    """Where `alignment.export` contradicts an export's truth (a manifest entry's `export`). Against the model it
    was exported from: the relation named, B as the copy, and exactly the tensors that were altered. Against any
    other model: never that B is that model's export."""
    export = (doc.get("alignment") or {}).get("export") or {}
    if not of_source:
        if export.get("relation") and export.get("child") == "B":
            return [f"B called A's {export['relation']}, but it exports another model"]
        return []
    errors = []
    if export.get("relation") != truth["relation"]:
        errors.append(f"export relation {export.get('relation')!r}, truth {truth['relation']!r} "
                      f"({export.get('summary')})")
    elif export.get("child") != "B":
        errors.append(f"the export named as {export.get('child')!r}, truth B")
    said = sorted(t["tensor"] for t in export.get("altered") or [])
    if said != sorted(truth["altered"]):
        errors.append(f"altered tensors named {said}, truth {sorted(truth['altered'])}")
    return errors


def update_errors(doc: dict, model: dict) -> list[str]:
    """Where `alignment.updates` contradicts what was done to B (a manifest entry's `updates`, absent when B was
    neither pruned by magnitude nor given a merged low-rank update): each one named, nothing else claimed."""
    updates = (doc.get("alignment") or {}).get("updates") or {}
    truth = model.get("updates") or {}
    sparsity = updates.get("sparsity") or {}
    ranks = (updates.get("low_rank") or {}).get("ranks") or {}
    errors = []
    if "sparsity" in truth:
        if not sparsity.get("summary"):
            errors.append(f"{truth['sparsity']:.0%} magnitude pruning not named")
        elif abs(sparsity["share_zeroed"] - truth["sparsity"]) > 0.05 or sparsity["by_magnitude"] != truth["by_magnitude"]:
            errors.append(f"sparsity said as {sparsity['summary']!r}, truth {truth}")
    elif sparsity.get("summary"):
        errors.append(f"sparsity claimed where there is none: {sparsity['summary']}")
    if "low_rank" in truth:
        if set(ranks.values()) != {truth["low_rank"]}:
            errors.append(f"a rank-{truth['low_rank']} update said as {ranks or 'nothing'}")
    elif ranks:
        errors.append(f"a low-rank update claimed where there is none: {ranks}")
    return errors


def vocabulary_errors(doc: dict, model: dict) -> list[str]:
    """A pruned vocabulary (`vocab_pruned` in the manifest) must be named pruned by the tokenizer lineage."""
    if not model.get("vocab_pruned"):
        return []
    tok = next((e for e in doc["evidence"] if e["name"] == "tokenizer_lineage"), None)
    kind = tok["details"].get("kind") if tok else None
    return [] if kind == "pruned" else [f"a pruned vocabulary said as {kind!r} ({tok and tok['summary']})"]


def subset_errors(doc: dict, model: dict) -> list[str]:
    """Where `alignment.subsets` contradicts what B kept of A (a derivation's `subsets` truth: the residual and
    FFN kinds, and per role and layer of B the A heads it kept, in B's order). Without that truth, only a claim
    that B's residual dimensions were relabelled or pruned is checked (none of the other derivations does it)."""
    said = (doc.get("alignment") or {}).get("subsets") or {}
    truth = model.get("subsets")
    errors = []
    if truth is None:
        residual = (said.get("residual") or {}).get("note")
        return [f"residual subset claimed where there is none: {residual}"] if residual else []
    for part in ("residual", "ffn"):
        got, want = (said.get(part) or {}).get("kind"), truth.get(part)
        if got != want:
            errors.append(f"{part} said as {got!r} ({(said.get(part) or {}).get('note')}), truth {want!r}")
    mapped = {r["role"]: r for r in (said.get("heads") or {}).get("layers", [])}
    for role, kept in (truth.get("heads") or {}).items():
        if role not in mapped:
            errors.append(f"{role} heads kept not mapped")
            continue
        for p in mapped[role]["pairs"]:
            if p["b_to_a"] != kept[str(p["b"])]:
                errors.append(f"{role} heads of B's layer {p['b']} said to be A's {p['b_to_a']}, truth {kept[str(p['b'])]}")
    for role in set(mapped) - set(truth.get("heads") or {}):
        errors.append(f"{role} heads said changed where they are not")
    return errors


def expert_errors(doc: dict, model: dict) -> list[str]:
    """Where `alignment.subsets.experts` contradicts where B's experts came from (a derivation's `experts` truth:
    {"from": "dense"} for upcycling, {"from": "experts", "map": {layer of B: [A's expert of each of B's]}}).
    Without that truth, any claim that B's experts are upcycled or reordered is an error."""
    said = ((doc.get("alignment") or {}).get("subsets") or {}).get("experts") or {}
    truth = model.get("experts")
    if truth is None:
        return [f"experts said {said['kind']} where they are not: {said.get('note')}"] \
            if said.get("kind") in ("upcycled", "reordered") else []
    if not said.get("layers"):
        return [f"experts from {truth['from']} not mapped ({said.get('note')})"]
    errors = []
    for lay in said["layers"]:
        want = (["ffn"] * len(lay["b_to_a"]) if truth["from"] == "dense" else truth["map"][str(lay["b"])])
        if lay["b_to_a"] != want:
            errors.append(f"experts of B's layer {lay['b']} said to come from {lay['b_to_a']}, truth {want}")
    return errors


def expert_truth(models: dict, name: str, ancestor: str) -> dict | None:
    """Where the experts of zoo model `name` come from, seen from `ancestor` (manifest entries hold it relative
    to their parent): the parent's truth, or, further up, "from dense" as long as every step keeps it so (the
    experts of anything derived from an upcycled model still hold the dense FFN)."""
    model = models[name]
    if not model.get("parents"):
        return None
    parent = model["parents"][0]
    if parent == ancestor:
        return model.get("experts")
    up = expert_truth(models, parent, ancestor)
    return up if up is not None and up["from"] == "dense" else None


def derivation_errors(doc: dict, truth: dict) -> list[str]:
    """Every check above against one derivation's truth (`zoo.realfamily.surgeries`)."""
    layout = {k: truth[k] for k in ("layer_map", "frozen_layers", "only_embeddings") if k in truth}
    return (explanation_errors(doc, **layout) + update_errors(doc, truth) + subset_errors(doc, truth)
            + expert_errors(doc, truth) + vocabulary_errors(doc, truth))
