"""The values and rules of the model options, in plain Python (no torch): the command line
builds its choices from them, and :func:`afnet.models.registry.option_problems` (create_model,
configure, the engine's config, the CLI) checks them without building a model."""
from __future__ import annotations

SELECTIONS = ("navigation", "all", "uniform", "random", "normal", "soft")
FIXED_SELECTIONS = ("uniform", "random", "normal")        # Table 5's frame policies: need a ratio
REGION_SELECTIONS = ("navigation", "all", "random", "center")
FIXED_REGION_SELECTIONS = ("center", "random")             # Table 5's region policies: need a region_ratio
EXECUTIONS = ("auto", "sparse", "masked")
TEMPORAL_NAVIGATION = ("block", "first")

# The options of VideoModel.configure (settable on a built model); the rest are the constructor's
# (tests/test_imports.py checks this against configure's signature).
CONFIGURE_OPTIONS = ("selection", "ratio", "execution", "dense_above", "region_selection", "region_ratio")
# How a built model executes, not what it computes: chosen at inference, not part of a training config.
RUNTIME_OPTIONS = ("execution", "dense_above")
# Inference arithmetic (afnet.runtime.prepare_for_inference's bf16: False, True, "auto").
PRECISIONS = ("fp32", "bf16", "auto")
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")  # torch.compile's


def is_number(x) -> bool:
    """An int or a float, not a bool (YAML's ``true`` is no number)."""
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def in_unit_interval(x, slack: float = 0.0) -> bool:
    """A number in ``(0, 1 + slack]``: a ratio, a share."""
    return is_number(x) and 0.0 < float(x) <= 1.0 + slack


def selection_problems(o: dict, *, has_navigation: bool, spatial: bool, model: str, prefix: str = "") -> list[str]:
    """The rules on :meth:`VideoModel.configure`'s options ``o`` (``None``: unset), one
    message per broken rule naming the option (``prefix`` + name) and what it accepts.
    ``has_navigation``/``spatial``: whether the model has a focal branch / spatial navigation."""
    p = prefix
    problems = []
    selection, ratio, execution = o.get("selection"), o.get("ratio"), o.get("execution")
    if selection is not None and selection not in SELECTIONS:
        problems.append(f"{p}selection={selection!r}; accepted: {', '.join(SELECTIONS)}")
    elif selection not in (None, "all") and not has_navigation:
        problems.append(f"{model} has no focal branch; {p}selection must be 'all', got {selection!r}")
    if execution is not None and execution not in EXECUTIONS:
        problems.append(f"{p}execution={execution!r}; accepted: {', '.join(EXECUTIONS)}")
    for key in ("ratio", "region_ratio"):
        if o.get(key) is not None and not in_unit_interval(o[key]):
            problems.append(f"{p}{key} must be in (0, 1], got {o[key]!r}")
    if ratio is not None and (not has_navigation or selection in ("all", "soft")):
        problems.append(f"{p}ratio={ratio!r} has no effect: {model} computes every frame"
                        + (f" ({p}selection={selection!r})" if has_navigation else " (no focal branch)"))
    if selection in FIXED_SELECTIONS and ratio is None:
        problems.append(f"{p}selection={selection!r} needs a {p}ratio in (0, 1]")
    if selection == "soft" and execution == "sparse":
        problems.append(f"{p}selection='soft' weighs every frame; {p}execution must be 'auto' or 'masked'")
    region_selection, region_ratio = o.get("region_selection"), o.get("region_ratio")
    if region_selection is not None and region_selection not in REGION_SELECTIONS:
        problems.append(f"{p}region_selection={region_selection!r}; accepted: {', '.join(REGION_SELECTIONS)}")
    elif not spatial:
        problems += [f"{p}{k}={o[k]!r} needs {p}spatial=true (the model is built without spatial navigation)"
                     for k in ("region_selection", "region_ratio") if o.get(k) not in (None, "all")]
    elif region_selection in FIXED_REGION_SELECTIONS and region_ratio is None:
        problems.append(f"{p}region_selection={region_selection!r} needs a {p}region_ratio in (0, 1]")
    dense_above = o.get("dense_above")
    if dense_above is not None and not in_unit_interval(dense_above, slack=1e-9):
        problems.append(f"{p}dense_above must be in (0, 1], got {dense_above!r}")
    return problems
