"""No arguments at all is a usage error, as for a missing positional argument."""


def test_no_arguments_prints_usage_and_exits_64(cli):
    code, out, err = cli()
    assert code == 64
    assert "BIDS_DIR" in out
    assert err.strip().startswith("tumsyn-bids: error: missing arguments")
