from dataclasses import dataclass, field

import pytest

from lgeclip.config import ConfigError, from_dict, load_config


@dataclass
class Inner:
    a: int = 1
    b: float = 0.5


@dataclass
class Outer:
    name: str = "x"
    inner: Inner = field(default_factory=Inner)
    tags: list[str] = field(default_factory=list)
    opt: int | None = None


def test_base_chain_and_overrides(tmp_path):
    (tmp_path / "base.yaml").write_text("name: base\ninner: {a: 3}\n")
    (tmp_path / "child.yaml").write_text("base: base.yaml\ninner: {b: 2}\ntags: [t]\n")
    cfg = load_config(Outer, tmp_path / "child.yaml", ["inner.a=7", "opt=4"])
    assert cfg.name == "base" and cfg.inner.a == 7 and cfg.inner.b == 2.0 and cfg.tags == ["t"] and cfg.opt == 4


def test_unknown_key_and_wrong_type_are_errors():
    with pytest.raises(ConfigError, match="unknown key"):
        from_dict(Outer, {"nmae": "y"})
    with pytest.raises(ConfigError):
        from_dict(Outer, {"inner": {"a": "three"}})


def test_yaml11_exponent_strings_are_floats_but_words_are_not(tmp_path):
    # PyYAML reads "1e-4" (no dot) as a string; a float field must still take it
    cfg = load_config(Outer, None, ["inner.b=1e-4", "name=1e-4"])
    assert cfg.inner.b == pytest.approx(1e-4) and isinstance(cfg.inner.b, float)
    assert cfg.name == "1e-4"  # a str field keeps the text
    with pytest.raises(ConfigError, match="not a float"):
        from_dict(Outer, {"inner": {"b": "fast"}})
    with pytest.raises(ConfigError):
        from_dict(Outer, {"inner": {"a": "1e3"}})  # ints are not coerced from text
