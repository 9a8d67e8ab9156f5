"""Every YAML the project ships validates against its schema."""

from pathlib import Path

import pytest
import yaml
from tandem.config import load_config
from tandem.train.config import FinetuneConfig

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("path", sorted((REPO / "jobs" / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_job_config_validates_and_says_how_to_launch(path):
    from tandem.train.distill import DistillConfig

    distill = path.name.startswith("distill-")
    load_config(DistillConfig if distill else FinetuneConfig, path)
    assert path.read_text().startswith("#"), "shipped YAML starts with its launch command"
    entrypoint = "jobs/distill.py" if distill else "jobs/finetune.py"
    assert entrypoint in path.read_text().splitlines()[1]


def test_cluster_yaml_validates_against_ray_schema():
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = yaml.safe_load((REPO / "cluster.yaml").read_text())
    validate_config(prepare_config(config))
    node_types = config["available_node_types"]
    gpu_names = {name for node in node_types.values() for name in node.get("resources", {})
                 if name.startswith("accelerator_type:")}
    assert gpu_names == {f"accelerator_type:{gpu}" for gpu in ("H100", "H200", "A100-80G", "L4")}


def test_cluster_yaml_schema_check_can_fail():
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = yaml.safe_load((REPO / "cluster.yaml").read_text())
    config["available_node_types"]["gpu_l4"]["gpus_please"] = 4
    with pytest.raises(Exception, match="gpus_please"):
        validate_config(prepare_config(config))


@pytest.mark.parametrize("name", ["demo.yaml", "demo-real.yaml"])
def test_demo_story_config_validates_with_its_watch_config(name, monkeypatch):
    from tandem.demos.loop import StoryConfig, served_config
    from tandem.watch.config import WatchConfig

    monkeypatch.chdir(REPO)  # story configs name their job and Serve configs from the root
    story = load_config(StoryConfig, REPO / "jobs" / name)
    watch = WatchConfig.model_validate({"model": story.model, **story.watch})
    assert (REPO / story.serve_config).exists() and (REPO / story.finetune_config).exists()
    assert watch.new_labels.min_corrections <= story.drift_requests
    served = served_config(story)  # an adapter story's Serve config serves its adapter
    finetune = load_config(FinetuneConfig, REPO / story.finetune_config)
    assert story.chat == (finetune.prompt_format == "chat")
    if finetune.registers_adapter:
        assert f"models:/{story.model}@champion" in served.adapters
        assert finetune.base_model.split("@")[0] == served.model.split("@")[0]


@pytest.mark.parametrize("name", ["demo-distill.yaml", "demo-distill-real.yaml"])
def test_distill_story_config_validates_and_names_shipped_configs(name):
    from tandem.demos.distill import DistillStoryConfig
    from tandem.serve.config import load_serve_config
    from tandem.train.distill import DistillConfig

    story = load_config(DistillStoryConfig, REPO / "jobs" / name)
    for path in (story.serve_config, story.finetune_config, story.distill_config):
        assert (REPO / path).exists()
    distill = load_config(DistillConfig, REPO / story.distill_config)
    teacher = load_config(FinetuneConfig, REPO / story.finetune_config)
    assert distill.teacher == f"models:/{story.model}@champion" == (
        f"models:/{teacher.registered_model}@champion")
    assert distill.student_model == story.student_model
    # the story asks as the teacher was trained, and the student learns in the same format
    assert story.chat == (teacher.prompt_format == "chat")
    assert distill.finetune.get("prompt_format", "text") == teacher.prompt_format
    assert not teacher.registers_adapter  # a student starts from a full teacher's weights
    assert not load_serve_config(REPO / story.serve_config).adapters
    assert story.traffic_requests >= 3 * 5  # enough held-out prompts per tier to score
