"""An independent port of WIDER FACE's official Python evaluation: one detection at a time, as
the original loops, to hold the project's vectorised evaluator (and the commands that use it)
against."""

from __future__ import annotations

import numpy as np

from model.eval.split import WiderSplit


def official_ap(preds: dict[str, np.ndarray], split: WiderSplit) -> dict[str, float]:
    """AP per setting of ``{<event>/<stem>: x y w h score rows}``, the official way."""
    all_scores = np.concatenate([p[:, 4] for p in preds.values() if len(p)])
    low, high = all_scores.min(), all_scores.max()
    thresh_num = 1000
    aps = {}
    for setting in ("easy", "medium", "hard"):
        pr_curve = np.zeros((thresh_num, 2))
        count_face = 0
        for name in split.images:
            pred = preds.get(name.rsplit(".", 1)[0], np.zeros((0, 5))).copy()
            if len(pred):
                pred[:, 4] = (pred[:, 4] - low) / (high - low)
                pred = pred[np.argsort(-pred[:, 4], kind="stable")]
            gt = split.boxes[name].copy()
            keep = split.lists[setting][name]
            count_face += len(keep)
            if len(gt) == 0 or len(pred) == 0:
                continue
            ignore = np.zeros(len(gt))
            ignore[keep - 1] = 1
            p, g = pred.copy(), gt.copy()
            p[:, 2:4] += p[:, 0:2]
            g[:, 2:4] += g[:, 0:2]
            recall_list, proposal_list, pred_recall = (
                np.zeros(len(g)),
                np.ones(len(p)),
                np.zeros(len(p)),
            )
            for h in range(len(p)):
                overlaps = np.zeros(len(g))
                for k in range(len(g)):
                    iw = min(p[h, 2], g[k, 2]) - max(p[h, 0], g[k, 0]) + 1
                    ih = min(p[h, 3], g[k, 3]) - max(p[h, 1], g[k, 1]) + 1
                    if iw > 0 and ih > 0:
                        ua = (p[h, 2] - p[h, 0] + 1) * (p[h, 3] - p[h, 1] + 1)
                        ua += (g[k, 2] - g[k, 0] + 1) * (g[k, 3] - g[k, 1] + 1) - iw * ih
                        overlaps[k] = iw * ih / ua
                best = overlaps.argmax()
                if overlaps[best] >= 0.5:
                    if ignore[best] == 0:
                        recall_list[best] = -1
                        proposal_list[h] = -1
                    elif recall_list[best] == 0:
                        recall_list[best] = 1
                pred_recall[h] = (recall_list == 1).sum()
            for t in range(thresh_num):
                thresh = 1 - (t + 1) / thresh_num
                r = np.where(p[:, 4] >= thresh)[0]
                if len(r):
                    pr_curve[t] += [(proposal_list[: r[-1] + 1] == 1).sum(), pred_recall[r[-1]]]
        precision = pr_curve[:, 1] / np.maximum(pr_curve[:, 0], 1e-12)
        recall = pr_curve[:, 1] / count_face
        mrec, mpre = np.r_[0, recall, 1], np.r_[0, precision, 0]
        for i in range(len(mpre) - 1, 0, -1):
            mpre[i - 1] = max(mpre[i - 1], mpre[i])
        i = np.where(mrec[1:] != mrec[:-1])[0]
        aps[setting] = float(np.sum((mrec[i + 1] - mrec[i]) * mpre[i + 1]))
    return aps
