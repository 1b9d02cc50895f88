import json

from synthrank.train.trainer import last_complete_checkpoint


def test_newest_complete_checkpoint_wins_and_partial_ones_go(tmp_path):
    for step in (2, 4):
        (tmp_path / f"checkpoint-{step}").mkdir()
        (tmp_path / f"checkpoint-{step}" / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    (tmp_path / "checkpoint-10").mkdir()  # killed before trainer_state.json was written
    (tmp_path / "checkpoint-10" / "model.safetensors").write_bytes(b"partial")
    (tmp_path / "checkpoint-6").mkdir()
    (tmp_path / "checkpoint-6" / "trainer_state.json").write_text('{"global_st')  # killed mid-write
    assert last_complete_checkpoint(tmp_path) == str(tmp_path / "checkpoint-4")
    assert not (tmp_path / "checkpoint-10").exists() and not (tmp_path / "checkpoint-6").exists()
    assert (tmp_path / "checkpoint-2").exists()


def test_no_checkpoint(tmp_path):
    assert last_complete_checkpoint(tmp_path / "missing") is None
    (tmp_path / "checkpoint-1").mkdir()
    assert last_complete_checkpoint(tmp_path) is None
