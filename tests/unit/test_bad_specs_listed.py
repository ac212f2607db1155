from pathlib import Path

from dcnlab.cluster.spec import load_spec
from tests.meta.test_bad_specs import BAD, EXPECTED


def test_every_bad_spec_is_valid_and_has_a_meta_test_case() -> None:
    # Bad configurations, not invalid files: each must load, and each must be
    # certified by the meta-test with the case that exposes it.
    specs = sorted(BAD.glob("*.yaml"))
    assert [p.name for p in specs] == sorted(EXPECTED)
    for path in specs:
        load_spec(path)
    assert Path(BAD).is_dir()
