"""What was written before the code moved still loads: the shipped checkpoint and its recorded recipe, the committed
results of the training arms. (A distillation folder of the earlier layout: tests/test_distill.py.)"""

from dataclasses import fields

from experiments import ablate
from segformer import load_checkpoint
from segformer.checkpoint import DEFAULT_CHECKPOINT
from train.paths import ARMS_DIR
from train.train import TrainConfig, changed_settings, initialise


def test_the_shipped_checkpoint_loads_and_its_recorded_recipe_is_a_run_of_todays_loop() -> None:
    model, meta = load_checkpoint(DEFAULT_CHECKPOINT)
    assert model.num_classes == len(meta["classes"]) == 4 and meta["history"]
    known = {f.name for f in fields(TrainConfig)}
    recorded = {k: tuple(v) if isinstance(v, list) else v for k, v in meta["recipe"].items() if k in known}
    assert set(meta["recipe"]) - known == {"world_size", "device"}  # what the run added about where it ran
    cfg = TrainConfig(**recorded)
    assert changed_settings(cfg, meta["recipe"]) == []  # --resume would take it as the same run
    assert not cfg.hint_stage and cfg.augment == "segmentation" and cfg.schedule == "poly"  # as it trained
    assert initialise(type(model)(model.config, 4), str(DEFAULT_CHECKPOINT)) == meta["history"]


def test_every_committed_arm_result_reads_and_tabulates() -> None:
    paths = sorted(ARMS_DIR.glob("*.json"))
    assert len(paths) >= 40
    by_arm = ablate.arm_results()
    assert sum(len(results) for results in by_arm.values()) == len(paths)
    known = {arm.name for arm in ablate.ARMS}
    for name, results in by_arm.items():
        assert name in known, f"{name}: a committed result of no arm"
        for result in results:
            assert set(ablate.figures(result)) == {"miou", "person/animal", "vehicle", "cat"}
    table = ablate.levers_table()
    for group in ablate.LEVER_GROUPS:
        for name in group:
            if name in by_arm:
                assert any(row.startswith(f"| {name} |") and "not run yet" not in row for row in table.splitlines())
