"""The main job end to end on sample data, on one embedded local Ray (`make demo`, `med3d demo`).

Synthetic CT/MR phantoms with label maps (plus nilearn's MNI152 template and one deliberately truncated
file) -> ingest -> captions with tiny random models built on the spot -> partial-OT pretraining ->
segmentation fine-tune -> the exported encoder served over HTTP and queried once. Nothing is downloaded.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from med3dinsight.config import load_config
from med3dinsight.config.caption import CaptionConfig
from med3dinsight.config.ingest import IngestConfig
from med3dinsight.utils.ray_session import ray_session

log = logging.getLogger(__name__)


def run_demo(
    configs: str | Path, samples: str | Path, store: str | Path, tiny_models: str | Path, port: int = 8000
) -> dict[str, Any]:
    """Run every stage of the quickstart and return where its outputs are.

    Args:
        configs: the repository's configs/ folder (base configs plus the quickstart/ overlays).
        samples: where the sample inputs are written.
        store: the store root.
        tiny_models: where the tiny captioner and CLIP are built (reused when present).
        port: HTTP port of the demo endpoint on 127.0.0.1.

    Raises:
        ValueError: on a missing config file or when a stage accepted nothing.
    """
    from ray import serve

    from med3dinsight.captioning.pipeline import run_caption
    from med3dinsight.captioning.preflight import preflight
    from med3dinsight.ingest.pipeline import run_ingest
    from med3dinsight.serving.deploy import serve_demo
    from med3dinsight.train.quickstart import run_quickstart_training

    configs, samples, store = Path(configs), Path(samples), Path(store).resolve()
    inputs, listing = write_demo_inputs(samples)
    ingest_cfg = load_config(
        IngestConfig, _stage_files(configs, "ingest"), [f"input={listing}", f"store={store}"]
    )
    caption_cfg = load_config(
        CaptionConfig,
        _stage_files(configs, "caption"),
        [f"store={store}", f"captioner.model={Path(tiny_models) / 'vlm'}",
         f"embedder.image.model={Path(tiny_models) / 'clip'}"],
    )
    _ensure_tiny_models(Path(tiny_models))
    with ray_session(ingest_cfg.ray):
        ingest = run_ingest(ingest_cfg)
        print(ingest.format())
        if not ingest.statuses.get("ok"):
            raise ValueError("ingest accepted no sample volume")
        preflight(caption_cfg)
        caption = run_caption(caption_cfg)
        print(caption.format())
        if caption.exit_code:
            raise ValueError("the caption stage failed on the sample volumes")
        training = run_quickstart_training(str(store), str(configs), str(samples), inputs, caption_cfg.run)
        try:
            url, width = serve_demo(str(store), str(training["encoder"]), inputs[0], str(configs), port)
        finally:
            serve.shutdown()
    run_dir = store / "captions" / caption_cfg.run
    return {
        "volumes": store / "volumes",
        "catalog": store / "catalog" / "volumes.parquet",
        "fingerprint": store / "catalog" / "fingerprint.json",
        "captions": run_dir / "captions.parquet",
        "gallery": run_dir / "gallery.html",
        **training,
        "endpoint": f"{url}/v1/embed (was up during the demo)",
        "embedding_width": width,
    }


def write_demo_inputs(samples: Path) -> tuple[list[str], Path]:
    """Write the sample dataset plus one truncated file, and a list file naming them all.

    Returns:
        The sample image inputs (without the truncated file) and the list file.
    """
    from med3dinsight.data.samples import write_sample_dataset

    inputs = write_sample_dataset(str(samples))
    broken = samples / "broken" / "truncated.nii.gz"  # shows a rejection with a named reason
    broken.parent.mkdir(parents=True, exist_ok=True)
    data = Path(inputs[0]).read_bytes()
    broken.write_bytes(data[: len(data) // 2])
    listing = samples / "inputs.txt"
    listing.write_text("\n".join([*inputs, str(broken)]) + "\n")
    return inputs, listing


def _stage_files(configs: Path, stage: str) -> list[Path]:
    files = [configs / f"{stage}.yaml", configs / "quickstart" / f"{stage}.yaml"]
    for f in files:
        if not f.is_file():
            raise ValueError(f"{f} not found: run the demo from the repository root or pass --configs")
    return files


def _ensure_tiny_models(folder: Path) -> None:
    from med3dinsight.captioning.tiny_models import build_tiny_models

    if not (folder / "vlm").is_dir() or not (folder / "clip").is_dir():
        log.info("building tiny random captioner and CLIP under %s", folder)
        build_tiny_models(str(folder))
