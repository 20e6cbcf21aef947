"""Training a feed-forward transformer network against the perceptual losses (Johnson et al. 2016).

The style targets are computed once; each step stylises a batch of photo crops and compares the
result's VGG features with the photos' (content) and with the style's Gram matrices. It also
stylises the crops shifted by a few pixels and asks for the shifted result (shift consistency:
a network free to do otherwise drew its texture on the lattice of its own upsampled maps).
The step itself is stylize.trainstep's (on a GPU, replayed as a CUDA graph).
Checkpoints are model files that can be resumed: the step count, optimiser state and the
step-seeded data order continue exactly where they stopped.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
from torch.nn.parallel import DistributedDataParallel

from stylize.atomic import check_writable
from stylize.config import BackboneConfig, LossConfig, TrainConfig, format_layer_weights
from stylize.dataset import StepBatches, ignore_stop_signals_in_worker, scan_photos, style_image
from stylize.device import gigabytes, half_dtype, make_deterministic, memory_budget, resolve_device, resolve_half
from stylize.distributed import SINGLE, World
from stylize.errors import DiskFullError, InputError, OutputError, ResourceError
from stylize.features import (FIXED_BYTES, FeatureExtractor, conv_values_per_pixel, estimate_style_memory,
                              load_loss_extractor)
from stylize.imageio import LoadedImage, load_image, save_image
from stylize.losses import (PerceptualLoss, content_layer_weights, required_layers, style_layer_weights,
                            style_targets)
from stylize.modelfile import load_model, save_model
from stylize.trainstep import TrainStep
from stylize.transformer import TransformerConfig, TransformerNet, scale_output_layer, stylize_image


@dataclass(frozen=True)
class TrainProgress:
    step: int  # steps done so far
    steps: int
    images_per_second: float
    losses: dict[str, float]
    elapsed: float


@dataclass(frozen=True)
class TrainResult:
    steps_done: int
    interrupted: bool
    output: Path | None  # the model file, when training finished
    checkpoint: Path


@dataclass
class TrainJob:
    style_path: Path
    photos: list[Path]
    skipped: list[Path]
    output: Path
    overwrite: bool
    config: TrainConfig
    network: TransformerNet
    optimizer: torch.optim.Optimizer
    start_step: int
    total_steps: int
    extractor: FeatureExtractor
    loss_fn: PerceptualLoss
    device: torch.device
    meta: dict
    preview: LoadedImage | None
    world: World = SINGLE
    model: torch.nn.Module | None = None  # what the step runs: the network, or its DDP wrapper


# A new network's output layer starts at a tenth of PyTorch's default weights. From the
# default, the untrained network drew seed-dependent noise whose style loss at the first step
# ranged from 5 to 174 (`shipwreck`, eight seeds), and the seeds that started high lagged
# behind (seed 1 trained a pale, washed-out model): Adam's second-moment estimates kept those
# first huge gradients and shrank every step for hundreds of steps (clearing the optimiser's
# state after 25 steps gave seed 1 its progress back). At a tenth the output starts nearly flat
# grey and every seed near the same loss (4.3-7.0). Zeroing the layer did as much for
# `shipwreck` but trained flatter `starry_night` and `the_scream` models (benchmarks/RESULTS.md).
OUTPUT_INIT_SCALE = 0.1


def checkpoint_path(output: Path) -> Path:
    """Where the resumable checkpoint of a training that writes ``output`` goes."""
    return output.with_name(f"{output.stem}.ckpt{output.suffix or '.pt'}")


def preview_path(output: Path, step: int) -> Path:
    return output.with_name(f"{output.stem}.preview-{step:06d}.png")


def _loss_record(loss: LossConfig) -> dict:
    """The loss as model files record it (in meta["training"]); each key is its option's name
    (``style_weight``: ``--style-weight``)."""
    return {"content_weight": loss.content_weight, "style_weight": loss.style_weight, "tv_weight": loss.tv_weight,
            "content_layers": format_layer_weights(loss.content_layers),
            "style_layers": format_layer_weights(loss.style_layers)}


def recorded_shift_weight(training: dict) -> float:
    """The shift weight a model file's ``meta["training"]`` records; files from before the
    shift-consistency term were trained without it: 0."""
    return float(training.get("shift_weight", 0.0))


def _check_same_loss(resume: Path, recorded: dict, config: TrainConfig) -> None:
    """A resumed training carries on exactly, so its loss must be the checkpoint's: a silently
    changed weight or layer (or a default changed since) would train another model."""
    recorded = {**recorded, "shift_weight": recorded_shift_weight(recorded)}
    asked = {**_loss_record(config.loss), "shift_weight": config.shift_weight}
    differ = [f"--{key.replace('_', '-')} {recorded[key]}" for key in asked
              if key in recorded and recorded[key] != asked[key]]
    if differ:
        raise InputError(f"{resume}: was trained with {' '.join(differ)}; resume with the options of the command "
                         "that wrote it")


def prepare_training(style: Path, data: Path, output: Path, config: TrainConfig, network: TransformerConfig,
                     backbone: BackboneConfig, device: str, overwrite: bool, resume: Path | None = None,
                     preview: Path | None = None, world: World = SINGLE) -> TrainJob:
    """Check every input, load the photos list, the network and the style targets.

    Under torchrun (``world``), every process prepares the same job; the network is wrapped in
    DistributedDataParallel, which starts every rank from rank 0's weights and averages the
    gradients, so each step trains on the global batch of ``batch_size`` x processes."""
    style_sha256 = hashlib.sha256(_read_style(style)).hexdigest()
    scan = scan_photos(data)
    output = Path(output)
    if output.suffix != ".pt":
        raise OutputError(f"{output}: model files end in .pt")
    check_writable(output, overwrite)
    _check_checkpoint(output, resume, overwrite)
    _check_workers(config.workers)
    preview_image = load_image(preview) if preview else None
    torch_device = resolve_device(device)
    make_deterministic(torch_device)
    config = replace(config, half=resolve_half(torch_device, config.half))
    extractor, backbone_source = load_loss_extractor(backbone, list(content_layer_weights(config.loss)),
                                                     list(style_layer_weights(config.loss)), torch_device)
    check_fits(config, network, extractor.arch, torch_device)
    torch.manual_seed(config.seed)
    if resume is not None:
        net, start_step, optimizer_state = _resume(resume, style, style_sha256, network, config)
    else:
        net, start_step, optimizer_state = scale_output_layer(TransformerNet(network), OUTPUT_INIT_SCALE), 0, None
    net = net.to(torch_device).train()
    model: torch.nn.Module = net
    if world.distributed:
        model = DistributedDataParallel(net, device_ids=[torch_device.index] if torch_device.type == "cuda" else None)
    # On CUDA Adam keeps its step count on the device, so that a CUDA graph can replay its update
    # (stylize.trainstep); a checkpoint written on one kind of device resumes on the other.
    capturable = torch_device.type == "cuda"
    optimizer = torch.optim.Adam(net.parameters(), lr=config.learning_rate, capturable=capturable)
    if optimizer_state is not None:
        groups = [{**group, "capturable": capturable} for group in optimizer_state["param_groups"]]
        optimizer.load_state_dict({**optimizer_state, "param_groups": groups})
    long_side = config.style_size or config.image_size
    with torch.no_grad():
        feats = extractor(style_image(style, long_side, extractor.min_side).to(torch_device))
    targets = style_targets([{n: feats[n] for n in style_layer_weights(config.loss)}], [1.0], config.loss.style_loss)
    total = config.total_steps(len(scan.paths), world.size)
    if start_step > total:  # at total, resuming writes the model (its write may have found the disk full)
        raise InputError(f"the checkpoint has {start_step} steps already; ask for more with --steps")
    if preview is not None and not overwrite:
        _check_previews(output, start_step, total, config.checkpoint_every)
    meta = {
        "style_name": Path(style).name,
        "style_sha256": style_sha256,
        "backbone": backbone_source,
        "training": {**{k: v for k, v in asdict(config).items() if k not in ("loss", "cuda_graph")},
                     **_loss_record(config.loss), "data": Path(data).name, "photos": len(scan.paths), "steps": total,
                     "processes": world.size},
    }
    return TrainJob(Path(style), scan.paths, scan.skipped, output, overwrite, config, net, optimizer, start_step,
                    total, extractor, PerceptualLoss(config.loss, targets).to(torch_device), torch_device, meta,
                    preview_image, world, model)


def estimate_step_memory(config: TrainConfig, network: TransformerConfig, arch: str) -> int:
    """Rough peak memory in bytes of one training step (float32, shift term on: what --half and
    --shift-weight 0 use is less). Fitted to the peak resident memory of training steps on the
    CPU (benchmarks/train_memory.py: 4 and 8 crops of 128-384 px, widths 16-64, 1-5 blocks, both
    layouts; float32 0.89-1.19x the measured): the VGG's forward and backward up to the deepest
    loss layer, and per channel of the network's first layer its full-resolution maps and each
    residual block's."""
    vgg = 14 * conv_values_per_pixel(arch, required_layers(config.loss))
    first_layers = 135 if network.shuffle == 1 else 80  # shuffled: no layer at full resolution
    per_pixel = vgg + network.width * (first_layers + 11 * network.blocks)
    return int(per_pixel * config.batch_size * config.image_size**2 + FIXED_BYTES)


def check_fits(config: TrainConfig, network: TransformerConfig, arch: str, device: torch.device) -> None:
    """Refuse, before any work, a training step or a style image that would not fit in memory
    (on the CPU the system would rather kill the process than fail the allocation)."""
    budget = memory_budget(device)
    if budget is None:
        return
    need = estimate_step_memory(config, network, arch)
    if need > budget:
        raise ResourceError(f"a training step of {config.batch_size} crops of {config.image_size} px needs about "
                            f"{gigabytes(need)} but {device} has {gigabytes(budget)} free; "
                            "lower --batch-size or --image-size")
    long_side = config.style_size or config.image_size
    need = estimate_style_memory(long_side, long_side)
    if need > budget:
        raise ResourceError(f"the style image at {long_side} px needs about {gigabytes(need)} but {device} has "
                            f"{gigabytes(budget)} free; lower --style-size")


def _check_checkpoint(output: Path, resume: Path | None, overwrite: bool) -> None:
    """An earlier training's checkpoint beside ``output`` (an interrupted one's, say) would be
    replaced at this training's first checkpoint: refused, unless this training resumes from it
    or --overwrite is given."""
    checkpoint = checkpoint_path(output)
    if overwrite or not checkpoint.exists() or (resume is not None and Path(resume).resolve() == checkpoint.resolve()):
        return
    go_on = f"go on from it with --resume {checkpoint}, " if resume is None else ""
    raise OutputError(f"{checkpoint}: an earlier training's checkpoint, which this training would replace; "
                      f"{go_on}pass --overwrite to start again, or choose another -o")


def _check_previews(output: Path, start: int, total: int, every: int) -> None:
    """Refuse to write over an earlier training's previews (steps this one reaches at its checkpoints)."""
    steps = [*range((start // every + 1) * every, total, every)] + ([total] if total > start else [])
    for path in (preview_path(output, step) for step in steps):
        if path.exists():
            raise OutputError(f"{path}: exists already (an earlier training's preview); pass --overwrite to replace "
                              "it, or choose another -o")


def _resume(resume: Path, style: Path, style_sha256: str, network: TransformerConfig,
            config: TrainConfig) -> tuple[TransformerNet, int, dict]:
    """The checkpoint's network, step and optimiser state, once it is known to train what was
    asked: the same style image, network and loss."""
    loaded = load_model(resume)
    if "imported_from" in loaded.meta:
        raise InputError(f"{resume}: trained by {loaded.meta['imported_from']}, not a stylize checkpoint; it can be "
                         "run (--model) and exported, not trained further")
    if loaded.resume is None:
        # The checkpoint sits beside the model its training wrote (the output asked for now may be another name).
        checkpoint = checkpoint_path(loaded.path)
        where = (f"resume from its checkpoint, {checkpoint}" if checkpoint.is_file() else
                 f"resume from the checkpoint its training wrote beside it ({checkpoint.name})")
        raise InputError(f"{resume}: a finished model, not a checkpoint; {where}")
    if loaded.meta.get("style_sha256") != style_sha256:
        raise InputError(f"{resume}: was trained on another style image than {style}")
    # The head and the upsampling are not options: the checkpoint's carry on.
    asked = replace(network, head=loaded.network.config.head, upsample=loaded.network.config.upsample)
    if loaded.network.config != asked:  # the checkpoint's network would be trained on regardless
        raise InputError(f"{resume}: its network is {loaded.network.config.options()}, not the {asked.options()} "
                         "asked for; resume with the options of the command that wrote it")
    _check_same_loss(resume, loaded.meta.get("training", {}), config)
    return loaded.network, int(loaded.resume["step"]), loaded.resume["optimizer"]


def _read_style(style: Path) -> bytes:
    load_image(Path(style))  # validates: exists, is an image, not truncated
    return Path(style).read_bytes()


def _check_workers(requested: int | None) -> None:
    """More loader processes than CPUs decode no faster and each holds its own memory; 10^20
    of them forked until the system refused."""
    cpus = os.cpu_count() or 1
    if requested is not None and requested > cpus:
        raise InputError(f"--workers {requested} is more than the {cpus} CPUs here; use at most {cpus}")


def loader_workers(requested: int | None, device: torch.device) -> int:
    """--workers, or by default: none on the CPU (decoding would take cores from the step), and
    on a GPU up to 8 processes, which keep a step of a few milliseconds fed."""
    if requested is not None:
        return requested
    return 0 if device.type == "cpu" else min(8, os.cpu_count() or 1)


def report_interval(device: torch.device) -> float:
    """Least seconds between progress reports. On the CPU every step is reported: its losses are
    computed when the step returns. On a GPU reading them back waits until the device has run
    everything queued, and the host queues nothing meanwhile; read at most ten times a second,
    the host queues the next steps while the device runs this one."""
    return 0.0 if device.type == "cpu" else 0.1


def _report_due(done: int, job: TrainJob, since_report: float, interval: float) -> bool:
    """The first step, the last, checkpoint steps (which wait for the device anyway) and steps
    at least ``interval`` seconds after the last report."""
    return (done == job.start_step + 1 or done == job.total_steps or done % job.config.checkpoint_every == 0
            or since_report >= interval)


def train(job: TrainJob, on_progress: Callable[[TrainProgress], None] | None = None,
          report_every: float | None = None) -> TrainResult:
    """Run the training loop; Ctrl-C writes a resumable checkpoint and returns. ``on_progress`` is
    called at most every ``report_every`` seconds [default: ``report_interval(job.device)``]."""
    interval = report_interval(job.device) if report_every is None else report_every
    cfg = job.config
    world = job.world
    batches = StepBatches(job.photos, cfg.image_size, cfg.batch_size * world.size, cfg.seed, job.total_steps,
                          part=(world.rank, world.size))
    model = job.model or job.network
    workers = loader_workers(cfg.workers, job.device)
    loader = torch.utils.data.DataLoader(batches, batch_size=None, sampler=range(job.start_step, job.total_steps),
                                         num_workers=workers, pin_memory=job.device.type == "cuda",
                                         worker_init_fn=ignore_stop_signals_in_worker if workers else None)
    # float16 gradients underflow without loss scaling; bfloat16 (and float32) need none.
    scaler = torch.amp.GradScaler(job.device.type, enabled=cfg.half and half_dtype(job.device) == torch.float16)
    cuda = job.device.type == "cuda"
    # A graph replays one process's step: not DDP's (it synchronises ranks), nor loss scaling's
    # (it reads the gradients' scale back to the host every step).
    graph = cfg.cuda_graph and cuda and not world.distributed and not scaler.is_enabled()
    run_step = TrainStep(model, job.extractor, job.loss_fn, job.optimizer, scaler, cfg, job.device, static=cuda,
                         graph=graph)
    try:
        return _loop(job, loader, run_step, on_progress, interval)
    except DiskFullError as exc:  # the last checkpoint was written whole (atomically): go on from it
        checkpoint = checkpoint_path(job.output)
        raise exc.advise(f"free some space, then go on from the last checkpoint with the same command plus "
                         f"--resume {checkpoint}" if checkpoint.is_file() else
                         "free some space, then run the same command again") from None


def _loop(job: TrainJob, loader: Iterable[torch.Tensor], run_step: TrainStep,
          on_progress: Callable[[TrainProgress], None] | None, interval: float) -> TrainResult:
    cfg, world = job.config, job.world
    done = job.start_step
    start = last_report = time.perf_counter()
    try:
        for batch in loader:
            parts = run_step(batch, done)
            done += 1
            if on_progress and _report_due(done, job, time.perf_counter() - last_report, interval):
                losses = parts.as_floats()  # first: on a GPU it waits for the step to finish
                last_report = time.perf_counter()
                elapsed = last_report - start
                images = (done - job.start_step) * cfg.batch_size * world.size
                on_progress(TrainProgress(done, job.total_steps, images / elapsed, losses, elapsed))
            if done % cfg.checkpoint_every == 0 and done < job.total_steps:
                _checkpoint(job, done)
    except KeyboardInterrupt:
        return TrainResult(done, True, None, _checkpoint(job, done))
    checkpoint = _checkpoint(job, done)
    job.network.eval()
    if world.main:
        save_model(job.output, job.network, {**job.meta, "steps": done}, overwrite=job.overwrite)
    return TrainResult(done, False, job.output, checkpoint)


def _checkpoint(job: TrainJob, step: int) -> Path:
    """Rank 0 writes the checkpoint (every rank holds the same weights) and the preview."""
    path = checkpoint_path(job.output)
    if not job.world.main:
        return path
    resume = {"step": step, "optimizer": job.optimizer.state_dict()}
    save_model(path, job.network, {**job.meta, "steps": step}, resume=resume, overwrite=True)
    if job.preview is not None:
        save_image(stylize_image(job.network, job.preview.rgb, job.device), preview_path(job.output, step),
                   overwrite=True)
    return path
