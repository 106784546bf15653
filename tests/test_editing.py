import numpy as np

from annotation.editing import audio_visual, clear, copy_rows, set_cells, toggle_class


def test_operations_do_not_mutate_and_do_what_they_say():
    grid = np.zeros((25, 10), np.uint8)
    painted = set_cells(grid, [(3, 1), (3, 2)], 1)
    assert grid.sum() == 0 and painted[3].tolist() == [0, 1, 1] + [0] * 7
    assert set_cells(painted, [(3, 1)], 0)[3].sum() == 1
    on = toggle_class(painted, 3, 4, 2)
    assert on[3].tolist() == [0, 1, 1, 1, 1] + [0] * 5
    assert toggle_class(on, 3, 1, 4)[3].sum() == 0
    other = np.zeros((25, 10), np.uint8)
    other[0] = 1
    assert copy_rows(other, painted, [0])[0].sum() == 10 and copy_rows(other, painted, [0])[3].sum() == 2
    assert (copy_rows(other, painted) == other).all()
    assert clear(painted).sum() == 0
    assert audio_visual(painted, on)[3].tolist() == [0, 1, 1] + [0] * 7
