"""`stylize run`: one photo or a batch, with a painting (iterative) or a trained --model."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.table import Table
from rich.text import Text

from stylize.cli.app import EXIT_FAILED_JOBS, EXIT_INTERRUPTED, app, command_context, half_help, panel
from stylize.cli.display import BatchProgress, CountBar, FramesProgress, ImageProgress, console, count, err_console
from stylize.config import (AUTO_FIRST_SCALE, AUTO_ITERATIONS, DEFAULT_TEMPLATE, MODEL_TEMPORAL_WEIGHT,
                            VARIANT_TEMPLATE, Backbone, BackboneConfig, ImageFormat, InitKind, LossConfig,
                            OptimizerKind, OutputConfig, Pairing, Pooling, RunConfig, StyleLossKind, Variant,
                            format_layer_weights, number, parse_layer_weights, parse_numbers, parse_scales, sweep)
from stylize.errors import InputError

# `stylize run --help` in panels: the common options first, then each method's and the files'.
ITERATIVE = "Iterative method (Gatys et al.): with a STYLE"
WITH_MODEL = "With --model (a trained network)"
FILES = "Batches and output files"
_iterative_option, _iterative_choice = panel(ITERATIVE)
_with_model_option = panel(WITH_MODEL)[0]
_files_option, _files_choice = panel(FILES)
DEFAULT_RUN = RunConfig()
DEFAULT_LOSS = LossConfig()
DEFAULT_OUTPUT = OutputConfig()
DEFAULT_BACKBONE = BackboneConfig()

# Options that only one method reads: given to the other, they used to be ignored without a word.
# (--init previous and --temporal-weight are read by both: a trained network's video frames too.)
_ITERATIVE_ONLY = ("iterations", "scales", "optimizer", "lr", "init_image", "content_weight", "style_weight",
                   "tv_weight", "content_layers", "style_layers", "style_loss", "style_blend", "style_scale",
                   "save_every", "backbone", "weights", "pooling", "seed", "match_color")
_MODEL_ONLY = ("batch_size", "strength")


def _given(ctx: typer.Context, name: str) -> bool:
    """Whether the option ``name`` was given on the command line (not its default)."""
    return getattr(ctx.get_parameter_source(name), "name", "") == "COMMANDLINE"


def _any_animation(jobs: list) -> bool:
    from stylize.imageio import animation_suffix
    return any(animation_suffix(job.content.path) is not None for job in jobs)


def _check_method_options(ctx: typer.Context, model: Optional[list[str]]) -> None:
    """Refuse options that the chosen method (--model or the iterative one) would not use."""
    given = [name for name in ctx.params if _given(ctx, name)]
    flag = lambda name: "--" + name.replace("_", "-")  # noqa: E731
    if model is not None and (unused := [flag(n) for n in given if n in _ITERATIVE_ONLY]):
        raise InputError(f"{', '.join(unused)}: not used with --model (a trained network's style is fixed when it "
                         "is trained); leave them out, or give a painting instead of --model")
    if model is None and (unused := [flag(n) for n in given if n in _MODEL_ONLY]):
        hint = "; for less style here, lower --style-weight" if "--strength" in unused else ""
        raise InputError(f"{', '.join(unused)}: used with --model only (a trained network); leave them out{hint}")


@app.command()
def run(
    ctx: typer.Context,
    inputs: Annotated[list[Path], typer.Argument(help="CONTENT then STYLE images: files, folders or quoted glob "
                      "patterns. With --style or --model every argument is a CONTENT.", metavar="CONTENT [STYLE]",
                      show_default=False)],
    style_option: Annotated[Optional[list[Path]], typer.Option("--style", "-s", help="A style image, folder or "
                            "pattern (repeatable); then every argument is a CONTENT.", show_default=False)] = None,
    output: Annotated[Optional[Path], typer.Option("-o", "--output", help="Output image or folder. Default: "
                      "CONTENT_x_STYLE.png beside the photo; a batch needs a folder.", show_default=False)] = None,
    size: Annotated[Optional[int], typer.Option(help="Long side of the output in pixels. \\[default: 512; with "
                    "--model: the photo's own size]", show_default=False)] = None,
    model: Annotated[Optional[list[str]], typer.Option("--model", "-m", help="A trained model file (stylize "
                     "train), an exported .onnx/.ts file (stylize export), a bundled model's name (stylize models) "
                     "or a fast_neural_style .pth: one forward pass, no STYLE. Repeat it for a batch of every "
                     "photo with every model.",
                     show_default=False)] = None,
    iterations: Annotated[Optional[str], _iterative_option(help="Iterations per scale: one number for every scale, "
                          f"or a list such as 200,70. Default: {AUTO_ITERATIONS[0]} at each scale before the "
                          f"last, {AUTO_ITERATIONS[1]} at full size.")] = None,
    scales: Annotated[Optional[str], _iterative_option(help="Coarse-to-fine schedule: a number of scales, each "
                      "twice the last (1 = single scale), or the sizes before the last (--size), such as 128,256. "
                      f"Default: enough for the first to be nearest {AUTO_FIRST_SCALE} px (2 at --size 512, "
                      "3 at 1024).")] = None,
    optimizer: Annotated[OptimizerKind, _iterative_choice(help="Optimiser.")] = DEFAULT_RUN.optimizer,
    lr: Annotated[float, _iterative_option("--lr", help="Adam's learning rate.")] = DEFAULT_RUN.learning_rate,
    init: Annotated[InitKind, _iterative_choice(help="Starting image. previous: a batch's photos are video "
                    "frames, each started from the previous frame's result moved onto it along the optical flow "
                    "(steady texture), at full size only; with --model (previous only): each frame's output held "
                    "to that.")] = DEFAULT_RUN.init,
    temporal_weight: Annotated[Optional[float], _iterative_option(
        help="Video frames (--init previous, an animation): how strongly each frame keeps the previous frame's "
        "result, moved onto it along the optical flow, where the flow holds (Ruder et al. 2016); 0: only start "
        "from it. With --model: (output + W x moved result) / (1 + W) there; 0: each frame on its own. "
        f"\\[default: {number(DEFAULT_RUN.temporal_weight)}; with --model: {number(MODEL_TEMPORAL_WEIGHT)} with "
        "--init previous, else 0]", show_default=False)] = None,
    init_image: Annotated[Optional[Path], _iterative_option(help="Start from this image instead (e.g. the output of "
                          "an interrupted run, to go on from it); another shape is cropped to the photo's "
                          "proportions, around its centre.", show_default=False)] = None,
    content_weight: Annotated[float, _iterative_option(
        help="alpha: weight of the content loss.")] = DEFAULT_LOSS.content_weight,
    style_weight: Annotated[Optional[str], _iterative_option(
        help="beta: weight of the style loss. Several, such as 10,30,100: one result for each, side by side "
        f"(a batch). \\[default: {number(DEFAULT_LOSS.style_weight)}]", metavar="<float,...>",
        show_default=False)] = None,
    tv_weight: Annotated[float, _iterative_option(
        help="Weight of total-variation smoothing.")] = DEFAULT_LOSS.tv_weight,
    content_layers: Annotated[str, _iterative_option(help="Content layers, optionally weighted: relu4_2 or "
                              "relu3_2:0.5,relu4_2.")] = format_layer_weights(DEFAULT_LOSS.content_layers),
    style_layers: Annotated[str, _iterative_option(help="Style layers with optional weights (normalised to sum 1), "
                            "e.g. relu1_1:2,relu2_1,relu3_1.")] = format_layer_weights(DEFAULT_LOSS.style_layers),
    style_loss: Annotated[StyleLossKind, _iterative_choice(help="Style statistic: Gram matrices or per-channel "
                          "mean and std.")] = DEFAULT_LOSS.style_loss,
    style_blend: Annotated[Optional[str], _iterative_option(help="Blend all the style images into one style with these "
                           "weights, e.g. 0.7,0.3 (without it: one result per style).")] = None,
    style_scale: Annotated[Optional[str], _iterative_option(
        help="Size of the style image relative to the output (smaller: finer brush strokes). Several, such as "
        f"0.5,1: one result for each. \\[default: {number(DEFAULT_RUN.style_scale)}]", metavar="<float,...>",
        show_default=False)] = None,
    preserve_color: Annotated[bool, typer.Option("--preserve-color", help="Keep the photo's colours "
                              "(transfer luminance only).")] = DEFAULT_RUN.preserve_color,
    match_color: Annotated[bool, _iterative_option("--match-color", help="Recolour the paintings with the photo's "
                           "colours first (its palette, their brushwork).")] = DEFAULT_RUN.match_color,
    save_every: Annotated[int, _iterative_option(help="Save an intermediate image every N iterations.")] = 0,
    backbone: Annotated[Optional[Backbone], _iterative_choice(help="Feature network. vgg16 is bundled; vgg19 and "
                        "vgg16-imagenet are downloaded by torchvision. \\[default: vgg16]", show_default=False)] = None,
    weights: Annotated[Optional[Path], _iterative_option(help="Local torchvision VGG-16/19 state dict (full model or "
                       "features only).", show_default=False)] = None,
    pooling: Annotated[Pooling, _iterative_choice(help="Pooling in the feature network: max, as VGG was trained, "
                       "or average (Gatys et al. 2016): larger, smoother brush strokes.")] = DEFAULT_BACKBONE.pooling,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:N or mps.")] = "auto",
    seed: Annotated[int, _iterative_option(
        help="Random seed (same inputs, seed and device: same output).")] = DEFAULT_RUN.seed,
    batch_size: Annotated[int, _with_model_option(help="Photos of the same size per forward "
                          "pass.")] = DEFAULT_OUTPUT.batch_size,
    tile: Annotated[Optional[int], typer.Option(help="Stylise in tiles of this many pixels (0: never); the "
                    "iterative method's tiles give the objective of one pass, up to rounding, in a tile's memory. "
                    "\\[default: only when an image would not fit in memory]", show_default=False)] = None,
    strength: Annotated[Optional[str], _with_model_option(help="How much of the style, above 0 to 1: the result "
                        "blended over the photo (0.5: half and half). Several, such as 0.4,0.7,1: one result for "
                        "each. \\[default: 1]", metavar="<float,...>", show_default=False)] = None,
    recursive: Annotated[bool, _files_option("--recursive", "-r", help="Also search sub-folders of folder "
                         "inputs.")] = False,
    pairs: Annotated[Pairing, _files_choice(help="product: every content with every style; zip: the first with "
                     "the first, ...")] = DEFAULT_OUTPUT.pairs,
    name: Annotated[Optional[str], _files_option(help="Output file names in a batch: {content}, {style}, {variant} "
                    "(the values of a --style-weight, --style-scale or --strength list), {dir} (sub-folder of a "
                    f"--recursive input), {{ext}}. \\[default: {DEFAULT_TEMPLATE}; {VARIANT_TEMPLATE} for several "
                    "values]",
                    show_default=False)] = None,
    image_format: Annotated[Optional[ImageFormat], _files_choice("--format", help="Output format \\[default: from "
                            "-o, else png; an animated GIF, WebP or PNG keeps its own].", show_default=False)] = None,
    quality: Annotated[int, _files_option(help="JPEG/WebP quality (1-100).")] = DEFAULT_OUTPUT.quality,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace existing outputs (a batch otherwise "
                         "skips them, so re-running it resumes it).")] = False,
    dry_run: Annotated[bool, _files_option("--dry-run", help="Print the planned jobs and exit.")] = False,
    contact_sheet: Annotated[Optional[Path], _files_option(help="Also write one image with the inputs and "
                             "results in a grid.", show_default=False)] = None,
    mask: Annotated[Optional[Path], typer.Option(help="An image at the photo's proportions: the style where it "
                    "is white, the photo where it is black (or transparent), mixed where grey. For a batch, one "
                    "image for every photo or a folder with one per photo, named as the photo.",
                    show_default=False)] = None,
    invert_mask: Annotated[bool, typer.Option("--invert-mask", help="The style where the --mask is black, the "
                           "photo where it is white (a subject's cut-out mask: paint around it).")] = False,
    half: Annotated[Optional[bool], typer.Option("--half/--no-half", help=half_help(), show_default=False)] = None,
    max_pixels: Annotated[int, _files_option(help="Refuse images with more pixels than this (decompression "
                          "bombs).")] = DEFAULT_OUTPUT.max_pixels,
    no_recipe: Annotated[bool, _files_option("--no-recipe", help="Do not write how each output was made into it "
                         "(its inputs' file names, the options, the device; `stylize info IMAGE` shows "
                         "them).")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Stylize photos with paintings (Gatys et al.'s iterative method) or with a trained --model.

    One photo and one style write one image; folders, patterns or several images make a batch."""
    from stylize import distributed

    world = distributed.world_from_env()
    with command_context(world):
        _check_method_options(ctx, model)
        device = distributed.device_for(device, world)
        quiet = quiet or not world.main  # under torchrun only rank 0 shows progress
        variants = sweep(parse_numbers(style_weight, "--style-weight") if style_weight else
                         (DEFAULT_LOSS.style_weight,),
                         parse_numbers(style_scale, "--style-scale") if style_scale else (DEFAULT_RUN.style_scale,),
                         parse_numbers(strength, "--strength") if strength else (1.0,))
        template = name or (VARIANT_TEMPLATE if len(variants) > 1 else DEFAULT_TEMPLATE)
        out_cfg = OutputConfig(template=template, format=image_format, quality=quality, pairs=pairs,
                               recursive=recursive, overwrite=overwrite, max_pixels=max_pixels,
                               batch_size=batch_size, tile=tile, recipe=not no_recipe)
        blend = parse_numbers(style_blend, "--style-blend") if style_blend else None
        models = _models(model) if model else None  # each --model by its name
        jobs, single = _plan(inputs, style_option, models, blend, output, out_cfg, variants)
        if invert_mask and mask is None:
            raise InputError("--invert-mask inverts a --mask; give one")
        if mask is not None:  # each job's: one image for all, or a folder with one per photo
            from stylize.batch import with_masks
            jobs = with_masks(jobs, mask, invert_mask)
        if dry_run:
            if world.main:
                _print_plan(jobs, overwrite)
            return
        if world.distributed:
            if single and not world.main:
                return  # one image: rank 0 makes it
            from stylize.device import resolve_device
            distributed.start(resolve_device(device), world)
        if contact_sheet is not None:
            from stylize.imageio import check_output
            check_output(contact_sheet, overwrite)
        if models is None:
            loss = LossConfig(
                content_weight=content_weight, style_weight=variants[0].style_weight, tv_weight=tv_weight,
                content_layers=parse_layer_weights(content_layers, "--content-layers"),
                style_layers=parse_layer_weights(style_layers, "--style-layers"), style_loss=style_loss)
            config = RunConfig(
                size=DEFAULT_RUN.size if size is None else size, scales=parse_scales(scales) if scales else None,
                iterations=parse_numbers(iterations, "--iterations", int) if iterations else None,
                optimizer=optimizer, learning_rate=lr, init=init, seed=seed, style_scale=variants[0].style_scale,
                style_blend=blend, preserve_color=preserve_color, match_color=match_color, save_every=save_every,
                half=half, tile=tile, loss=loss,
                temporal_weight=DEFAULT_RUN.temporal_weight if temporal_weight is None else temporal_weight)
            for variant in variants[1:]:  # a bad value of a list is refused before any work
                variant.apply(config)
            backbone_cfg = BackboneConfig(name=backbone, weights=weights, pooling=pooling,
                                          download_progress=not quiet)
            _check_frames(init, temporal_weight, single, jobs, world.distributed, init_image)
            if single:
                _single_iterative(jobs[0], config, backbone_cfg, device, out_cfg, quiet, init_image)
            elif init_image is not None:
                raise InputError("--init-image is for a single photo, not a batch")
            elif save_every:  # a batch ran without them, silently
                raise InputError("--save-every is for a single photo, not a batch")
            else:
                from stylize.job import Iterative
                stylizer = Iterative(config, backbone_cfg, device)  # its VGG loaded once for a sweep
                groups = [([j for j in jobs if j.variant == v.label], stylizer.varied(v)) for v in variants]
                _batch(jobs, groups, out_cfg, quiet, contact_sheet, world)
        else:
            from stylize.job import Fast
            if _given(ctx, "init") and init is not InitKind.previous:
                raise InputError(f"--init {init.value}: a trained network makes its result in one pass, from no "
                                 "starting image; with --model only --init previous (video frames, each held to "
                                 "the one before)")
            _check_frames(init, temporal_weight, single, jobs, world.distributed)
            held = MODEL_TEMPORAL_WEIGHT if init is InitKind.previous else 0.0
            # Every model is loaded (and so checked) before any photo is stylised.
            stylizers = {name: Fast(spec, device, size, preserve_color, tile, half, strength=variants[0].strength,
                                    temporal_weight=held if temporal_weight is None else temporal_weight,
                                    frames=init is InitKind.previous)
                         for name, spec in models.items()}
            if single:
                _single_fast(jobs[0], stylizers[jobs[0].style_label], out_cfg, quiet)
            else:
                groups = [([j for j in jobs if (j.style_label, j.variant) == (name, v.label)], fast.varied(v))
                          for name, fast in stylizers.items() for v in variants]
                _batch(jobs, groups, out_cfg, quiet, contact_sheet, world)
        if single and contact_sheet is not None:
            from stylize.batchrun import Summary
            _write_sheet(jobs, Summary(), contact_sheet, overwrite)


def _check_frames(init: InitKind, temporal_weight: Optional[float], single: bool, jobs: list, torchrun: bool,
                  init_image: Optional[Path] = None) -> None:
    """Refuse --init previous and --temporal-weight where there are no video frames to follow each other
    (the photos are opened to find animations only where it matters, and at most once)."""
    if temporal_weight is not None and init is not InitKind.previous and not _any_animation(jobs):
        raise InputError("--temporal-weight: for video frames only (--init previous with a folder of frames, or an "
                         "animation); leave it out for photos")
    if init is InitKind.previous and ((single and not _any_animation(jobs)) or init_image is not None or torchrun):
        raise InputError("--init previous starts each frame from the frame before: give a folder (or pattern) of "
                         "frames or an animation, without --init-image, in one process (not torchrun)")


def _plan(inputs: list[Path], style_option: Optional[list[Path]], models: Optional[dict[str, str]],
          blend: Optional[tuple[float, ...]], output: Optional[Path], out: OutputConfig,
          variants: list[Variant]) -> tuple[list[Any], bool]:
    """The jobs (content, styles, output path) and whether this is a single run (one photo file,
    one style or model, one variant) rather than a batch. ``models``: the --model files by name."""
    from stylize import batch as planning

    content_specs, style_specs = _split_inputs(inputs, style_option, models)
    contents = planning.expand(content_specs, out.recursive, "content")
    styles = planning.expand(style_specs, out.recursive, "style") if style_specs else []
    if blend is not None and len(blend) != len(styles):
        raise InputError(f"--style-blend has {len(blend)} weights for {len(styles)} style image(s)")
    groups = [tuple(s.path for s in styles)] if blend or models else [(s.path,) for s in styles]
    one_pair = (len(contents) == 1 and len(groups) == 1 and len(models or [None]) == 1 and contents[0].explicit
                and all(s.explicit for s in styles))
    single = one_pair and len(variants) == 1
    # A sweep of one photo and one style writes beside the photo without -o, as a single run.
    folder, file = (None, None) if output is None and one_pair else planning.output_folder(output, batch=not single)
    contents = planning.without_outputs(contents, folder)
    if not contents:
        raise InputError("every content image is inside the output folder; give -o another folder")
    ext, keep = _extension(out.format, file), out.format is None and file is None
    if not models:
        return planning.plan(planning.pair(contents, groups, out.pairs), folder, out.template, ext, None, file,
                             tuple(v.label for v in variants), keep), single
    # Each photo with each model (--pairs zip: the first with the first, ...), a model's jobs
    # together; its name is the style in the outputs' names.
    if out.pairs is Pairing.zip and len(models) != len(contents):
        raise InputError(f"--pairs zip needs as many models as contents: got {len(contents)} content image(s) and "
                         f"{len(models)} models; use --pairs product for every combination")
    combos = (list(zip(contents, models)) if out.pairs is Pairing.zip
              else [(content, name) for name in models for content in contents])
    return planning.plan([(content, ()) for content, _ in combos], folder, out.template, ext,
                         [name for _, name in combos], file, tuple(v.label for v in variants), keep), single


def _split_inputs(inputs: list[Path], style_option: Optional[list[Path]], models: Optional[dict[str, str]]
                  ) -> tuple[list[Path], list[Path]]:
    """(content specs, style specs): with --style or --model every argument is a content."""
    if models is not None:
        if style_option:
            raise InputError("--model stylizes with a trained network: give no --style with it")
        return list(inputs), []
    if style_option:
        return list(inputs), list(style_option)
    if len(inputs) < 2:
        raise InputError("give at least one style image (stylize run PHOTO PAINTING), --style or a --model")
    return [inputs[0]], list(inputs[1:])


def _extension(image_format: Optional[ImageFormat], file: Optional[Path]) -> str:
    if file is None:
        return (image_format or ImageFormat.png).value
    suffix = file.suffix.lower().lstrip(".")
    if image_format is not None and suffix not in (image_format.value, {"jpg": "jpeg", "tiff": "tif"}.get(
            image_format.value)):
        raise InputError(f"-o {file} and --format {image_format.value} disagree; give one of them")
    return suffix


def _models(model: list[str]) -> dict[str, str]:
    """Each --model by its name (the style in output names); two of one name would write the
    same files, so they are refused."""
    from stylize.modelfile import resolve_model

    names: dict[str, str] = {}
    for spec in dict.fromkeys(model):
        name = resolve_model(spec).stem
        if name in names:
            raise InputError(f"--model {names[name]} and --model {spec} have one name, {name}, and would write the "
                             "same files; rename one")
        names[name] = spec
    return names


def _single_iterative(planned: Any, config: RunConfig, backbone: BackboneConfig, device: str, out: OutputConfig,
                      quiet: bool, init_image: Optional[Path]) -> None:
    from stylize import job as jobs
    from stylize.imageio import same_proportions

    job = jobs.prepare(planned.content.path, list(planned.styles), planned.output, config, backbone, device,
                       out.overwrite, out.quality, out.max_pixels, init_image, planned.mask, planned.invert_mask,
                       out.recipe)
    if job.init is not None and not same_proportions(*job.init.rgb.shape[-2:], *job.content.rgb.shape[-2:]):
        (ih, iw), (ch, cw) = job.init.rgb.shape[-2:], job.content.rgb.shape[-2:]
        err_console.print(f"note: --init-image is {iw}x{ih} and the photo {cw}x{ch}: starting from its centre, "
                          "cropped to the photo's proportions", markup=False, soft_wrap=True)
    if job.content.frames > 1:
        _animation(job, quiet)
        return
    with ImageProgress(quiet) as report:
        result = jobs.execute(job, on_progress=report)
    if result.interrupted:
        err_console.print(f"interrupted: kept the best image so far in {job.output}; go on from it with the same "
                          f"command plus --init-image {job.output} --overwrite (and --scales 1 to stay at full "
                          "size)", markup=False, soft_wrap=True)
        raise typer.Exit(EXIT_INTERRUPTED)
    h, w = result.image.shape[-2:]
    losses = ", ".join(f"{k} {v:.4g}" for k, v in result.losses.items())
    console.print(f"saved {job.output} ({w}x{h}) in {result.seconds:.1f} s; loss: {losses}", markup=False,
                  highlight=False, soft_wrap=True)


def _animation(job: Any, quiet: bool) -> None:
    from stylize.animated import execute_animation, work_folder

    with FramesProgress(quiet) as (on_frame, on_progress):
        result = execute_animation(job, on_frame, on_progress)
    if result.interrupted:
        err_console.print(f"interrupted: the frames made are kept in {work_folder(job.output)}; run the same command "
                          "again to go on from them", markup=False, soft_wrap=True)
        raise typer.Exit(EXIT_INTERRUPTED)
    h, w = result.last.shape[-2:]
    earlier = f", {result.resumed} of them made by the interrupted run before" if result.resumed else ""
    console.print(f"saved {job.output} ({w}x{h}, {result.frames} frames{earlier}) in {result.seconds:.1f} s",
                  markup=False, highlight=False, soft_wrap=True)


def _single_fast(planned: Any, stylizer: Any, out: OutputConfig, quiet: bool) -> None:
    from stylize import job as jobs

    job = jobs.prepare_fast(planned.content.path, stylizer, planned.output, out.overwrite, out.quality,
                            out.max_pixels, planned.mask, planned.invert_mask, out.recipe)
    with CountBar(quiet, "tiles") as on_tile, CountBar(quiet, "frames") as on_frame:
        result = jobs.execute_fast(job, on_tile, on_frame)
    h, w = result.image.shape[-2:]
    frames = f", {job.content.frames} frames" if job.content.frames > 1 else ""
    console.print(f"saved {job.output} ({w}x{h}{frames}) in {result.seconds:.2f} s with {stylizer.path.name}",
                  markup=False, highlight=False, soft_wrap=True)


def _print_plan(jobs: list[Any], overwrite: bool) -> None:
    table = Table(title=count(len(jobs), 'planned job'), title_justify="left")
    for column in ("content", "style", "output", "action"):
        table.add_column(column, overflow="fold")
    for job in jobs:
        action = ("overwrite" if overwrite else "skip (exists)") if job.exists else "stylize"
        table.add_row(*(Text(cell) for cell in (str(job.content.path), job.column, str(job.output), action)))
    console.print(table)


def _batch(jobs: list[Any], groups: list[tuple[list[Any], Any]], out: OutputConfig, quiet: bool,
           contact_sheet: Optional[Path], world: Any) -> None:
    """``groups``: the jobs of each stylizer (the iterative one, or each --model's), with it."""
    from stylize import batchrun
    from stylize.job import Iterative

    todo = sum(1 for j in jobs if not j.exists or out.overwrite)
    if world.main:
        shared = f", shared by {world.size} processes" if world.distributed else ""
        console.print(f"{count(len(jobs), 'job')}: {todo} to do{shared}, {len(jobs) - todo} done already",
                      markup=False, highlight=False, soft_wrap=True)
    per_image = isinstance(groups[0][1], Iterative)
    with BatchProgress(quiet, -(-todo // world.size), per_image) as (on_job, on_progress):
        summary = batchrun.run_batches(groups, out, world, on_job, on_progress)
    if world.main:
        _print_summary(summary, len(jobs))
        if contact_sheet is not None:
            _write_sheet(jobs, summary, contact_sheet, out.overwrite)
    if summary.interrupted:
        if world.main:
            err_console.print("interrupted: finished outputs are kept; run the same command again to do the rest",
                              markup=False, soft_wrap=True)
        raise typer.Exit(EXIT_INTERRUPTED)
    if summary.stopped:
        if world.main:
            err_console.print("stopped: no room left on the output's disk; finished outputs are kept: free some "
                              "space, then run the same command again to do the rest", markup=False, soft_wrap=True)
        raise typer.Exit(EXIT_FAILED_JOBS)
    if summary.failed:
        raise typer.Exit(EXIT_FAILED_JOBS)


def _print_summary(summary: Any, total: int) -> None:
    from stylize.batchrun import Status

    table = Table(title="batch summary", title_justify="left", show_header=False)
    table.add_column("status")
    table.add_column("count", justify="right")
    for status in Status:
        table.add_row(status.value, str(summary.count(status)))
    untried = total - len(summary.outcomes)
    if untried:
        table.add_row("not started", str(untried))
    console.print(table)
    for outcome in summary.failed:
        reason = outcome.reason.removeprefix(f"{outcome.job.content.path}: ")
        console.print(f"failed: {outcome.job.content.path} x {outcome.job.column}: {reason}",
                      markup=False, highlight=False, soft_wrap=True)


def _write_sheet(jobs: list[Any], summary: Any, path: Path, overwrite: bool) -> None:
    from stylize.batchrun import write_contact_sheet

    write_contact_sheet(jobs, summary, path, overwrite)
    console.print(f"contact sheet: {path}", markup=False, highlight=False, soft_wrap=True)
