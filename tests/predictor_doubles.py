"""Test doubles for PromptPredictor shared by the tests of the click, propagation and image-shape paths: they
answer known masks without a network, so the tests see where the core put the prompts."""

from __future__ import annotations

import numpy as np
import torch

from medicosam_app.model.predictor import ImageEmbedding, MaskPrediction


class RecordingPredictorDouble:
    """Test double for PromptPredictor: records what it is given, answers a 3x3 square at the first point."""

    def __init__(self):
        self.encoded = []
        self.calls = []

    def encode_batch(self, images, between_blocks=None):
        self.encoded.extend(images)
        return [ImageEmbedding(features=torch.zeros(1, 1, 1, 1), original_size=rgb.shape[:2]) for rgb in images]

    def predict(self, embedding, points_xy=None, point_labels=None, box_xyxy=None, mask_logits=None, multimask=None):
        self.calls.append({"points": points_xy, "labels": point_labels, "box": box_xyxy, "mask_logits": mask_logits})
        mask = np.zeros(embedding.original_size, dtype=bool)
        x, y = (int(v) for v in points_xy[0]) if len(points_xy) else (int(box_xyxy[0]), int(box_xyxy[1]))
        mask[max(y - 1, 0) : y + 2, max(x - 1, 0) : x + 2] = True
        return MaskPrediction(mask=mask, low_res_logits=torch.full((1, 256, 256), float(len(self.calls))), predicted_iou=0.9)


class SquarePredictorDouble:
    """Test double for PromptPredictor: a 7x7 square around the first point, or around the box's centre."""

    def __init__(self):
        self.predicted = 0

    def encode_batch(self, images, between_blocks=None):
        return [ImageEmbedding(features=torch.zeros(1, 1, 1, 1), original_size=rgb.shape[:2]) for rgb in images]

    def predict(self, embedding, points_xy=None, point_labels=None, box_xyxy=None, mask_logits=None, multimask=None):
        self.predicted += 1
        if len(points_xy):
            x, y = points_xy[0]
        else:
            x, y = (box_xyxy[0] + box_xyxy[2]) / 2, (box_xyxy[1] + box_xyxy[3]) / 2
        mask = np.zeros(embedding.original_size, dtype=bool)
        mask[max(int(y) - 3, 0) : int(y) + 4, max(int(x) - 3, 0) : int(x) + 4] = True
        return MaskPrediction(mask=mask, low_res_logits=torch.zeros(1, 256, 256), predicted_iou=0.9)
