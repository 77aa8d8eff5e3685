from memory_mosaics.experiments.figures import pyplot, save_figure


def test_save_figure_writes_a_png_in_new_folders_and_frees_the_figure(tmp_path):
    plt = pyplot()
    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    path = save_figure(fig, tmp_path / "a" / "b" / "fig.png", dpi=50)
    assert path.read_bytes().startswith(b"\x89PNG")
    assert fig.number not in plt.get_fignums()
