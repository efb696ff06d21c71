import pytest

from busdx.config import ConfigError, load_section, parse_section


def test_repo_params_are_valid(repo_root):
    for name in ["download", "audit", "merge_masks", "crop", "split"]:
        load_section(name, repo_root / "params.yaml")


def test_unknown_key_and_bad_value_fail_early():
    with pytest.raises(ConfigError, match="(?s)split.*protocl"):
        parse_section("split", {"protocl": "grouped"})
    with pytest.raises(ConfigError, match="protocol"):
        parse_section("split", {"protocol": "leaky"})
    with pytest.raises(ConfigError, match="unknown params section 'nope'"):
        parse_section("nope", {})


def test_missing_params_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match="params file not found"):
        load_section("split", tmp_path / "params.yaml")
