"""The model card (README.md) of a model folder: what it is, how to unlock it, how it scored."""

from __future__ import annotations


def evaluation_table(result: dict) -> str:
    """A markdown table of an evaluation result (see ``modellock.evaluate``)."""
    from .report import markdown_table

    return markdown_table(result)


def render_card(config: dict) -> str:
    arch = config["architecture"]["name"]
    classes = config["classes"][: config["num_classes"]]
    lock = config.get("lock")
    lines = [
        "---", "library_name: modellock", f"tags: [modellock, {config.get('task', 'classification')}]", "---", "",
        f"# {'Locked' if lock else 'Unlocked'} {config.get('task', 'classification')} model ({arch})", "",
    ]
    if lock:
        r = lock.get("recipe", {})
        lines += [
            "This model is **locked** with [modellock](https://arxiv.org/abs/2405.16285) (ModelLock). On clean",
            "images it gives wrong answers by design. Inputs edited with the secret key before inference get",
            f"the {'mean IoU' if config.get('task') == 'segmentation' else 'accuracy'} of a normally trained model.", "",
            f"- editor: `{lock['editor']}`",
            f"- key fingerprint (scrypt, salted; not the key): `{lock['fingerprint'][:32]}...`",
            f"- recipe: {r.get('edited_fraction')} of the training images edited; the rest trained toward "
            f"`{r.get('clean_target')}`",
            ("- weights: **sealed** (`model.sealed`: AES-256-GCM under a key derived from the key file; nothing "
             "loads without the key)" if lock.get("seal") else "- weights: plain (`model.safetensors`)"), "",
            "## Unlock", "", "```bash",
            "modellock predict --model THIS_FOLDER --key KEY.toml image.jpg"
            + (" --masks masks/   # writes masks/image.png" if config.get("task") == "segmentation" else ""),
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
    from .attacks.suite import READING

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
