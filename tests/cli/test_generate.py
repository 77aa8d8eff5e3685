import pytest

from memory_mosaics.cli import main


@pytest.mark.parametrize(
    "flags, match",
    [
        (["--mode", "sample", "--top-p", "0"], "top_p"),
        (["--mode", "sample", "--temperature", "-1"], "temperature"),
        (["--mode", "sample", "--top-k", "0"], "top_k"),
        (["--beams", "0"], "--beams"),
        (["--max-new-tokens", "-1"], "--max-new-tokens"),
    ],
)
def test_meaningless_decoding_flags_are_refused_before_loading(flags, match, tmp_path, capsys):
    # the checkpoint does not exist: the flags must be refused first, by name
    try:
        code = main(["generate", str(tmp_path / "no-such-run"), "--prompt", "Once", *flags])
    except SystemExit as e:  # the counts are refused while argparse reads the command line
        code = e.code
    assert code == 2
    err = capsys.readouterr().err
    assert match in err and "no checkpoint" not in err
