"""docs/config.md's reference is generated from aeon_trl/config.py and must match it; the generator reads names,
types, defaults and comments from the source, so renamed or new fields need no change to it."""
import dataclasses
import importlib.util
import textwrap

from aeon_trl import config
from aeon_trl.cli.config_docs import BEGIN, DOC, END, FIX, field_docs, main, render_reference, update


def test_docs_config_md_is_up_to_date():
    text = DOC.read_text()
    assert BEGIN in text and END in text, f"{DOC} lost its generated block: run `{FIX}`"
    assert update(text, render_reference()) == text, f"{DOC} is out of date with aeon_trl/config.py: run `{FIX}`"


def test_every_field_is_documented_with_its_default():
    entries = {(e["section"], e["name"]): e for e in field_docs()}
    fields = {(section, f.name): f for section, cls in config.SECTIONS.items() for f in dataclasses.fields(cls)}
    assert set(entries) == set(fields)
    defaults = config.Config().to_dict()
    for (section, name), e in entries.items():
        assert e["default"] == defaults[section][name], name
    reference = render_reference()
    for section, name in fields:
        assert f"| `{name}` |" in reference
    for alias in [*getattr(config, "ALIASES", {}), *getattr(config, "DEPRECATED", {})]:
        assert f"`{alias}`" in reference, alias


FAKE = '''
from dataclasses import dataclass, field

@dataclass
class RolloutConfig:
    """How experience is gathered."""
    # frames per env per batch
    # (the rollout length T)
    steps: int = 16
    widths: list = field(default_factory=lambda: [8, 8])  # trunk widths
    mode: str = "fast"
    flag: bool = False

SECTIONS = {"rollout": RolloutConfig}
ALIASES = {"n_steps": "steps"}
DEPRECATED = {"rollout_len": ("steps", "renamed")}
CHOICES = {"mode": ("fast", "slow")}

def _check(ok, key, value, rule):
    pass

def validate(self):
    _check(self.steps >= 1, "steps", self.steps, "must be >= 1")
    _check(True, "widths", self.widths, f"must have {len(self.widths)} entries = {self.widths}")
'''


def test_generator_reads_whatever_the_source_declares(tmp_path):
    path = tmp_path / "fake_config.py"
    path.write_text(textwrap.dedent(FAKE))
    spec = importlib.util.spec_from_file_location("fake_config", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    reference = render_reference(module)
    assert "### `rollout`" in reference and "How experience is gathered." in reference
    assert ("| `steps` | `int` | `16` | Frames per env per batch (the rollout length T). Checked: must be >= 1. "
            "Also accepted as `n_steps`. Old name `rollout_len` (deprecated, still read). |") in reference
    assert "| `widths` | `list[int]` | `[8, 8]` | Trunk widths. Checked: must have N entries. |" in reference
    assert "| `mode` | `str` | `fast` | One of `fast`, `slow`. |" in reference
    assert "| `flag` | `bool` | `false` |  |" in reference


def test_check_mode_names_the_fix(tmp_path, capsys):
    stale = tmp_path / "config.md"
    stale.write_text(f"# Configuration\n\nprose\n\n{BEGIN}\nold\n{END}\n\nmore prose\n")
    assert main(["--check", "--path", str(stale)]) == 1
    assert FIX in capsys.readouterr().err
    assert main(["--path", str(stale)]) == 0
    text = stale.read_text()
    assert text.startswith("# Configuration\n\nprose\n") and text.endswith(f"{END}\n\nmore prose\n")
    assert main(["--check", "--path", str(stale)]) == 0
