"""Product files from Python: the same checks and messages as `keel product check`."""

import json

import pytest

import keel
from conftest import PRODUCTS


def test_the_default_product_checks_as_the_command_says(cli):
    p = keel.Product.default()
    out = cli("product", "check", str(PRODUCTS / "eth2x-fli.toml")).stdout.strip()
    assert p.check() == out
    assert (p.symbol, p.kind) == ("ETH2x-FLI", "lending-fli")


@pytest.mark.parametrize("file", ["eth2x-fli.toml", "eth2x-perp.toml", "eth-3x-threshold.toml", "eth-minus2x-bear.toml"])
def test_every_kind_of_product_file_checks_as_the_command_says(cli, file):
    path = PRODUCTS / file
    assert keel.Product.from_file(path).check() == cli("product", "check", str(path)).stdout.strip()


def test_a_broken_product_raises_every_rule_with_the_commands_message(cli, tmp_path):
    text = (PRODUCTS / "eth2x-fli.toml").read_text()
    text = text.replace('max_leverage_ratio = "2.3"', 'max_leverage_ratio = "1.5"')
    text = text.replace('recentering_speed = "5%"', 'recentering_speed = "0"')
    path = tmp_path / "broken.toml"
    path.write_text(text)
    with pytest.raises(keel.ProductError) as e:
        keel.Product.from_file(path).check()
    expected = cli("product", "check", str(path), check=False).stderr.strip()
    assert str(e.value) == expected
    assert len(e.value.rules) == 2, e.value.rules
    assert any("max_leverage_ratio 1.5" in r for r in e.value.rules)
    assert isinstance(e.value, keel.KeelError)


def test_settings_are_written_by_key_and_unknown_keys_are_refused_with_the_closest():
    p = keel.Product.default().with_settings({"methodology.max_leverage_ratio": 2.4})
    assert 'max_leverage_ratio = "2.4"' in p.toml
    p.check()
    with pytest.raises(keel.KeelError, match="did you mean methodology.max_leverage_ratio"):
        keel.Product.default().with_settings({"methodology.max_leverage_ration": 2.4})


def test_calldata_is_the_commands(cli):
    path = PRODUCTS / "eth2x-fli.toml"
    want = json.loads(cli("product", "calldata", str(path), "--json").stdout)
    assert keel.Product.from_file(path).calldata() == want


def test_a_threshold_product_has_no_setter_calls():
    with pytest.raises(keel.KeelError, match="threshold product"):
        keel.Product.from_file(PRODUCTS / "eth-3x-threshold.toml").calldata()
