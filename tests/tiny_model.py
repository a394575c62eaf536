"""Settings for a tiny, quickly compiled model in the command-line tests (`--set` arguments)."""

SETS = {
    "model.hidden": "[16]",
    "movegen.max_plays": "64",
    "movegen.frontier2": "48",
    "movegen.frontier3": "96",
}
ARGS = [x for k, v in SETS.items() for x in ("--set", f"{k}={v}")]
