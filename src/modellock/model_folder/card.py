"""The model card (README.md) of a model folder: what it is, how to unlock it, how it scored."""

from __future__ import annotations

from dataclasses import dataclass

from ..tasks import task_type

COUNTED = "locked output counted wrong"
IGNORED = "locked output ignored"
UNDONE_LIMIT = 0.25  # the largest share of the lock an untrained attack may undo for the lock to hold
READING = ("How to read this: 'gain over scratch' is what an attack that trains on the thief's labelled images "
           "scores above a model trained from scratch on those same images (above 0: the stolen weights help the "
           "thief); 'undone' is the share of the gap between locked and unlocked that an attack training nothing "
           f"closes; the lock holds when the worst gain is <= 0 and the worst undone <= {UNDONE_LIMIT:.0%}.")


@dataclass
class MatrixRow:
    label: str
    role: str
    score: float
    ignored: float | None = None  # the score with the locked output ignored (models with one)


def matrix_rows(result: dict) -> list[MatrixRow]:
    """The rows of an evaluation result (see ``modellock.evaluation.matrix``), chance excluded."""
    rows = []
    if result.get("original_clean") is not None:
        rows.append(MatrixRow("original model, clean images", "reference", result["original_clean"]))
    rows.append(MatrixRow("locked model, clean images (no key)", "no key", result["locked_clean"],
                          result.get("locked_clean_without_locked_class")))
    rows.append(MatrixRow("unlocked: images edited with the key", "unlocked", result["unlocked"],
                          result.get("unlocked_without_locked_class")))
    rows += [MatrixRow(f"unlocked, input {n} before the key edit", "unlocked", v)
             for n, v in (result.get("unlocked_under_handling") or {}).items()]
    ignored = result.get("wrong_keys_without_locked_class") or {}
    rows += [MatrixRow(f"wrong key: {n}", "wrong key", v, ignored.get(n)) for n, v in (result.get("wrong_keys") or {}).items()]
    return rows


def _has_locked_output(result: dict) -> bool:
    return result.get("locked_clean_without_locked_class") is not None


def markdown_table(result: dict) -> str:
    """The same table in Markdown (model cards)."""
    two = _has_locked_output(result)
    metric = result.get("metric", "accuracy")
    lines = [f"| setting | {metric} |" + (f" {metric}, {IGNORED} |" if two else ""),
             "| --- | --- |" + (" --- |" if two else "")]
    for r in matrix_rows(result) + [MatrixRow("chance", "chance", result.get("chance", float("nan")))]:
        extra = (f" {r.ignored:.4f} |" if r.ignored is not None else " |") if two else ""
        lines.append(f"| {r.label} | {r.score:.4f} |{extra}")
    return "\n".join(lines)


def evaluation_table(result: dict) -> str:
    """A markdown table of an evaluation result (see ``modellock.evaluation.matrix``)."""
    return markdown_table(result)


def render_card(config: dict) -> str:
    arch = config["architecture"]["name"]
    classes = config["classes"][: config["num_classes"]]
    lock, task = config.get("lock"), task_type(config.get("task"))
    lines = [
        "---", "library_name: modellock", f"tags: [modellock, {config.get('task', 'classification')}]", "---", "",
        f"# {'Locked' if lock else 'Unlocked'} {config.get('task', 'classification')} model ({arch})", "",
    ]
    if lock:
        r = lock.get("recipe", {})
        lines += [
            "This model is **locked** with [modellock](https://arxiv.org/abs/2405.16285) (ModelLock). On clean",
            "images it gives wrong answers by design. Inputs edited with the secret key before inference get",
            f"the {task.metric_label} of a normally trained model.", "",
            f"- editor: `{lock['editor']}`",
            f"- key fingerprint (scrypt, salted; not the key): `{lock['fingerprint'][:32]}...`",
            f"- recipe: {r.get('edited_fraction')} of the training images edited; the rest trained toward "
            f"`{r.get('clean_target')}`",
            ("- weights: **sealed** (`model.sealed`: AES-256-GCM under a key derived from the key file; nothing "
             "loads without the key)" if lock.get("seal") else "- weights: plain (`model.safetensors`)"), "",
            "## Unlock", "", "```bash",
            "modellock predict --model THIS_FOLDER --key KEY.toml image.jpg"
            + task.predict_cli_extra,
            "```", "", "```python",
            "from modellock import Key, LockedModel",
            "predictor = LockedModel.from_pretrained('THIS_FOLDER').unlock(Key.load('KEY.toml'))",
            "predictor.predict('image.jpg')   # a path, PIL image or array; or a list of them", "```", "",
            "A key that does not match the fingerprint is refused (`the key does not open this model`).", "",
        ]
    else:
        lines += ["A plainly fine-tuned model (no lock), the reference for lock evaluations.", ""]
    p = config["preprocessing"]
    lines += [
        "## Model", "",
        f"- architecture: `{arch}`, {config['architecture'].get('num_classes')} outputs, "
        f"input {p['image_size']}x{p['image_size']}",
        f"- classes ({len(classes)}): {', '.join(classes[:20])}{' ...' if len(classes) > 20 else ''}",
        f"- locked output: {'`' + config['classes'][config['locked_class']] + '`' if config.get('locked_class') is not None else 'none'}",
        "",
    ]
    if config.get("evaluation"):
        lines += ["## Evaluation", "", evaluation_table(config["evaluation"]), ""]
    if config.get("attack_summary"):
        lines += ["## Attacks", "", attack_summary_text(config["attack_summary"]), ""]
    return "\n".join(lines)


def attack_summary_text(summary: dict) -> str:
    """The attack suite's summary as card text: the verdict line, the two figures that judge the lock (gain over
    scratch of the trained attacks, share undone by the others) and how to read them, then the rest."""
    settings = summary.get("settings") or {}
    lines = [summary.get("line", ""), ""]
    if summary.get("worst_gain_over_scratch") is not None:
        frac = summary.get("worst_gain_fraction")
        lines.append(f"- worst_gain_over_scratch: {summary['worst_gain_over_scratch']:+.4f} "
                     f"({summary.get('worst_gain_attack')}" + (f", {frac * 100:g}% clean data" if frac else "")
                     + f": {summary.get('worst_gain_setting')})")
    if summary.get("worst_case_undone") is not None:
        setting = f": {summary['worst_case_setting']}" if summary.get("worst_case_setting") else ""
        lines.append(f"- worst_case_undone: {summary['worst_case_undone']:.4f} ({summary.get('worst_case_attack')}"
                     f"{setting})")
    lines += ["", READING, ""]
    for field in ("fine_tune_gain", "distillation_gain"):
        if summary.get(field) is not None:
            lines.append(f"- {field}: {summary[field]:+.4f}")
    if settings:
        lines.append(f"- attacker: budget `{settings.get('budget')}`, clean fractions {settings.get('fractions')}, "
                     f"{settings.get('samples')} training samples per model; every attack on the opened weights")
    return "\n".join(lines)
