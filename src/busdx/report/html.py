"""The model card as one HTML string: inline CSS, images (PNG, and DVC's plots as SVG) as data
URIs, nothing external.

A Content-Security-Policy allows only inline styles and data: images, so a browser refuses
(and reports) any external resource. Every string that comes from a file goes through
``esc``; only ``Markup`` built here is inserted unescaped.
"""
from __future__ import annotations

import html
import math
from string import Template

from busdx.report.collect import split_headline

# (id, heading) of each top-level section, in page order (tests check them).
SECTIONS = [
    ("intended-use", "Intended use"),
    ("versions", "Versions"),
    ("dataset", "Dataset"),
    ("audit", "Audit"),
    ("split", "Split"),
    ("headline", "Headline"),
    ("models", "All models"),
    ("references", "Reference numbers"),
    ("curves", "Classification curves"),
    ("segmentation", "Segmentation"),
    ("explain", "Explanations (CAM)"),
    ("timings", "Run times"),
]
NOT_AVAILABLE = "not available"

CLS_COLS = [("accuracy", "accuracy"), ("balanced_accuracy", "balanced acc."),
            ("macro_f1", "macro F1"), ("auc_malignant", "AUC malignant"), ("ece", "ECE"),
            ("sensitivity_at_specificity", "sens. at spec.")]
SEG_COLS = [("dice", "Dice"), ("iou", "IoU"), ("hd95", "HD95 (px)"),
            ("normal_fp_rate", "FP rate, normals")]
DIGITS = {"hd95": 1, "hd95_median": 1}

AUDIT_LABELS = [
    ("images", "images audited"),
    ("duplicate_groups", "duplicate groups (exact or near copies, 2+ images)"),
    ("images_in_groups", "images in a duplicate group"),
    ("exact_pairs", "exact duplicate pairs"),
    ("near_pairs", "near-duplicate pairs (re-cropped, re-scaled, re-annotated copies)"),
    ("conflict_groups", "conflicting groups (one lesion filed under several labels)"),
    ("conflict_images", "images in conflicting groups"),
    ("excluded_images", "images excluded from the grouped split"),
    ("colour_marks", "images with colour marks"),
    ("annotations", "images with burned-in text or calipers"),
    ("flagged", "images with any flag"),
]
SPLIT_LABELS = [
    ("images", "images"), ("excluded", "excluded (conflicts)"), ("train", "train"),
    ("test", "test"), ("test_per_class", "test per class"),
    ("test_images_with_duplicate_in_train", "test images with a duplicate in train (leakage)"),
    ("max_class_ratio_gap", "largest class-share gap, test vs train"),
]

CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1d232a;
margin:0;background:#f6f7f9}
main{max-width:1180px;margin:0 auto;padding:8px 24px 48px;background:#fff}
h1{font-size:26px;margin:18px 0 4px}h2{font-size:20px;margin:34px 0 8px;padding-top:8px;
border-top:2px solid #dde2e8}h3{font-size:16px;margin:20px 0 6px}
nav{font-size:13px;margin:6px 0 10px}nav a{margin-right:12px;color:#1f5fa8}
table{border-collapse:collapse;margin:6px 0 12px;font-size:13px}
th,td{border:1px solid #d5dbe1;padding:3px 8px;text-align:left;vertical-align:top}
th{background:#eef1f5}td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
.ci{color:#5c6670;font-size:11px}.na{color:#8a5a00;font-style:italic}
.notice{border:2px solid #b3261e;background:#fdecea;padding:10px 14px;border-radius:6px;
font-weight:600}.muted{color:#5c6670}.tag{display:inline-block;background:#e3ecf7;
border-radius:3px;padding:0 5px;margin:0 2px;font-size:11px}.warn{background:#fff4d6}
img{max-width:100%;height:auto}figure{margin:8px 0 16px}figcaption{font-size:12px;color:#5c6670}
.sheets{display:flex;gap:10px;overflow-x:auto;max-height:820px;overflow-y:auto;
border:1px solid #d5dbe1;padding:6px}.sheets figure{margin:0;flex:none}
.sheets img{max-width:none}code{font-size:12px;word-break:break-all}
.charts{display:flex;flex-wrap:wrap;gap:8px 28px;align-items:flex-start}
.charts figure{margin:0}
"""

# Nothing but inline styles and data: images: a browser blocks (and reports) anything else.
CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"
PAGE = Template("""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="$csp">
<link rel="icon" href="data:,">
<title>$title</title>
<style>$css</style>
</head>
<body>
<main>
<h1>$title</h1>
<nav>$nav</nav>
$body
</main>
</body>
</html>
""")


class Markup(str):
    """HTML built here: inserted as is."""


def esc(v) -> Markup:
    return v if isinstance(v, Markup) else Markup(html.escape(str(v), quote=True))


def join(parts) -> Markup:
    return Markup("".join(esc(p) for p in parts))


def fmt(v, digits: int = 3) -> str:
    if v is None:
        return "–"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return f"{v:.{digits}f}" if math.isfinite(v) else "–"
    if isinstance(v, dict):
        return ", ".join(f"{k} {fmt(x, digits)}" for k, x in sorted(v.items()))
    if isinstance(v, list):
        return ", ".join(fmt(x, digits) for x in v)
    return str(v)


def num(v, ci: dict | None = None, digits: int = 3) -> Markup:
    """A number cell with its CI below it."""
    s = esc(fmt(v, digits))
    if isinstance(ci, dict) and ci.get("lo") is not None and ci.get("hi") is not None:
        s = Markup(f'{s}<br><span class="ci">[{esc(fmt(ci["lo"], digits))}, '
                   f'{esc(fmt(ci["hi"], digits))}]</span>')
    return s


class NumCell(Markup):
    """A right-aligned table cell (content already escaped)."""


def Num(v) -> NumCell:  # noqa: N802 (reads as a cell type in the tables)
    return NumCell(esc(v))


def table(headers: list, rows: list[list], row_class: list[str] | None = None) -> Markup:
    head = join(Markup(f"<th>{esc(h)}</th>") for h in headers)
    body = []
    for i, row in enumerate(rows):
        cls = f' class="{esc(row_class[i])}"' if row_class and row_class[i] else ""
        cells = join(Markup(f'<td class="num">{c}</td>') if isinstance(c, NumCell)
                     else Markup(f"<td>{esc(c)}</td>") for c in row)
        body.append(Markup(f"<tr{cls}>{cells}</tr>"))
    return Markup(f"<table><thead><tr>{head}</tr></thead><tbody>{join(body)}</tbody></table>")


def na(what: str) -> Markup:
    return Markup(f'<p class="na">{NOT_AVAILABLE}: {esc(what)}</p>')


def p(text, cls: str = "") -> Markup:
    c = f' class="{cls}"' if cls else ""
    return Markup(f"<p{c}>{esc(text)}</p>")


def figure(uri: str, caption: str, width: int | None = None) -> Markup:
    w = f' width="{int(width)}"' if width else ""
    return Markup(f'<figure><img src="{esc(uri)}" alt="{esc(caption)}"{w}>'
                  f"<figcaption>{esc(caption)}</figcaption></figure>")


def section(sid: str, body) -> Markup:
    title = dict(SECTIONS)[sid]
    return Markup(f'<section id="{sid}"><h2>{esc(title)}</h2>\n{join(body)}\n</section>\n')


# --- sections -------------------------------------------------------------------------


def s_intended_use(d: dict) -> Markup:
    return section("intended-use", [
        Markup('<p class="notice">Research use only. Not a medical device: not for diagnosis, '
               "screening or any clinical decision.</p>"),
        p(d.get("intended_use") or ""),
    ])


def s_versions(d: dict) -> Markup:
    v = d["versions"]
    g = v["git"]
    if g.get("commit") is None:
        commit = "not a git repository (or git unavailable)"
    elif g.get("dirty"):
        changed = g.get("changed") or []
        more = f" and {len(changed) - 5} more" if len(changed) > 5 else ""
        commit = (f"{g['commit']} (dirty: {len(changed)} path(s) differ from the commit, e.g. "
                  f"{', '.join(changed[:5])}{more})")
    else:
        commit = f"{g['commit']} (clean)"
    data = v["data"]
    data_s = (f"{data['algorithm']} {data['hash']} (from {data['from']}; source "
              f"{data['source'] or 'unknown'})" if data["hash"] else
              f"{NOT_AVAILABLE} (no checksum in metrics/download.json or data/raw/archive.json)")
    rows = [["busdx", v["busdx"]], ["git commit", commit],
            ["params.yaml sha256", v["params_sha256"] or NOT_AVAILABLE],
            [f"data ({d.get('dataset_name', 'BUSI archive')})", data_s]]
    rows += [[k, x or "not installed"] for k, x in v["libraries"].items()]
    return section("versions", [
        table(["what", "version"], [[a, Markup(f"<code>{esc(b)}</code>")] for a, b in rows]),
        p("'dirty' ignores pipeline outputs (dvc.lock, metrics/, plots/, reports/), which a "
          "run rewrites before they are committed.", "muted"),
    ])


def s_dataset(d: dict) -> Markup:
    dl, mm = d["download"], d["merge_masks"]
    body = []
    if dl:
        per = dl.get("per_class") or {}
        rows = [[c, Num(fmt(n))] for c, n in sorted(per.items())]
        rows.append(["total", Num(fmt(dl.get("images")))])
        body += [Markup("<h3>Images per class (metrics/download.json)</h3>"),
                 table(["class", "images"], rows),
                 p(f"{fmt(dl.get('masks'))} mask files; {fmt(dl.get('multi_mask_images'))} "
                   "images have more than one mask (merged into one).")]
    else:
        body.append(na("metrics/download.json"))
    if mm:
        la = mm.get("lesion_area") or {}
        rows = [["images with an empty (normal) mask", Num(fmt(mm.get("empty_masks")))],
                ["lesion images with an empty mask",
                 Num(fmt(mm.get("lesion_images_with_empty_mask")))],
                ["normal images with a non-empty mask", Num(fmt(mm.get("normal_masks_not_empty")))],
                ["images with several masks (merged)", Num(fmt(mm.get("multi_mask_images")))],
                ["lesion area, share of the image: median [min, max]",
                 Num(f"{fmt(la.get('fraction_median'))} [{fmt(la.get('fraction_min'))}, "
                     f"{fmt(la.get('fraction_max'))}]")]]
        body += [Markup("<h3>Masks (metrics/merge_masks.json)</h3>"), table(["", ""], rows)]
    else:
        body.append(na("metrics/merge_masks.json"))
    return section("dataset", body)


def s_audit(d: dict, sheets: list) -> Markup:
    a = d["audit"]
    body = []
    if a:
        known = [k for k, _ in AUDIT_LABELS]
        rows = [[label, Num(fmt(a.get(k)))] for k, label in AUDIT_LABELS if k in a]
        rows += [[k, Num(fmt(a[k]))] for k in sorted(a) if k not in known]
        body += [table(["finding", "count"], rows),
                 p("Duplicate groups are kept together on one side of the grouped split; "
                   "conflicting groups are excluded from it (audit.conflict_policy).")]
    else:
        body.append(na("metrics/audit.json"))
    if sheets:
        body.append(Markup("<h3>Duplicate groups (contact sheets, plots/audit)</h3>"))
        figs = [Markup(f'<figure><img src="{esc(uri)}" alt="{esc(name)}" width="{w}" '
                       f'height="{h}"><figcaption>{esc(name)}</figcaption></figure>')
                for name, uri, (w, h) in sheets]
        body.append(Markup(f'<div class="sheets">{join(figs)}</div>'))
    else:
        body.append(na("duplicate contact sheets (plots/audit/*.png)"))
    return section("audit", body)


def s_split(d: dict) -> Markup:
    s = d["split"]
    if not s:
        return section("split", [na("metrics/split.json")])
    protos = sorted(k for k, v in s.items() if isinstance(v, dict))
    names = {"grouped": "grouped (duplicate-aware, ours)", "peer": "peer (random, leaky)"}
    keys = [k for k, _ in SPLIT_LABELS]
    extra = sorted({k for pr in protos for k in s[pr]} - set(keys))
    rows, cls = [], []
    for k, label in [*SPLIT_LABELS, *((k, k) for k in extra)]:
        if not any(k in s[pr] for pr in protos):
            continue
        rows.append([label, *[Num(fmt(s[pr].get(k), 4)) for pr in protos]])
        cls.append("warn" if k == "test_images_with_duplicate_in_train" else "")
    return section("split", [
        table(["", *[names.get(pr, pr) for pr in protos]], rows, cls),
        p("The peers' random split puts copies of test images in train; figures under it are "
          "inflated and shown only to compare with published numbers."),
    ])


def _metric_row(values: dict, ci: dict, cols) -> list:
    return [Num(num(values.get(k), ci.get(k), DIGITS.get(k, 3))) for k, _ in cols]


def headline_tables(flat: dict | None, chosen: dict, d: dict, what: str) -> list:
    """Classification and segmentation tables of a flat headline; ``chosen``: how each key's
    model was picked (metrics/headline_models.json)."""
    if not flat:
        return [na(what)]
    groups = {k: v for k, v in split_headline(flat).items() if k != "explain"}
    out = []
    for label, cols, test in (("Classification", CLS_COLS, "accuracy"),
                              ("Segmentation", SEG_COLS, "dice")):
        rows = []
        for key, vals in groups.items():
            if test not in vals:
                continue
            model = vals.get("model")
            ci = ((d["all_metrics"].get(model) or {}).get("ci") or {}) if model else {}
            c = chosen.get(key) or {}
            by = c.get("selected_by", "")
            if by == "cv_score":
                by = f"best CV {c.get('cv_metric', '')} of {len(c.get('candidates') or {})}"
            rows.append([key, model or "–", by or "–", *_metric_row(vals, ci, cols)])
        if rows:
            out += [Markup(f"<h4>{esc(label)}</h4>"),
                    table(["key", "model", "chosen by", *[h for _, h in cols]], rows)]
    return out


def s_headline(d: dict) -> Markup:
    test = d.get("test_description", "duplicate-aware held-out test")
    body = [p("metrics/headline.json: one model per task, chosen by cross-validation score "
              f"(never by test metrics) or fixed in params. Test set: {test}; 95 % bootstrap "
              "CIs below each value."),
            Markup(f"<h3>Default protocol (grouped, {esc(test)})</h3>")]
    chosen = d["headline_models"] or {}
    body += headline_tables(d["headline"], chosen, d, "metrics/headline.json")
    ex = {k: v for k, v in d["headline"].items() if k.startswith("explain.")}
    if ex:
        body.append(p("Explanations: " + ", ".join(f"{k} {fmt(v)}" for k, v in sorted(ex.items()))))
    body.append(Markup("<h3>Peer protocol (random split, leaky: for comparison only)</h3>"))
    body += headline_tables(d["headline_peer"], chosen.get("peer") or {}, d,
                            "metrics/headline_peer.json")
    if any(k.startswith("classical_oracle.") for k in d["headline"]):
        body.append(p("classical_oracle uses descriptors of the ground-truth masks: an upper "
                      "bound, not a usable model.", "muted"))
    return section("headline", body)


def model_tables(d: dict, names: list[str], headline: dict | None) -> list:
    tags: dict[str, list[str]] = {}
    for k, v in sorted((headline or {}).items()):
        if k.endswith(".model") and isinstance(v, str):
            tags.setdefault(v, []).append(k[:-len(".model")])
    out = []
    missing = [m for m in names if not d["models"].get(m)]
    for label, sec, cols in (("Classification", "classification", CLS_COLS),
                             ("Segmentation", "segmentation", SEG_COLS)):
        rows = []
        for m in names:
            r = d["models"].get(m)
            if not r or not r.get(sec):
                continue
            tag = join(Markup(f'<span class="tag">{esc(t)}</span>') for t in tags.get(m, []))
            if "oracle" in m:
                tag = join([tag, Markup('<span class="tag">upper bound: ground-truth masks'
                                        "</span>")])
            n = (r.get("n") or {}).get(sec)
            rows.append([Markup(f"{esc(m)} {tag}"), Num(fmt(n)),
                         *_metric_row(r[sec], r.get("ci") or {}, cols)])
        if rows:
            out += [Markup(f"<h4>{esc(label)}</h4>"),
                    table(["model", "n", *[h for _, h in cols]], rows)]
    if missing:
        out.append(na("metrics for " + ", ".join(missing)))
    return out


def s_models(d: dict) -> Markup:
    peer = set(d["peer_models"])
    default = [m for m in d["models"] if m not in peer]
    peers = [m for m in d["models"] if m in peer]
    body = [p("Every evaluated model, metrics/<model>.json. Tags name the headline keys a model "
              "fills. 95 % bootstrap CIs below each value where computed.")]
    test = d.get("test_description", "duplicate-aware held-out test")
    body.append(Markup(f"<h3>Default protocol (grouped, {esc(test)})</h3>"))
    body += model_tables(d, default, d["headline"]) if default else [na("models")]
    body.append(Markup("<h3>Peer protocol (random split ignoring duplicates: leaky)</h3>"))
    body += (model_tables(d, peers, d["headline_peer"]) if peers
             else [na("no models trained under the peers' split")])
    return section("models", body)


def s_references(d: dict) -> Markup:
    refs = d["references"]
    if not refs:
        return section("references", [na("report.references in params.yaml is empty")])

    def ours(vals):
        return Num(" / ".join(fmt(v) for v in vals)) if vals and any(
            v is not None for v in vals) else "–"
    rows, cls = [], []
    for r in refs:
        comp = "yes" if r["comparable"] else "no"
        rows.append([r["source"], r["model"], r["metric"], Num(r["value"]), r["split"], comp,
                     ours(r["ours_values"]), ours(r["ours_peer_values"])])
        cls.append("" if r["comparable"] else "warn")
    return section("references", [
        p("Figures from the project's seed notebooks and from the literature, beside ours. "
          "They are not re-computed here; most come from random splits that put near-copies "
          "of test images in train (see Split), which inflates them. Shaded rows are not "
          f"comparable with our {d.get('test_description', 'duplicate-aware held-out test')}; "
          "compare them with the peer "
          "column at most."),
        table(["source", "model", "metric", "reported", "their split", "comparable",
               "ours (grouped)", "ours (peer split)"], rows, cls),
    ])


def _is_dice(name: str) -> bool:
    return "dice" in name.lower()


def plot_figures(figs: dict, pick) -> Markup | None:
    """The DVC plots (SVG) whose name passes ``pick``, side by side; None when there are none."""
    items = [(n, uri, size) for n, uri, size in figs.get("dvc_plots") or [] if pick(n)]
    if not items:
        return None
    return Markup('<div class="charts">' + join(
        figure(uri, f"dvc plot {n}", w or None) for n, uri, (w, _) in items) + "</div>")


def _missing_plots(figs: dict, pick) -> list:
    return [na(f"plot {m}") for m in figs.get("dvc_plots_missing", [])
            if pick(m.partition(":")[0])]


def s_curves(d: dict, figs: dict) -> Markup:
    dvcfile = d.get("dvcfile", "dvc.yaml")
    chosen = ", ".join(f"{k}: {m}" for m, k in d["curves"].items()) or "none"
    body = [p(f"The pipeline's DVC plots ({dvcfile}, plots:), drawn from the workspace's "
              "plots/<model>/*.csv exactly as `dvc plots show` draws them, rendered offline to "
              f"SVG (vl-convert; each chart's title and legend say what it shows). Headline "
              f"models: {chosen}.")]
    plotted = d.get("plotted_models")
    unplotted = [f"{m} ({k})" for m, k in d["curves"].items()
                 if plotted is not None and m not in plotted]
    if unplotted:
        body.append(p(f"Not in {dvcfile}'s plots (so not charted): " + ", ".join(unplotted)
                      + ". Add its plots/<model>/ files to the plot definitions.", "na"))
    if figs.get("dvc_plots") is None:
        return section("curves", body + [na(f"DVC plots ({dvcfile} not found)")])
    curves = plot_figures(figs, lambda n: not _is_dice(n) and "confusion" not in n.lower())
    confusion = plot_figures(figs, lambda n: "confusion" in n.lower())
    body.append(curves or na(f"ROC / PR / calibration plots in {dvcfile}"))
    body.append(Markup("<h3>Confusion matrices</h3>"))
    body.append(confusion or na(f"confusion plots in {dvcfile}"))
    body += _missing_plots(figs, lambda n: not _is_dice(n))
    return section("curves", body)


def s_segmentation(d: dict, figs: dict) -> Markup:
    dice = plot_figures(figs, _is_dice)
    body = [dice or na(f"Dice histograms (plots named *dice* in {d.get('dvcfile', 'dvc.yaml')})")]
    body += _missing_plots(figs, _is_dice)
    body.append(Markup("<h3>Overlays: best, median and worst Dice</h3>"))
    body.append(p("Ground-truth outline green, prediction red, both yellow.", "muted"))
    for m, v in d["seg"].items():
        uri, (w, _) = figs.get("overlays", {}).get(m, (None, (0, 0)))
        # small panels (128 px crops): shown twice as large
        body.append(figure(uri, f"{v['key']}: {m} (plots/{m}/overlays.png)", 2 * w) if uri
                    else na(f"plots/{m}/overlays.png"))
    if not d["seg"]:
        body.append(na("segmentation models in the headline"))
    return section("segmentation", body)


def s_explain(d: dict, figs: dict) -> Markup:
    e = d["explain"]
    body = []
    if e:
        body.append(p(f"Method {fmt(e.get('method'))}, class explained: {fmt(e.get('target'))}, "
                      f"lesion dilated by {fmt(e.get('dilate_px'))} px. Headline model "
                      f"{fmt(e.get('model'))}: CAM energy in lesion "
                      f"{fmt(e.get('cam_energy_in_lesion'))}, pointing game "
                      f"{fmt(e.get('pointing_game'))}. Chance level of the energy is the lesion's "
                      "share of the image."))
        rows = []
        for m, s in sorted((e.get("models") or {}).items()):
            for g in ("overall", "benign", "malignant"):
                x = (s or {}).get(g) or {}
                if not x:
                    continue
                rows.append([m, g, Num(fmt(x.get("n"))), Num(fmt(x.get("n_flat"))),
                             Num(num(x.get("cam_energy_in_lesion"),
                                     x.get("cam_energy_in_lesion_ci"))),
                             Num(num(x.get("pointing_game"), x.get("pointing_game_ci"))),
                             Num(fmt(x.get("lesion_area_share")))])
        if rows:
            body.append(table(["model", "group", "n", "flat CAMs", "CAM energy in lesion",
                               "pointing game", "lesion area share (chance)"], rows))
    else:
        body.append(na("CAM metrics (metrics/explain.json; run the explain stage)"))
    if figs.get("explain"):
        body.append(Markup("<h3>CAM galleries (plots/explain)</h3>"))
        body += [figure(uri, name) for name, uri, _ in figs["explain"]]
    else:
        body.append(na("CAM galleries (plots/explain/*.png)"))
    return section("explain", body)


def _wall(t: dict):
    for k in ("total_time_s", "time_s"):
        v = t.get(k)
        if isinstance(v, (int, float)):
            return v
        if isinstance(v, dict) and isinstance(v.get("total"), (int, float)):
            return v["total"]
    return None


def _flat(d: dict, prefix: str = "") -> list[tuple[str, object]]:
    out = []
    for k in sorted(d):
        v = d[k]
        if isinstance(v, dict):
            out += _flat(v, f"{prefix}{k}.")
        elif not isinstance(v, list):
            out.append((f"{prefix}{k}", v))
    return out


def s_timings(d: dict) -> Markup:
    t = d["timings"]
    if not t:
        return section("timings", [na("data/timings/*.json")])
    rows = []
    for name, x in t.items():
        x = x or {}
        skip = {"total_time_s", "time_s", "time_s.total", "model"}
        details = "; ".join(f"{k} {fmt(v, 2)}" for k, v in _flat(x) if k not in skip)
        rows.append([name, Num(fmt(_wall(x), 1)), details])
    return section("timings", [
        p("Wall times of the last run (data/timings; they vary run to run and with machine "
          "load). Deep models: training throughput and inference time per test image."),
        table(["stage / model", "wall time (s)", "details"], rows),
    ])


def render(d: dict, figs: dict) -> str:
    body = [
        s_intended_use(d), s_versions(d), s_dataset(d), s_audit(d, figs.get("audit_sheets", [])),
        s_split(d), s_headline(d), s_models(d), s_references(d), s_curves(d, figs),
        s_segmentation(d, figs), s_explain(d, figs), s_timings(d),
    ]
    nav = join(Markup(f'<a href="#{sid}">{esc(title)}</a>') for sid, title in SECTIONS)
    return PAGE.substitute(title=esc(d["title"]), css=CSS.strip(), csp=CSP, nav=nav,
                           body=join(body))
