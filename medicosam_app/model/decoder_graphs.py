"""The prompt encoder and mask decoder replayed as CUDA graphs, one per prompt shape, where that is faster.

A warm click is one decoder pass: a few milliseconds of GPU work in some hundred kernel launches, so on a GPU the
launches, not the arithmetic, set its time. A CUDA graph records the launches of one shape of prompt (so many
points, a box or not, a mask prompt or not, one mask or three) once and replays them in one call. The first
click of each shape captures its graph (into static input buffers) and adopts it only if its answer equals the
eager decoder's (within 1e-3 on the logits) and its replay is faster; otherwise that shape stays eager. At most
``max_graphs`` shapes are kept (a graph holds its own memory pool). One lock per graph: two clicks of one shape
replay in turn, since they share its buffers. ``/info`` (``model.decoder_graphs``) lists each shape's decision and
timings.

Capture runs with ``capture_error_mode="thread_local"``: prefetch and other clicks keep launching work on their
own threads while one thread captures.
"""

from __future__ import annotations

import logging
import statistics
import threading
import time
from collections import OrderedDict
from dataclasses import asdict, dataclass, field
from typing import Callable, Dict, List, Optional, Tuple

import torch
from segment_anything.modeling import PromptEncoder, Sam

logger = logging.getLogger(__name__)

# capture(fn, static inputs) → (replay, static outputs): replay() recomputes the outputs from the inputs' buffers
Capture = Callable[[Callable[[], Tuple[torch.Tensor, torch.Tensor]]], Tuple[Callable[[], None], Tuple[torch.Tensor, torch.Tensor]]]


def prompt_embeddings(
    encoder: PromptEncoder, points: Optional[torch.Tensor], labels: Optional[torch.Tensor], box: Optional[torch.Tensor],
    mask: Optional[torch.Tensor],
) -> Tuple[torch.Tensor, torch.Tensor]:
    """segment-anything's ``PromptEncoder.forward`` for one image, without its boolean-mask assignments: those find
    the points of each label on the host (a synchronisation, which a CUDA graph cannot record). Same sums, written
    with ``torch.where``; a test compares them with the original."""
    parts = []
    if points is not None:
        coords, point_labels = points + 0.5, labels  # shift to the pixel's centre, as SAM does
        if box is None:  # SAM pads a lone set of points with one "not a point"
            coords = torch.cat([coords, coords.new_zeros(coords.shape[0], 1, 2)], dim=1)
            point_labels = torch.cat([point_labels, -torch.ones_like(point_labels[:, :1])], dim=1)
        embedded = encoder.pe_layer.forward_with_coords(coords, encoder.input_image_size)
        kind = point_labels[..., None]
        embedded = torch.where(kind == -1, encoder.not_a_point_embed.weight, embedded)
        embedded = embedded + torch.where(kind == 0, encoder.point_embeddings[0].weight, 0.0)
        embedded = embedded + torch.where(kind == 1, encoder.point_embeddings[1].weight, 0.0)
        parts.append(embedded)
    if box is not None:
        parts.append(encoder._embed_boxes(box))
    sparse = torch.cat(parts, dim=1) if parts else torch.empty((1, 0, encoder.embed_dim), device=encoder._get_device())
    if mask is not None:
        dense = encoder._embed_masks(mask)
    else:
        dense = encoder.no_mask_embed.weight.reshape(1, -1, 1, 1).expand(sparse.shape[0], -1, *encoder.image_embedding_size)
    return sparse, dense


def capture_cuda_graph(run: Callable[[], Tuple[torch.Tensor, torch.Tensor]]) -> Tuple[Callable[[], None], Tuple[torch.Tensor, torch.Tensor]]:
    """Record ``run`` (which reads only static buffers) as a CUDA graph after three warm-up runs on a side stream."""
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(3):
            run()
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph, capture_error_mode="thread_local"):
        outputs = run()
    return graph.replay, outputs


@dataclass
class ShapeDecision:
    """One prompt shape: ``graph`` (replayed) or ``eager``, why, and the timings it rests on."""

    state: str
    reason: str
    eager_ms: Optional[float] = None
    graph_ms: Optional[float] = None

    def to_dict(self) -> Dict:
        return asdict(self)


@dataclass
class _Graph:
    inputs: List[Optional[torch.Tensor]]
    outputs: Tuple[torch.Tensor, torch.Tensor]
    replay: Callable[[], None]
    lock: threading.Lock = field(default_factory=threading.Lock)


def shape_key(points: Optional[torch.Tensor], box: Optional[torch.Tensor], mask: Optional[torch.Tensor], multimask: bool) -> str:
    """E.g. ``2p+box+mask/3`` for two points, a box and a mask prompt, three masks asked."""
    parts = [f"{0 if points is None else points.shape[1]}p"]
    parts += ["box"] if box is not None else []
    parts += ["mask"] if mask is not None else []
    return "+".join(parts) + f"/{3 if multimask else 1}"


class DecoderGraphs:
    """Decodes through a CUDA graph per prompt shape where it is adopted, eagerly otherwise (module docstring)."""

    def __init__(
        self, sam: Sam, dense_pe: torch.Tensor, capture: Capture = capture_cuda_graph, max_graphs: int = 16,
        repeats: int = 5, timer: Callable[[], float] = time.perf_counter, synchronize: Callable[[], None] = torch.cuda.synchronize,
    ) -> None:
        self.sam = sam
        self.dense_pe = dense_pe
        self.capture = capture
        self.max_graphs = max_graphs
        self.repeats = repeats
        self.timer = timer
        self.synchronize = synchronize
        self._graphs: "OrderedDict[str, _Graph]" = OrderedDict()
        self.decisions: Dict[str, ShapeDecision] = {}
        self._lock = threading.Lock()  # one capture at a time

    def eager(self, features, points, labels, box, mask, multimask: bool) -> Tuple[torch.Tensor, torch.Tensor]:
        sparse, dense = prompt_embeddings(self.sam.prompt_encoder, points, labels, box, mask)
        return self.sam.mask_decoder(
            image_embeddings=features, image_pe=self.dense_pe, sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense, multimask_output=multimask)

    @torch.inference_mode()
    def decode(self, features, points, labels, box, mask, multimask: bool) -> Tuple[torch.Tensor, torch.Tensor]:
        """SAM's (1, M, 256, 256) logits and (1, M) IoUs for one image's prompt tensors (as the prompt encoder takes them)."""
        key = shape_key(points, box, mask, multimask)
        inputs = [features, points, labels, box, mask]
        graph = self._graphs.get(key)
        if graph is None and key not in self.decisions:
            graph = self._adopt(key, inputs, multimask)
        if graph is None:
            return self.eager(*inputs, multimask)
        with graph.lock:
            for buffer, value in zip(graph.inputs, inputs):
                if buffer is not None:
                    buffer.copy_(value)
            graph.replay()
            return graph.outputs[0].clone(), graph.outputs[1].clone()

    def status(self) -> Dict[str, Dict]:
        return {key: decision.to_dict() for key, decision in sorted(self.decisions.items())}

    def _adopt(self, key: str, inputs: List[Optional[torch.Tensor]], multimask: bool) -> Optional[_Graph]:
        with self._lock:
            if key in self.decisions:  # decided by another click meanwhile
                return self._graphs.get(key)
            eager_ms = self._median_ms(lambda: self.eager(*inputs, multimask))
            try:
                static = [None if value is None else value.clone() for value in inputs]
                replay, outputs = self.capture(lambda: self.eager(*static, multimask))
                replay()
                expected = self.eager(*inputs, multimask)
                same = all(torch.allclose(a, b, atol=1e-3) for a, b in zip(outputs, expected))
                graph_ms = self._median_ms(replay)
            except Exception as error:  # a kernel that cannot be captured, memory: this shape stays eager
                self.decisions[key] = ShapeDecision("eager", f"capture failed: {type(error).__name__}: {error}"[:300], eager_ms)
                logger.warning("Decoder shape %s stays eager: %s", key, error)
                return None
            if not same:
                self.decisions[key] = ShapeDecision("eager", "the replayed answer differs from the eager decoder's",
                                                    eager_ms, graph_ms)
                return None
            if graph_ms >= eager_ms:
                self.decisions[key] = ShapeDecision("eager", "the graph is not faster", eager_ms, graph_ms)
                return None
            graph = _Graph(static, outputs, replay)
            self._graphs[key] = graph
            self.decisions[key] = ShapeDecision("graph", "replayed: faster, same answer", eager_ms, graph_ms)
            logger.info("Decoder shape %s replayed as a CUDA graph: %.2f ms instead of %.2f ms", key, graph_ms, eager_ms)
            while len(self._graphs) > self.max_graphs:  # the oldest shape goes back to eager (and may be captured again)
                dropped, _ = self._graphs.popitem(last=False)
                self.decisions.pop(dropped, None)
            return graph

    def _median_ms(self, run: Callable[[], object]) -> float:
        times = []
        for _ in range(self.repeats):
            self.synchronize()
            started = self.timer()
            run()
            self.synchronize()
            times.append(self.timer() - started)
        return round(1000 * statistics.median(times), 3)


def wants_graphs(setting: str, device: torch.device) -> bool:
    if setting not in ("auto", "off"):
        raise ValueError(f"decoder_cuda_graphs must be auto or off, not {setting!r}")
    return setting == "auto" and device.type == "cuda"
