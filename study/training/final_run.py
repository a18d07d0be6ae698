"""One final-phase run: retrain a hypothesis's best configuration with one seed, then score the test split."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from data.loader import FaceData
from models.metrics import METRIC_NAMES, MetricSuite

from study.training.checkpoint import best_weights, checkpoint_dirs, export_model, load_checkpoint, model_metadata
from study.training.device import plan_device
from study.training.evaluation import evaluate
from study.training.images import reconstruction_rows, save_grid, save_rows
from study.config.runs import FinalRun
from study.config.study import StudyConfig
from study.config.views import HEADLINE, PAPER
from study.training.trainer import build_model, train

RUN_SCORES_FILE = "scores.parquet"
RUN_GRID_FILE = "reconstructions.png"
RUN_GRID_ROWS_FILE = "grid_rows.npz"
RUN_MODEL_DIR = "model"


def run_final(study: StudyConfig, run: FinalRun, data: FaceData, report: Callable[[dict, Path], None],
              workdir: Path, resume_dir: Path | None) -> dict[str, float]:
    config = study.trial_config(run.hypothesis, run.kl_weight, run.lr, seed=int(run.seed),
                                epochs=study.final.epochs)
    metrics = train(config, data, report, checkpoint=resume_dir, workdir=workdir)
    trained = checkpoint_dirs(workdir / "checkpoints")
    source = trained[-1] if trained else resume_dir
    # The tested and exported model is the run's best-validation epoch, as the authors kept it.
    weights, best_epoch = best_weights(load_checkpoint(source))
    model = build_model(config, data.manifest.image_size)
    model.load_state_dict(weights)

    result_dir = workdir / "evaluation"
    # Scored where it trained: on a GPU the suite over a 144 px test split takes seconds, not minutes.
    device = plan_device(config.device).device
    suite = MetricSuite(data.manifest.image_size, device=device, lpips=study.final.lpips)
    scores = evaluate(model.to(device), data.to(device), suite, "test", device=device)
    model = model.cpu()
    scores.insert(0, "seed", int(run.seed))
    scores.insert(0, "mask", config.parsed_hypothesis.mask)
    scores.insert(0, "loss", config.parsed_hypothesis.loss)
    scores.insert(0, "hypothesis", config.hypothesis)
    result_dir.mkdir(parents=True, exist_ok=True)
    scores.to_parquet(result_dir / RUN_SCORES_FILE, index=False)

    images, _ = data.tensors("test", list(range(study.final.grid_faces)))
    rows = reconstruction_rows(model, images)
    save_grid(rows, result_dir / RUN_GRID_FILE, title=f"{config.hypothesis} seed {run.seed}")
    save_rows(rows, result_dir / RUN_GRID_ROWS_FILE)
    export_model(result_dir / RUN_MODEL_DIR, model, model_metadata(config, data.manifest, best_epoch, study=study.name))
    # Keep the final training checkpoint too, so a crash after this point resumes without retraining.
    (result_dir / "checkpoint.pt").write_bytes((Path(source) / "checkpoint.pt").read_bytes())

    # The paper's protocol (composed, full image) as test_<metric>; the headline view beside it.
    paper = scores[(scores["view"] == PAPER[0]) & (scores["region"] == PAPER[1])]
    decoder = scores[(scores["view"] == HEADLINE[0]) & (scores["region"] == HEADLINE[1])]
    test_means = {f"test_{name}": float(paper[name].mean()) for name in METRIC_NAMES}
    test_means.update({f"test_decoder_face_{name}": float(decoder[name].mean()) for name in METRIC_NAMES})
    final_metrics = {**metrics, **test_means, "best_epoch": float(best_epoch), "evaluated": 1.0}
    report(final_metrics, result_dir)
    return final_metrics
