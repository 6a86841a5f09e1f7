"""The end-to-end demo: the paper's claims tested at small scale (on the CPU, or a GPU where torch sees one).

    make_synthetic(task="evidence") + make_glyph_images
      ─► per seed: pre-train TSN-small and AF-small on glyph images (T=1), as the paper
         pre-trains on ImageNet
      ─► train {TSN, AFNet RT 1.0 / 0.5 / 0.25 (the paper's recipe), AFNet RT 0.5 / 0.25 +
         saliency (beyond the paper, docs/navigation.md), AFNet uniform and random at 0.5 and
         0.25} from those backbones
      ─► evaluate: top-1, GFLOPs/video, latency/video, kept ratio, navigation precision;
         a learned RT < 1 with its keep/skip threshold calibrated to RT on the training videos
         (afnet.engine.calibrate), and as variants with the threshold as trained and with
         static-k; its focal branch also on given frames (evidence_headroom)
      ─► table (Markdown, JSON) with each claim's verdict, figures

All models use the small ResNet backbone and 8 frames (``DemoSize.frames``). The task
(``afnet.data.synthetic``, ``task="evidence"``): the class is a small glyph that the carrier square bears in 2-3
random frames of each video; the other frames carry no evidence. A per-frame model can
solve it (TSN is not excluded by construction), and which frames carry the evidence is
known, so the share of the frames a model computes that carry evidence (navigation
precision) is measured at every navigation point, for learned and fixed policies alike.
The claims and how they are decided: :func:`claims`. Whatever the numbers show is reported.

``spatial=True`` runs Table 5's spatial rows instead (paper §3.3) on the evidence task with
each glyph in one cell of a 2 x 2 grid (region evidence): every frame kept, one region of
four of each focal block computed, chosen by the spatial navigation (the paper's objective,
and with the region saliency term), at random, or as a centre crop; and every region
computed, the reference. Region precision is measured per spatial block.

The package, each module importing only those before it: :mod:`~afnet.demo.plan` (sizes,
rows as dotted config overrides, each run's config) -> :mod:`~afnet.demo.statistics` (means,
verdicts, bars) -> :mod:`~afnet.demo.report` (Markdown, figures) -> :mod:`~afnet.demo.run`
(the pipeline).
"""
from afnet.demo.plan import (
                             EXPLAINED,
                             FULL,
                             NAV,
                             QUICK,
                             RUNS,
                             SALIENCY,
                             SPATIAL_FULL,
                             SPATIAL_QUICK,
                             SPATIAL_RUNS,
                             DemoRun,
                             DemoSize,
                             accelerator,
                             demo_config,
                             demo_overrides,
                             pretrain_config,
)
from afnet.demo.report import describe, markdown
from afnet.demo.run import (
                             RunResult,
                             evaluate_static_k,
                             evidence_headroom,
                             measure_latency,
                             pretrain_backbone,
                             run_demo,
                             run_result,
                             write_config,
)
from afnet.demo.statistics import (
                             CLAIMS,
                             HEADROOM_POLICIES,
                             SPATIAL_CLAIMS,
                             T_CRIT,
                             VARIANTS,
                             claims,
                             evidence_worth,
                             mean_sd,
                             precision_bars,
                             summarise,
                             summarise_headroom,
                             verdict,
)

__all__ = ["EXPLAINED", "FULL", "NAV", "QUICK", "RUNS", "SALIENCY", "SPATIAL_FULL", "SPATIAL_QUICK", "SPATIAL_RUNS",
           "DemoRun", "DemoSize", "accelerator", "demo_config", "demo_overrides", "pretrain_config", "describe",
           "markdown", "RunResult", "evaluate_static_k", "evidence_headroom", "measure_latency", "pretrain_backbone",
           "run_demo", "run_result", "write_config", "CLAIMS", "HEADROOM_POLICIES", "SPATIAL_CLAIMS", "T_CRIT",
           "VARIANTS", "claims", "evidence_worth", "mean_sd", "precision_bars", "summarise", "summarise_headroom",
           "verdict"]
