"""Literal, loop-based port of the published AVSBench evaluation (OpenNLPLab/AVSBench).

Mirrors, operation for operation and in torch:
- `avs_scripts/avs_s4/utils/utility.py` (identical in avs_ms3): `mask_iou`, `_eval_pr`,
  `Eval_Fmeasure`, and `utils/pyutils.py`: `AverageMeter`;
- the test loop of `avs_scripts/avs_s4/test.py` and `avs_scripts/avs_ms3/test.py`
  (`test_binary`): one DataLoader batch of `test_batch_size` videos (default 1) at a time,
  `mask_iou` and `Eval_Fmeasure` on its B*5 frames, each averaged over batches;
- `avs_scripts/avss/utils/compute_color_metrics.py`: `_batch_miou_fscore`,
  `calc_color_miou_fscore`, and the accumulation of `avs_scripts/avss/test.py` (`test_color`).

It is deliberately slow and plain: the ground truth that the vectorised
`inference.avs_metrics` is tested against, and the baseline of
`benchmarks/bench_avs_metrics.py`. Only for tests and benchmarks; do not optimise it.

Departures, none of which changes a number:
- `_eval_pr` builds its tensors on the device of the prediction instead of `.cuda()`
  (the published default `cuda_flag=True`); `Eval_Fmeasure` neither prints nor opens
  `measure_path/FMeasure.txt` (the published code opens it and closes it empty).
- avss/test.py unpacks three values, `_miou_pc, _fscore_pc, _cls_pc = calc_color_miou_fscore(...)`,
  from a function that returns four (the fourth, `vid_miou_list`, was added later and is
  unused), which raises ValueError as published; `test_color` takes the first three, the
  evident intent.
- Inputs are what the test loops hand over: logits (S4/MS3: (N, H, W); AVSS: (N, C, H, W)) and
  float 0/1 masks (S4/MS3) or int class maps (AVSS), batch by batch (`iter_batches`).
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence

import torch

# ---------------------------------------------------------------- avs_s4 / avs_ms3: utils/utility.py


def mask_iou(pred, target, eps=1e-7, size_average=True):
    """Mean IoU of the N masks of one batch (published `mask_iou`; `size_average` unused there too).

    pred: (N, H, W) logits; target: (N, H, W) float 0/1. A frame whose target is empty scores
    the pixels where prediction and target are both background over H*W.
    """
    assert len(pred.shape) == 3 and pred.shape == target.shape

    N = pred.size(0)
    num_pixels = pred.size(-1) * pred.size(-2)
    no_obj_flag = target.sum(2).sum(1) == 0

    temp_pred = torch.sigmoid(pred)
    pred = (temp_pred > 0.5).int()
    inter = (pred * target).sum(2).sum(1)
    union = torch.max(pred, target).sum(2).sum(1)

    inter_no_obj = ((1 - target) * (1 - pred)).sum(2).sum(1)
    inter[no_obj_flag] = inter_no_obj[no_obj_flag]
    union[no_obj_flag] = num_pixels

    iou = torch.sum(inter / (union + eps)) / N
    return iou


def _eval_pr(y_pred, y, num, cuda_flag=True):
    """Precision and recall of one frame at `num` thresholds linspace(0, 1 - 1e-10, num)."""
    device = y_pred.device  # published: .cuda() when cuda_flag, else CPU
    prec, recall = torch.zeros(num, device=device), torch.zeros(num, device=device)
    thlist = torch.linspace(0, 1 - 1e-10, num, device=device)
    for i in range(num):
        y_temp = (y_pred >= thlist[i]).float()
        tp = (y_temp * y).sum()
        prec[i], recall[i] = tp / (y_temp.sum() + 1e-20), tp / (y.sum() + 1e-20)
    return prec, recall


def Eval_Fmeasure(pred, gt, measure_path=None, pr_num=255):  # noqa: N802 (published name)
    """Max over thresholds of the per-threshold F (beta^2 = 0.3) averaged over the batch's frames.

    pred: (N, H, W) logits; gt: (N, H, W) float 0/1. Frames with an all-zero gt are skipped;
    a batch without any other frame returns 0.0 (the `torch.zeros(pr_num)` it starts from).
    """
    pred = torch.sigmoid(pred)
    N = pred.size(0)
    beta2 = 0.3
    avg_f, img_num = 0.0, 0
    score = torch.zeros(pr_num)
    for img_id in range(N):
        # examples with totally black GTs are out of consideration
        if torch.mean(gt[img_id]) == 0.0:
            continue
        prec, recall = _eval_pr(pred[img_id], gt[img_id], pr_num)
        f_score = (1 + beta2) * prec * recall / (beta2 * prec + recall)
        f_score[f_score != f_score] = 0  # NaN (0/0 where tp = 0) -> 0
        avg_f += f_score
        img_num += 1
        score = avg_f / img_num
    return score.max().item()


# ---------------------------------------------------------------- utils/pyutils.py


class AverageMeter:
    """Running sums per key; `pop` returns the mean of what was added and resets (published)."""

    def __init__(self, *keys):
        self.__data = dict()
        for k in keys:
            self.__data[k] = [0.0, 0]

    def add(self, dict):  # noqa: A002 (published signature)
        for k, v in dict.items():
            self.__data[k][0] += v
            self.__data[k][1] += 1

    def get(self, *keys):
        if len(keys) == 1:
            return self.__data[keys[0]][0] / self.__data[keys[0]][1]
        return tuple(self.__data[k][0] / self.__data[k][1] for k in keys)

    def pop(self, key=None):
        if key is None:
            for k in self.__data.keys():
                self.__data[k] = [0.0, 0]
        else:
            v = self.get(key)
            self.__data[key] = [0.0, 0]
            return v


# ---------------------------------------------------------------- avss: utils/compute_color_metrics.py


def _batch_miou_fscore(output, target, nclass, T, beta2=0.3):
    """Per-class sums over the batch's frames of IoU and F, and per-class frame counts.

    output: (BF, C, H, W); target: (BF, H, W) class indices. Classes are shifted by +1 and
    counted with histc(bins=nclass, min=1, max=nclass), so 0 (a wrong pixel in `intersection`)
    falls outside. `cls_count[c]` counts the frames where class c is predicted or true.
    """
    mini = 1
    maxi = nclass
    nbins = nclass
    predict = torch.argmax(output, 1) + 1
    target = target.float() + 1
    predict = predict.float() * (target > 0).float()  # [BF, H, W]
    intersection = predict * (predict == target).float()  # [BF, H, W]
    batch_size = target.shape[0] // T  # noqa: F841 (computed and unused, as published)
    cls_count = torch.zeros(nclass).float()
    ious = torch.zeros(nclass).float()
    fscores = torch.zeros(nclass).float()

    vid_miou_list = []
    for i in range(target.shape[0]):
        area_inter = torch.histc(intersection[i].cpu(), bins=nbins, min=mini, max=maxi)  # TP
        area_pred = torch.histc(predict[i].cpu(), bins=nbins, min=mini, max=maxi)  # TP + FP
        area_lab = torch.histc(target[i].cpu(), bins=nbins, min=mini, max=maxi)  # TP + FN
        area_union = area_pred + area_lab - area_inter
        assert torch.sum(area_inter > area_union).item() == 0, "Intersection area should be smaller than Union area"
        iou = 1.0 * area_inter.float() / (2.220446049250313e-16 + area_union.float())
        ious += iou
        cls_count[torch.nonzero(area_union).squeeze(-1)] += 1

        precision = area_inter / area_pred
        recall = area_inter / area_lab
        fscore = (1 + beta2) * precision * recall / (beta2 * precision + recall)
        fscore[torch.isnan(fscore)] = 0.0
        fscores += fscore

        vid_miou_list.append(torch.sum(iou) / (torch.sum(iou != 0).float()))

    return ious, fscores, cls_count, vid_miou_list


def calc_color_miou_fscore(pred, target, T=10):
    """pred: (BF, C, H, W) logits, C classes including background; target: (BF, H, W)."""
    nclass = pred.shape[1]
    pred = torch.softmax(pred, dim=1)  # [BF, C, H, W]
    miou, fscore, cls_count, vid_miou_list = _batch_miou_fscore(pred, target, nclass, T)
    return miou, fscore, cls_count, vid_miou_list


# ---------------------------------------------------------------- the test loops


def iter_batches(
    outputs,
    targets,
    frames_per_video: Sequence[int],
    batch_videos: int = 1,
    transform: Callable | None = None,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """(output, target) per DataLoader batch of `batch_videos` consecutive videos (shuffle=False).

    outputs/targets hold all frames in video order; a batch is the frames of its videos, in
    order, as `view(B*frame, ...)` lays them out. `transform(output_slice)` can make the
    batch's model output from what is stored (e.g. one-hot logits from class maps).
    """
    starts = [0]
    for n in frames_per_video:
        starts.append(starts[-1] + int(n))
    for first in range(0, len(frames_per_video), batch_videos):
        last = min(first + batch_videos, len(frames_per_video))
        out = outputs[starts[first]:starts[last]]
        yield (transform(out) if transform is not None else out), targets[starts[first]:starts[last]]


def test_binary(batches: Iterable[tuple[torch.Tensor, torch.Tensor]]) -> tuple[float, float]:
    """avs_s4/test.py and avs_ms3/test.py: (miou, F_score) as fractions, each a mean over batches.

    batches: (logits (N, H, W), mask (N, H, W) float 0/1) per batch. The mIoU sum is a float32
    tensor (0.0 + tensor), the F sum a Python float (`Eval_Fmeasure` returns `.item()`).
    """
    avg_meter_miou = AverageMeter("miou")
    avg_meter_F = AverageMeter("F_score")
    with torch.no_grad():
        for output, mask in batches:
            miou = mask_iou(output, mask)
            avg_meter_miou.add({"miou": miou})
            F_score = Eval_Fmeasure(output, mask, None)
            avg_meter_F.add({"F_score": F_score})
        miou = avg_meter_miou.pop("miou")
        F_score = avg_meter_F.pop("F_score")
    return miou.item(), F_score


def test_color(batches: Iterable[tuple[torch.Tensor, torch.Tensor]], n_classes: int = 71) -> tuple[float, float]:
    """avss/test.py: (miou, f_score) as fractions over all `n_classes` classes.

    batches: (logits (BF, C, H, W), class map (BF, H, W)) per batch. Per-class sums and frame
    counts are accumulated over the whole split; class mean = sum / count, 0 where the class
    never occurs (NaN -> 0); the result is the plain mean over all classes.
    """
    miou_pc = torch.zeros(n_classes)
    Fs_pc = torch.zeros(n_classes)
    cls_pc = torch.zeros(n_classes)
    with torch.no_grad():
        for output, mask in batches:
            _miou_pc, _fscore_pc, _cls_pc = calc_color_miou_fscore(output, mask)[:3]
            miou_pc += _miou_pc
            cls_pc += _cls_pc
            Fs_pc += _fscore_pc
        miou_pc = miou_pc / cls_pc
        miou_pc[torch.isnan(miou_pc)] = 0
        miou = torch.mean(miou_pc).item()
        f_score_pc = Fs_pc / cls_pc
        f_score_pc[torch.isnan(f_score_pc)] = 0
        f_score = torch.mean(f_score_pc).item()
    return miou, f_score


def one_hot_logits(class_maps: torch.Tensor, n_classes: int = 71) -> torch.Tensor:
    """(N, H, W) class indices -> (N, C, H, W) float32 logits (10 on the class, 0 elsewhere).

    softmax then argmax of these gives back the class map exactly: how tests and benchmarks
    feed stored class maps to `calc_color_miou_fscore`.
    """
    x = torch.as_tensor(class_maps).long()
    out = torch.zeros((x.shape[0], n_classes) + tuple(x.shape[1:]), dtype=torch.float32)
    out.scatter_(1, x.unsqueeze(1), 10.0)
    return out
